"""ID encoders, their registry (contracts) and IDEmbedding."""

from facegen.id.embedding import IDEmbedding, check_same_encoder, mean_embedding
from facegen.id.registry import DEFAULT_ENCODER, ENCODERS, EncoderSpec, WeightFile, get_encoder_spec

__all__ = ["IDEmbedding", "check_same_encoder", "mean_embedding", "DEFAULT_ENCODER", "ENCODERS",
           "EncoderSpec", "WeightFile", "get_encoder_spec"]

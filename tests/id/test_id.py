"""ID embeddings: the real dlib descriptor verifies people; the contracts are enforced."""

import itertools

import numpy as np
import pytest
from PIL import Image

from conftest import identity_of
from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.id import ENCODERS, IDEmbedding, get_encoder_spec, mean_embedding
from facegen.id.encoders import embed_image, same_person, similarity


def test_registry_entries_carry_their_contracts():
    assert {"dlib-resnet-v1", "antelopev2-glintr100", "buffalo_l-w600k-r50", "arc2face-arcface"} <= set(ENCODERS)
    # unit-norm or raw is the adapter's training, so the preset's `normalise` (not an encoder field)
    from facegen.models.registry import PRESETS
    normalise = {p.encoder: p.normalise for p in PRESETS.values() if not p.tiny}
    assert normalise == {"antelopev2-glintr100": False,       # InstantID: raw
                         "buffalo_l-w600k-r50": True,         # FaceID: normed
                         "arc2face-arcface": True,
                         "infiniteyou-ir-se50": True,         # InfiniteYou: normed
                         "pulid-antelopev2-eva02": False}     # PuLID: raw antelopev2 + unit-norm EVA CLS
    assert not hasattr(get_encoder_spec("buffalo_l-w600k-r50"), "adapter_normalised")
    assert get_encoder_spec("dlib-resnet-v1").metric == "euclidean"
    for spec in ENCODERS.values():
        if spec.backend == "onnx":
            assert not spec.commercial_use and spec.files and spec.dim == 512
    with pytest.raises(InvalidArgumentError, match="unknown encoder"):
        get_encoder_spec("facenet")


def test_similarity_refuses_mixed_encoders():
    a = IDEmbedding(np.ones(512), "antelopev2-glintr100")
    b = IDEmbedding(np.ones(512), "buffalo_l-w600k-r50")
    with pytest.raises(EncoderMismatchError, match="different encoders"):
        similarity(a, b)
    with pytest.raises(EncoderMismatchError):
        mean_embedding([a, b])


def test_embedding_rejects_nan_and_keeps_raw_vector():
    with pytest.raises(InvalidArgumentError):
        IDEmbedding(np.array([np.nan, 1.0]), "dlib-resnet-v1")
    e = IDEmbedding(np.array([3.0, 4.0]), "antelopev2-glintr100")
    assert e.norm == pytest.approx(5.0)
    assert e.as_adapter_input(False).tolist() == [3.0, 4.0]
    assert e.as_adapter_input(True).tolist() == pytest.approx([0.6, 0.8])


def test_mean_embedding_keeps_norm_and_direction():
    a = IDEmbedding(np.array([10.0, 0.0]), "antelopev2-glintr100")
    b = IDEmbedding(np.array([0.0, 20.0]), "antelopev2-glintr100")
    m = mean_embedding([a, b])
    assert m.norm == pytest.approx(15.0)
    assert m.vector[0] == pytest.approx(m.vector[1])


def test_augmented_copies_verify_same(tom_hanks_path, rgb_of):
    rgb = rgb_of(tom_hanks_path)
    ref = embed_image(rgb)[0]
    assert ref.dim == 128 and ref.encoder == "dlib-resnet-v1"
    import io
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=50)
    variants = [rgb[:, ::-1].copy(), rgb[5:107, 3:109].copy(), np.asarray(Image.open(buf).convert("RGB"))]
    for v in variants:
        same, sim, thr = same_person(ref, embed_image(v)[0])
        assert same, sim


def test_group_faces_are_different_people(group_photo_path, rgb_of):
    embs = embed_image(rgb_of(group_photo_path), policy="all")
    assert len(embs) == 6
    for a, b in itertools.combinations(embs, 2):
        assert not same_person(a, b)[0]


def test_shared_faces_verification(shared_faces, rgb_of):
    embs = {}
    for path in sorted(shared_faces.iterdir()):
        if path.suffix.lower() in (".jpg", ".png") and "group" not in path.name:
            embs[path] = embed_image(rgb_of(path))[0]
    pairs = list(itertools.combinations(embs, 2))
    wrong = [(a.name, b.name, round(similarity(embs[a], embs[b]), 3)) for a, b in pairs
             if same_person(embs[a], embs[b])[0] != (identity_of(a) == identity_of(b))]
    assert not wrong, wrong
    assert sum(identity_of(a) == identity_of(b) for a, b in pairs) >= 4


def test_most_similar_policy_picks_the_right_face(group_photo_path, rgb_of):
    rgb = rgb_of(group_photo_path)
    all_faces = embed_image(rgb, policy="all")
    ref = all_faces[3]
    picked = embed_image(rgb, policy="most-similar", reference=ref)[0]
    assert np.allclose(picked.face.bbox, ref.face.bbox)

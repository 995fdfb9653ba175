"""Margin-softmax heads: ArcFace and CosFace from pytorch-metric-learning; AdaFace written here
(no maintained library has it).

A head is an ``nn.Module`` called ``head(embeddings, labels) -> loss`` holding the class
centres; it always runs in fp32 (pytorch-metric-learning casts its centres to the embeddings'
dtype, so half-precision embeddings are cast up first).
"""

from __future__ import annotations

import math
from typing import Any

from facegen.errors import MissingDependencyError


def make_head(name: str, num_classes: int, embedding_size: int, scale: float, margin: float,
              h: float = 0.333) -> Any:
    """The head ``name`` (``arcface``: margin in radians; ``cosface``: cosine margin; ``adaface``)."""
    import torch  # noqa: PLC0415

    if name == "adaface":
        return AdaFaceHead(num_classes, embedding_size, scale, margin, h)
    try:
        from pytorch_metric_learning import losses  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("pytorch-metric-learning", "fr", "the ArcFace and CosFace heads") from None
    if name == "arcface":
        loss = losses.ArcFaceLoss(num_classes, embedding_size, margin=math.degrees(margin), scale=scale)
    elif name == "cosface":
        loss = losses.CosFaceLoss(num_classes, embedding_size, margin=margin, scale=scale)
    else:
        from facegen.errors import InvalidArgumentError  # noqa: PLC0415
        raise InvalidArgumentError(f"unknown head '{name}'")

    class _Fp32(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.inner(emb.float(), labels)

    return _Fp32(loss)


def AdaFaceHead(num_classes: int, embedding_size: int, scale: float = 64.0, margin: float = 0.4,
                h: float = 0.333, t_alpha: float = 0.01) -> Any:
    """AdaFace (Kim, Jain, Liu, CVPR 2022, eq. 8-12): the margin adapts to image quality, read
    from the embedding norm.  The norm is standardised by a running mean/std of the batch norms
    (momentum ``t_alpha``), scaled by ``h`` and clipped to [-1, 1] (``s_i``); the target logit is
    ``cos(θ + g_angle) − g_add`` with ``g_angle = −m·s_i``, ``g_add = m·s_i + m``; logits × ``scale``,
    cross-entropy.  Written from the paper."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    class _AdaFace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W = nn.Parameter(torch.empty(embedding_size, num_classes))
            nn.init.normal_(self.W, std=0.01)
            self.scale, self.margin, self.h, self.t_alpha, self.eps = scale, margin, h, t_alpha, 1e-3
            self.register_buffer("batch_mean", torch.tensor(20.0))
            self.register_buffer("batch_std", torch.tensor(100.0))

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            emb = emb.float()
            norms = emb.norm(dim=1, keepdim=True).clamp(0.001, 100)
            cosine = (emb / norms) @ nn.functional.normalize(self.W, dim=0)
            cosine = cosine.clamp(-1 + self.eps, 1 - self.eps)
            with torch.no_grad():
                n = norms.detach()
                self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * n.mean())
                self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * n.std(unbiased=False))
            s_i = ((norms.detach() - self.batch_mean) / (self.batch_std + self.eps) * self.h).clamp(-1, 1)
            target = nn.functional.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
            theta = torch.acos(cosine)
            g_angle = -self.margin * s_i
            theta_m = (theta + target * g_angle).clamp(self.eps, math.pi - self.eps)
            g_add = self.margin + self.margin * s_i
            logits = (torch.cos(theta_m) - target * g_add) * self.scale
            return nn.functional.cross_entropy(logits, labels)

    return _AdaFace()

"""IResNet, the recognition network the synthetic-dataset papers train, and the run folder
``facegen fr-train`` writes (so a trained run loads as an encoder from this layer).

The architecture is the "improved residual" network of ArcFace (Deng et al., CVPR 2019,
section 3 and its E output structure): a 3×3 stem, four stages of pre-activation units
``BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN`` with a 1×1 projection shortcut where a
stage starts, then ``BN → dropout → FC → BN`` to the embedding.  Module names follow
insightface's ``arcface_torch`` backbones (``conv1``, ``layer1.0.bn1``, ``fc``, ``features``),
so a backbone trained there loads here too.  Written from the paper's description.

A run folder::

    RUN/config.json          {"kind": RUN_KIND, "arch", "input_size", "embedding_size", "template",
                              "crop_size", "mean", "std", "color_order", "detector", ...}
    RUN/model.safetensors    the backbone's weights only (no head, no optimiser)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError

RUN_KIND = "facegen face-recognition run"
RUN_CONFIG = "config.json"
RUN_WEIGHTS = "model.safetensors"

#: units per stage and stage widths of each architecture; "tiny" is for CPU tests
ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "r18": ((2, 2, 2, 2), (64, 128, 256, 512)),
    "r34": ((3, 4, 6, 3), (64, 128, 256, 512)),
    "r50": ((3, 4, 14, 3), (64, 128, 256, 512)),
    "r100": ((3, 13, 30, 3), (64, 128, 256, 512)),
    "tiny": ((1, 1, 1, 1), (16, 32, 64, 128)),
}


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise InvalidArgumentError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHS)}")
    return arch


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[type, type]:
    import torch
    from torch import nn

    class IBasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
            self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
            self.prelu = nn.PReLU(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
            self.downsample: nn.Module | None = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout, eps=1e-5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return out + (x if self.downsample is None else self.downsample(x))

    class IResNet(nn.Module):
        def __init__(self, units: tuple[int, ...], widths: tuple[int, ...], input_size: int = 112,
                     embedding_size: int = 512, dropout: float = 0.0) -> None:
            super().__init__()
            stem = widths[0]
            self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem, eps=1e-5)
            self.prelu = nn.PReLU(stem)
            cin = stem
            for i, (n, w) in enumerate(zip(units, widths), start=1):
                blocks = [IBasicBlock(cin if u == 0 else w, w, 2 if u == 0 else 1) for u in range(n)]
                setattr(self, f"layer{i}", nn.Sequential(*blocks))
                cin = w
            side = input_size // 2 ** len(units)
            self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(cin * side * side, embedding_size)
            self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False        # as the E structure: a fixed-scale BN
            self.num_layers = len(units)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0, 0.1)
                elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.prelu(self.bn1(self.conv1(x)))
            for i in range(1, self.num_layers + 1):
                x = getattr(self, f"layer{i}")(x)
            x = self.dropout(self.bn2(x))
            return self.features(self.fc(torch.flatten(x, 1)))

    return IBasicBlock, IResNet


def build_iresnet(arch: str, input_size: int = 112, embedding_size: int = 512, dropout: float = 0.0) -> Any:
    """An IResNet (``r18``/``r34``/``r50``/``r100``/``tiny``) for square inputs of ``input_size``
    (a multiple of 16) giving ``embedding_size``-D raw embeddings."""
    units, widths = ARCHS[check_arch(arch)]
    if input_size % 16 or input_size < 16:
        raise InvalidArgumentError(f"input size {input_size} must be a multiple of 16 (16 … 224)")
    return _classes()[1](units, widths, input_size, embedding_size, dropout)


# ---------------------------------------------------------------------- run folders
def is_run(path: str | Path) -> bool:
    p = Path(path)
    if not (p / RUN_CONFIG).is_file():
        return False
    try:
        return json.loads((p / RUN_CONFIG).read_text(encoding="utf-8")).get("kind") == RUN_KIND
    except (ValueError, OSError, AttributeError):
        return False


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of a run folder (one-line errors for anything else)."""
    p = Path(path)
    hint = "a run is the folder 'facegen fr-train DATASET --out RUN' writes"
    if not p.is_dir():
        raise InvalidArgumentError(f"{p}: no such run folder ({hint})")
    cfg_path = p / RUN_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgumentError(f"{p} is not a face-recognition run: no {RUN_CONFIG} ({hint})") from None
    except (ValueError, OSError) as exc:
        raise InvalidArgumentError(f"{cfg_path} is not readable JSON: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("kind") != RUN_KIND:
        raise InvalidArgumentError(f"{p} is not a face-recognition run: its {RUN_CONFIG} is not a run's ({hint})")
    for key, kind in (("arch", str), ("input_size", int), ("embedding_size", int), ("template", str),
                      ("crop_size", int), ("mean", (int, float)), ("std", (int, float)), ("detector", str)):
        if not isinstance(cfg.get(key), kind):
            raise InvalidArgumentError(f"{cfg_path}: '{key}' is missing or of the wrong type")
    check_arch(cfg["arch"])
    if not (p / RUN_WEIGHTS).is_file():
        raise InvalidArgumentError(f"{p} has no {RUN_WEIGHTS} yet: the run has not finished (rerun its "
                                   "'facegen fr-train' command to resume it)")
    return cfg


def load_backbone_weights(model: Any, path: Path) -> Any:
    """Strictly load a safetensors state dict into ``model`` (one-line errors)."""
    from safetensors.torch import load_file

    from facegen.models.loading import check_safetensors

    check_safetensors(path)
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise InvalidArgumentError(f"{path} does not match its config.json's network: {first[:200]}") from None
    return model


def load_run(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(the backbone in eval mode, its config) of a run folder."""
    p = Path(path)
    cfg = read_run_config(p)
    model = build_iresnet(cfg["arch"], cfg["input_size"], cfg["embedding_size"])
    load_backbone_weights(model, p / RUN_WEIGHTS)
    return model.eval(), cfg

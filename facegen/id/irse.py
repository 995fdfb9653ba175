"""The ArcFace IR-SE50 network InfiniteYou's encoder contract uses, loaded directly.

InfiniteYou embeds faces with facexlib's ``init_recognition_model('arcface')``: an IR-SE50
``Backbone(num_layers=50, mode='ir_se')`` (the InsightFace_Pytorch layout) whose weights
``recognition_arcface_ir_se50.pth`` facexlib downloads at run time and reads with a bare
``torch.load``.  facegen builds the same network here (module names, hence state-dict keys,
as facexlib's: ``input_layer``, ``body.<i>.{shortcut_layer,res_layer}``, ``output_layer``),
takes the file from the models folder like every other weight, reads it with
``torch.load(weights_only=True)`` and loads it strictly.  Input: the 112 ArcFace crop, **BGR**,
scaled to [-1, 1], NCHW; output: the L2-normalised 512-d embedding.

Why not depend on facexlib: it would bring numba, filterpy and scipy for one 90-line network,
download weights into its own site-packages folder behind the user's back, and unpickle them
without ``weights_only``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError

#: (in_channels, depth, units) of the four IR-50 stages; the first unit of each strides by 2
IR50_STAGES: tuple[tuple[int, int, int], ...] = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


@functools.lru_cache(maxsize=1)
def backbone_class() -> type:
    """``IRSEBackbone(stages, width, feature_side)``: built on first use (torch imported late)."""
    import torch
    from torch import nn

    class SEModule(nn.Module):
        def __init__(self, channels: int, reduction: int = 16) -> None:
            super().__init__()
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)
            self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
            self.sigmoid = nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))

    class BottleneckIRSE(nn.Module):
        def __init__(self, cin: int, depth: int, stride: int) -> None:
            super().__init__()
            self.shortcut_layer: nn.Module = (nn.MaxPool2d(1, stride) if cin == depth else
                                              nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False),
                                                            nn.BatchNorm2d(depth)))
            self.res_layer = nn.Sequential(
                nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SEModule(depth))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.res_layer(x) + self.shortcut_layer(x)

    class IRSEBackbone(nn.Module):
        def __init__(self, stages: tuple[tuple[int, int, int], ...] = IR50_STAGES, width: int = 512,
                     feature_side: int = 7) -> None:
            super().__init__()
            first = stages[0][0]
            self.input_layer = nn.Sequential(nn.Conv2d(3, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first),
                                             nn.PReLU(first))
            units = [BottleneckIRSE(cin if u == 0 else depth, depth, 2 if u == 0 else 1)
                     for cin, depth, n in stages for u in range(n)]
            self.body = nn.Sequential(*units)
            last = stages[-1][1]
            self.output_layer = nn.Sequential(nn.BatchNorm2d(last), nn.Dropout(0.6), nn.Flatten(),
                                              nn.Linear(last * feature_side * feature_side, width),
                                              nn.BatchNorm1d(width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.output_layer(self.body(self.input_layer(x)))
            return torch.nn.functional.normalize(x, dim=1)

    return IRSEBackbone


def stages_of(state: dict[str, Any]) -> tuple[tuple[int, int, int], ...]:
    """The stage layout of an IR-SE state dict (IR-50 for the released file; smaller for tests):
    a stage starts at unit 0 and wherever the width changes (a unit with a convolution shortcut),
    and its first unit strides by 2, as in every IR-50 stage."""
    units: list[tuple[int, int, int]] = []       # (cin, depth, stride) per unit
    i = 0
    while f"body.{i}.res_layer.1.weight" in state:
        depth, cin = (int(d) for d in state[f"body.{i}.res_layer.1.weight"].shape[:2])
        stride = 2 if i == 0 or f"body.{i}.shortcut_layer.0.weight" in state else 1   # a stage's first unit
        units.append((cin, depth, stride))
        i += 1
    if not units:
        raise InvalidArgumentError("not an IR-SE network: no body.<i>.res_layer weights")
    stages: list[list[int]] = []
    for cin, depth, stride in units:
        if stride == 2:
            stages.append([cin, depth, 1])
        else:
            stages[-1][2] += 1
    return tuple((a, b, c) for a, b, c in stages)


def load_irse(path: Path, crop_size: int = 112) -> Any:
    """The IR-SE network in ``path`` (a weights-only pickle), strictly loaded, in eval mode."""
    from facegen.models.loading import load_pickle_state

    state = load_pickle_state(path)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    stages = stages_of(state)
    side = crop_size // 2 ** len(stages)
    width = int(state["output_layer.3.weight"].shape[0]) if "output_layer.3.weight" in state else 512
    model = backbone_class()(stages, width, side)
    own = set(model.state_dict())
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise InvalidArgumentError(
            f"{path} is not an IR-SE ArcFace network: missing {missing[:3]}, unexpected {unexpected[:3]}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise InvalidArgumentError(f"{path} does not match the IR-SE layout: {detail[:200]}") from None
    return model.eval()

"""facexlib's BiSeNet face parser (``parsing_bisenet.pth``), built in PyTorch on the released key layout.

PuLID whitens everything but the face before EVA-CLIP sees it: facexlib's
``init_parsing_model('bisenet')`` on the 512 aligned crop (RGB in [0, 1], ImageNet mean/std), the
first output's arg-max per pixel.  facegen builds the same network here (module names, hence
state-dict keys, as facexlib's: ``cp.resnet``, ``cp.arm16``/``arm32``, ``cp.conv_head16``/``32``,
``cp.conv_avg``, ``ffm``, ``conv_out``/``conv_out16``/``conv_out32``), reads the file with
``torch.load(weights_only=True)`` and loads it strictly; widths are read off the file, so the tiny
twin is the same code.  As for :mod:`facegen.id.irse`: facexlib would bring numba, filterpy and
scipy, download into its own package folder and unpickle without ``weights_only``; and
torchvision (whose ResNet-18 the context path matches) is not in this stack.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError
from facegen.models.eva_clip import BiSeNetConfig, bisenet_config_of, bisenet_shapes

#: facexlib's input normalisation (ImageNet)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)
def parser_class() -> type:
    """``BiSeNet(cfg)``: ``forward(x)`` → the main output's logits at the input size."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvBNReLU(nn.Module):
        def __init__(self, cin: int, cout: int, k: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(self.conv(x)))

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                               if cin != cout or stride != 1 else None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            res = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu((x if self.downsample is None else self.downsample(x)) + res)

    class ResNet18(nn.Module):
        def __init__(self, cfg: BiSeNetConfig) -> None:
            super().__init__()
            c1 = cfg.widths[0]
            self.conv1 = nn.Conv2d(3, c1, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(c1)
            cin = c1
            for i, cout in enumerate(cfg.widths, start=1):
                blocks = [BasicBlock(cin if b == 0 else cout, cout, 2 if (b == 0 and i > 1) else 1)
                          for b in range(cfg.blocks)]
                setattr(self, f"layer{i}", nn.Sequential(*blocks))
                cin = cout

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
            f8 = self.layer2(self.layer1(x))
            f16 = self.layer3(f8)
            return f8, f16, self.layer4(f16)

    class AttentionRefinement(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = ConvBNReLU(cin, cout, 3)
            self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
            self.bn_atten = nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feat = self.conv(x)
            return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))

    class ContextPath(nn.Module):
        def __init__(self, cfg: BiSeNetConfig) -> None:
            super().__init__()
            a = cfg.arm
            self.resnet = ResNet18(cfg)
            self.arm16 = AttentionRefinement(cfg.widths[2], a)
            self.arm32 = AttentionRefinement(cfg.widths[3], a)
            self.conv_head32 = ConvBNReLU(a, a, 3)
            self.conv_head16 = ConvBNReLU(a, a, 3)
            self.conv_avg = ConvBNReLU(cfg.widths[3], a, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f8, f16, f32 = self.resnet(x)
            avg = self.conv_avg(f32.mean((2, 3), keepdim=True))                 # broadcast = nearest upsampling
            up32 = self.conv_head32(F.interpolate(self.arm32(f32) + avg, f16.shape[2:], mode="nearest"))
            up16 = self.conv_head16(F.interpolate(self.arm16(f16) + up32, f8.shape[2:], mode="nearest"))
            return f8, up16

    class FeatureFusion(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.convblk = ConvBNReLU(cin, cout, 1)
            self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
            self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

        def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
            feat = self.convblk(torch.cat([fsp, fcp], dim=1))
            atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
            return feat * atten + feat

    class Output(nn.Module):
        def __init__(self, cin: int, mid: int, classes: int) -> None:
            super().__init__()
            self.conv = ConvBNReLU(cin, mid, 3)
            self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv_out(self.conv(x))

    class BiSeNet(nn.Module):
        def __init__(self, cfg: BiSeNetConfig) -> None:
            super().__init__()
            self.cp = ContextPath(cfg)
            self.ffm = FeatureFusion(cfg.widths[1] + cfg.arm, cfg.fuse)
            self.conv_out = Output(cfg.fuse, cfg.fuse, cfg.classes)
            self.conv_out16 = Output(cfg.arm, cfg.side, cfg.classes)     # training-time heads: loaded, not run
            self.conv_out32 = Output(cfg.arm, cfg.side, cfg.classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f8, cp8 = self.cp(x)
            out = self.conv_out(self.ffm(f8, cp8))
            return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)

    return BiSeNet


def load_bisenet(path: Path) -> Any:
    """The face parser in ``path`` (a weights-only pickle), strictly loaded, in eval mode.
    ``num_batches_tracked`` counters (unused at inference) may be absent from older files."""
    import torch

    from facegen.models.checkpoints import check_state_dict
    from facegen.models.loading import load_pickle_state

    state = load_pickle_state(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        cfg = bisenet_config_of(state)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{path}: {exc}") from None
    expected = bisenet_shapes(cfg)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0)
    check_state_dict(state, expected, f"{path} (facexlib BiSeNet face parser)", every=True)
    model = parser_class()(cfg)
    model.load_state_dict({k: v if k.endswith("num_batches_tracked") else v.float() for k, v in state.items()},
                          strict=True)
    return model.eval()

"""RivaGAN's encoder and decoder (Xu et al. 2019, as shipped by ``invisible-watermark`` 0.2.0)
as torch modules, so the watermark runs batched on the pipeline's own device.

The graphs were read from the wheel's ``rivagan_encoder.onnx`` / ``rivagan_decoder.onnx``:
every convolution is 11×11 over one frame (the ONNX files use 3-D convolutions with a
temporal kernel of 1, so 2-D convolutions compute the same thing); each ``tanh`` is followed
by an inference-mode batch norm; the attention branch ends in a softmax over its 32 channels.

- encoder(frame, bits): ``frame`` (B, 3, H, W) in [-1, 1], ``bits`` (B, 32) in {0, 1};
  returns the marked frame ``frame + 0.016 * tanh(conv(...))``.
- decoder(frame): (B, 32) logits, the attention-weighted spatial mean of 32 maps.

The weights ship with facegen (``weights/rivagan.safetensors``, MIT licence, see
``weights/LICENSE-rivagan.txt``), converted from those ONNX files by
``scripts/convert_rivagan.py``, which also checks that this module equals onnxruntime.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facegen.paths import sha256_of

WEIGHTS = Path(__file__).parent / "weights" / "rivagan.safetensors"
#: sha256 of the shipped weights (scripts/convert_rivagan.py reproduces the file byte for byte)
WEIGHTS_SHA256 = "1a9e27e73736bf2b2c3968dc27becb452cfc8d4aa356ee1742f935d42feb75f0"
BITS = 32
RESIDUAL_SCALE = 0.016          # the encoder graph's constant on its tanh output
BN_EPS = 1e-5


#: output tile of the FFT convolution (each tile is transformed with its 10-pixel halo)
TILE = 54
K = 11


class FFTConv2d(nn.Conv2d):
    """An 11×11 "same" convolution computed by overlap-save FFTs over tiles: the same numbers
    as :class:`torch.nn.Conv2d` (to float32 rounding) at about a tenth of the arithmetic for
    these kernels (the direct 11×11 convolution costs 242 multiply-adds per pixel and channel
    pair; the FFT one a few). Tiles bound the memory of the transformed kernels (one
    ``(out, in, 64, 33)`` complex array per layer, made once per device)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, K, padding=K // 2)
        self._spectrum: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def _kernel(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._spectrum:
            n = TILE + K - 1
            w = self.weight.detach().to(device, dtype)
            # cross-correlation = product with the conjugate spectrum; laid out (bins, in, out)
            spec = torch.fft.rfft2(w, s=(n, n)).conj()
            self._spectrum[key] = spec.flatten(2).permute(2, 1, 0).contiguous()
        return self._spectrum[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, half = TILE + K - 1, K // 2
        th, tw = -(-h // TILE), -(-w // TILE)
        xp = torch.nn.functional.pad(x, (half, tw * TILE - w + half, half, th * TILE - h + half))
        tiles = xp.unfold(2, n, TILE).unfold(3, n, TILE)                  # (b, c, th, tw, n, n)
        spec = torch.fft.rfft2(tiles)                                      # (b, c, th, tw, n, m)
        bins = spec.shape[-2] * spec.shape[-1]
        spec = spec.permute(4, 5, 0, 2, 3, 1).reshape(bins, b * th * tw, c).contiguous()
        kernel = self._kernel(x.device, spec.real.dtype)
        per = th * tw      # one product per image: the same numbers whatever the batch holds
        out = torch.cat([torch.bmm(spec[:, i * per:(i + 1) * per], kernel) for i in range(b)], dim=1)
        o = out.shape[-1]
        out = out.reshape(n, n // 2 + 1, b, th, tw, o).permute(2, 5, 3, 4, 0, 1).contiguous()
        y = torch.fft.irfft2(out, s=(n, n))[..., :TILE, :TILE]            # (b, o, th, tw, T, T)
        y = y.permute(0, 1, 2, 4, 3, 5).reshape(b, o, th * TILE, tw * TILE)[:, :, :h, :w]
        return y + self.bias.to(y.dtype)[None, :, None, None]


class _Block(nn.Module):
    """conv 11×11 → tanh → batch norm (inference) → conv 11×11."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.conv0 = FFTConv2d(cin, mid)
        self.bn = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv3 = FFTConv2d(mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bn(torch.tanh(self.conv0(x))))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = _Block(3, 32, 32)
        self.bn_attention = nn.BatchNorm2d(32, eps=BN_EPS)
        self.conv = _Block(4, 32, 3)

    def forward(self, frame: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        att = torch.softmax(self.bn_attention(torch.tanh(self.attention(frame))), dim=1)
        signed = (bits * 2.0 - 1.0).to(frame.dtype)[:, :, None, None]
        data = (att[:, : signed.shape[1]] * signed).sum(dim=1, keepdim=True)
        return frame + RESIDUAL_SCALE * torch.tanh(self.conv(torch.cat([frame, data], dim=1)))


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = _Block(3, 32, 32)
        self.bn_attention = nn.BatchNorm2d(32, eps=BN_EPS)
        self.conv = _Block(3, 32, 32)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        att = torch.softmax(self.bn_attention(torch.tanh(self.attention(frame))), dim=1)
        return (self.conv(frame) * att).flatten(2).mean(dim=2)


# ONNX initialiser names → this module's parameter names (both networks use the same layout)
_BLOCKS = {"_attention": "attention", "_conv": "conv"}


def state_from_onnx(initialisers: dict[str, Any]) -> dict[str, torch.Tensor]:
    """This module's state dict from an ONNX graph's initialisers (name → numpy array)."""
    out: dict[str, torch.Tensor] = {}
    for src, dst in _BLOCKS.items():
        for i, name in ((0, "conv0"), (3, "conv3")):
            w = initialisers[f"{src}.{i}.weight"]          # (out, in, 1, 11, 11)
            out[f"{dst}.{name}.weight"] = torch.from_numpy(w[:, :, 0].copy())
            out[f"{dst}.{name}.bias"] = torch.from_numpy(initialisers[f"{src}.{i}.bias"].copy())
        for i, bn in ((2, f"{dst}.bn"), (5, f"bn_{dst}")):
            if f"{src}.{i}.weight" not in initialisers:
                continue
            for a, b in (("weight", "weight"), ("bias", "bias"), ("running_mean", "running_mean"),
                         ("running_var", "running_var")):
                out[f"{bn}.{b}"] = torch.from_numpy(initialisers[f"{src}.{i}.{a}"].copy())
    return out


_NETS: dict[tuple[str, str], nn.Module] = {}
_LOCK = threading.Lock()


def network(kind: str, device: torch.device | str = "cpu") -> nn.Module:
    """The encoder or decoder (eval mode, float32) on ``device``, loaded once per device
    from the shipped safetensors file (its sha256 checked)."""
    key = (kind, str(device))
    with _LOCK:
        if key not in _NETS:
            from safetensors.torch import load_file  # noqa: PLC0415

            from facegen.errors import ModelFileError  # noqa: PLC0415

            if not WEIGHTS.is_file():
                raise ModelFileError(WEIGHTS, "the RivaGAN watermark weights are missing from this facegen "
                                              "install (reinstall facegen; scripts/convert_rivagan.py remakes them)")
            if sha256_of(WEIGHTS) != WEIGHTS_SHA256:
                raise ModelFileError(WEIGHTS, "sha256 does not match the shipped RivaGAN weights (damaged file; "
                                              "reinstall facegen or run scripts/convert_rivagan.py)")
            state = load_file(str(WEIGHTS))
            net: nn.Module = Encoder() if kind == "encoder" else Decoder()
            prefix = f"{kind}."
            net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            _NETS[key] = net.eval().to(device)
        return _NETS[key]

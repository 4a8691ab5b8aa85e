"""EfficientFace, the per-frame face encoder of ATTSF-Net's visual front-end.

Zhao, Liu, Wang, *Robust Lightweight Facial Expression Recognition Network with Label
Distribution Training*, AAAI 2021. A ShuffleNet-V2 trunk whose second stage is modulated
by a channel-spatial gate and added to a local feature extractor that sees the four
quadrants of the feature map separately.

Module and parameter names follow the authors' published checkpoints
(``EfficientFace_Trained_on_AffectNet7.pth.tar``) so that their weights load strictly
once converted with ``attsf convert-weights``. The classifier ``fc`` of the checkpoint is
not part of this encoder: it returns the 1024-d pooled feature of each frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attsf.errors import AttsfError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _depthwise(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, groups=c_in)


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class LocalFeatureExtractor(nn.Module):
    """Four depthwise branches, one per 28x28 quadrant of the 56x56 stem output."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}_1", _depthwise(c_in, c_out, stride=2))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(c_out))
            setattr(self, f"conv{i}_2", _depthwise(c_out, c_out))
            setattr(self, f"bn{i}_2", nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def _branch(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(x)))
        return self.relu(getattr(self, f"bn{i}_2")(getattr(self, f"conv{i}_2")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        top_left, bottom_left = x[:, :, :h, :w], x[:, :, h:, :w]
        top_right, bottom_right = x[:, :, :h, w:], x[:, :, h:, w:]
        left = torch.cat([self._branch(1, top_left), self._branch(2, bottom_left)], dim=2)
        right = torch.cat([self._branch(3, top_right), self._branch(4, bottom_right)], dim=2)
        return torch.cat([left, right], dim=3)


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", nn.Flatten())
        self.gate_c.add_module("gate_c_fc_0", nn.Linear(channels, hidden))
        self.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(hidden))
        self.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return self.gate_c(pooled)[:, :, None, None].expand_as(x)


class SpatialGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, n_dilated: int = 2, dilation: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, 1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(n_dilated):
            self.gate_s.add_module(f"gate_s_conv_di_{i}", nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation))
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x).expand_as(x)


class Modulator(nn.Module):
    """Channel-spatial modulator: ``x * sigmoid(channel(x) * spatial(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel_att = ChannelGate(channels)
        self.spatial_att = SpatialGate(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.channel_att(x) * self.spatial_att(x))


class InvertedResidual(nn.Module):
    """ShuffleNet-V2 unit: split (stride 1) or two-branch downsampling (stride 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(c_in, c_in, stride),
                nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(c_in if stride > 1 else half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _depthwise(half, half, stride),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, x2 = x.chunk(2, dim=1)
            out = torch.cat([keep, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return _channel_shuffle(out, 2)


class EfficientFace(nn.Module):
    """EfficientFace trunk: 224x224 RGB (ImageNet-normalised) -> 1024-d per image."""

    out_dim = 1024

    def __init__(self, repeats: tuple[int, int, int] = (4, 8, 4),
                 channels: tuple[int, int, int, int, int] = (29, 116, 232, 464, 1024)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = channels[0]
        for name, n, c_out in zip(("stage2", "stage3", "stage4"), repeats, channels[1:4]):
            units = [InvertedResidual(c_in, c_out, 2)] + [InvertedResidual(c_out, c_out, 1) for _ in range(n - 1)]
            setattr(self, name, nn.Sequential(*units))
            c_in = c_out
        self.local = LocalFeatureExtractor(channels[0], channels[1])
        self.modulator = Modulator(channels[1])
        self.conv5 = nn.Sequential(
            nn.Conv2d(c_in, channels[4], 1, bias=False), nn.BatchNorm2d(channels[4]), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.modulator(self.stage2(x)) + self.local(x)
        x = self.conv5(self.stage4(self.stage3(x)))
        return x.mean(dim=(2, 3))


class PixelNorm(nn.Module):
    """(N, 3, H, W) uint8 or [0, 1] float -> ImageNet-normalised float, as EfficientFace was trained."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


# --------------------------------------------------------------------------- weights
def convert_checkpoint(src: str | Path, dst: str | Path) -> dict:
    """The authors' checkpoint (``.pth.tar``: ``{"state_dict": {"module.conv1.0.weight": ...},
    ...}``) -> a safetensors file of the encoder's weights (classifier ``fc`` dropped).

    The source is read with ``torch.load(weights_only=True)``: tensors and plain containers
    only, nothing executed. The result is checked by a strict load before it is written.
    """
    from safetensors.torch import save as st_save

    from attsf.io import atomic_write_bytes

    src = Path(src)
    if not src.is_file():
        raise AttsfError(f"{src}: checkpoint not found")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reason a file is refused is reported in one line
        raise AttsfError(f"{src}: {_load_refusal(exc)}") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AttsfError(f"{src}: no state_dict of tensors in this checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    dropped = sorted(k for k in state if k.startswith("fc."))
    weights = {k: v.contiguous() for k, v in state.items() if not k.startswith("fc.")}
    _strict_load(EfficientFace(), weights, src)
    meta = {"format": "attsf-efficientface/1", "source": src.name, "dropped": ",".join(dropped)}
    atomic_write_bytes(dst, st_save(weights, metadata=meta))
    return {"tensors": len(weights), "dropped": dropped,
            "parameters": sum(v.numel() for k, v in weights.items() if "running" not in k and "num_batches" not in k)}


def _load_refusal(exc: Exception) -> str:
    """One whole sentence on why ``torch.load(weights_only=True)`` refused a file."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"refused: loading it would call {found.group(1)} (forbidden global); only tensors and plain "
                "containers are read (torch.load with weights_only=True)")
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(boilerplate)]
    return f"not a PyTorch checkpoint ({lines[-1] if lines else exc.__class__.__name__})"


def _strict_load(model: nn.Module, weights: dict[str, torch.Tensor], src: Path) -> None:
    result = model.load_state_dict(weights, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise AttsfError(f"{src}: weights do not match EfficientFace: {'; '.join(problems)}")


def load_encoder_weights(model: EfficientFace, path: str | Path) -> None:
    """Load converted weights strictly (a shape mismatch is an error too)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: EfficientFace weights not found (convert the authors' checkpoint "
                         f"with `attsf convert-weights`)")
    try:
        weights = load_file(path)
    except Exception:  # noqa: BLE001
        raise AttsfError(f"{path}: not a safetensors file") from None
    try:
        _strict_load(model, weights, path)
    except RuntimeError as exc:
        raise AttsfError(f"{path}: weights do not match EfficientFace ({str(exc).splitlines()[1].strip()})") from None


class FaceEncoder:
    """A frozen EfficientFace: (T, H, W, 3) uint8 face crops -> (T, 1024) float32 features."""

    def __init__(self, weights: str | Path) -> None:
        self.model = EfficientFace().eval()
        load_encoder_weights(self.model, weights)
        self.model.to(memory_format=torch.channels_last)  # ~25 % faster on CPU, same outputs
        self.norm = PixelNorm()

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = self.norm(torch.from_numpy(frames).permute(0, 3, 1, 2))
        return self.model(x).numpy().astype(np.float32)

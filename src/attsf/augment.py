"""Training-time regularisation of feature inputs, applied to whole batches (config section
``augment``; every element is off by default, which is the paper's setting).

* SpecAugment-style masks on the MFCC ``(B, n_mfcc, T)``: ``time_masks`` bands of up to
  ``time_width`` frames and ``freq_masks`` bands of up to ``freq_width`` coefficients are
  set to zero (the speaker mean once features are speaker-normalised);
* ``time_shift``: the MFCC frames shifted by up to ± that many frames, zero filled;
* ``feature_noise``: Gaussian noise of that standard deviation added to the float inputs
  of the modalities in ``noise_on`` (MFCC and precomputed visual features: noise on the
  features, in units of their speaker-normalised scale); ``noise_on: v`` gives a fused
  model the AU recipe's noise without putting it on the MFCC too;
* ``modality_dropout``: with this probability a training sample of a fused model loses one
  of its two modalities (zeros, as "missing" in ``attsf robustness``), each equally
  likely, so the network learns to fall back on the other;
* ``mixup``: Beta(α, α) mixup of inputs and one-hot targets between each sample and a
  shuffled partner (α = ``mixup``; 0 is off).

All draws use torch's global generator, which checkpoints save, so a resumed run draws
what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from attsf.fields import bounded, validate

Tensor = torch.Tensor


@dataclass(frozen=True)
class AugmentConfig:
    time_masks: int = bounded(0, ge=0)
    time_width: int = bounded(12, ge=0)
    freq_masks: int = bounded(0, ge=0)
    freq_width: int = bounded(2, ge=0)
    time_shift: int = bounded(0, ge=0)
    feature_noise: float = bounded(0.0, ge=0)
    noise_on: Literal["av", "a", "v"] = "av"
    modality_dropout: float = bounded(0.0, ge=0, le=1)
    mixup: float = bounded(0.0, ge=0)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def active(self) -> bool:
        return bool(self.time_masks or self.freq_masks or self.time_shift or self.feature_noise
                    or self.modality_dropout or self.mixup)


def _band_masks(b: int, length: int, n: int, width: int, device: torch.device) -> Tensor:
    """(B, length) bool, True inside ``n`` random bands of 0..width steps per sample."""
    mask = torch.zeros(b, length, dtype=torch.bool, device=device)
    pos = torch.arange(length, device=device)
    for _ in range(n):
        w = torch.randint(0, width + 1, (b, 1), device=device)
        start = (torch.rand(b, 1, device=device) * (length - w + 1)).long()
        mask |= (pos >= start) & (pos < start + w)
    return mask


def spec_augment(mfcc: Tensor, cfg: AugmentConfig) -> Tensor:
    b, n_coef, t = mfcc.shape
    keep = torch.ones_like(mfcc, dtype=torch.bool)
    if cfg.time_masks:
        keep &= ~_band_masks(b, t, cfg.time_masks, min(cfg.time_width, t), mfcc.device)[:, None, :]
    if cfg.freq_masks:
        keep &= ~_band_masks(b, n_coef, cfg.freq_masks, min(cfg.freq_width, n_coef), mfcc.device)[:, :, None]
    return mfcc * keep


def time_shift(mfcc: Tensor, max_shift: int) -> Tensor:
    """Each sample's frames moved by a random offset in [-max_shift, max_shift], zero filled."""
    b, _, t = mfcc.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 1), device=mfcc.device)
    src = torch.arange(t, device=mfcc.device)[None, :] - shift  # (B, T)
    valid = (src >= 0) & (src < t)
    out = torch.gather(mfcc, 2, src.clamp(0, t - 1)[:, None, :].expand_as(mfcc))
    return out * valid[:, None, :]


def modality_dropout(batch: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """Blank the audio or the visual input of a random fraction ``p`` of the samples."""
    b = batch["label"].shape[0]
    drop = torch.rand(b) < p
    which = torch.rand(b) < 0.5  # True: audio goes, False: visual goes
    for name, sel in (("audio", drop & which), ("visual", drop & ~which)):
        x = batch[name]
        keep = (~sel).to(x.device).view(b, *([1] * (x.dim() - 1)))
        batch[name] = x * keep.to(x.dtype)
    return batch


def mixup(batch: dict[str, Tensor], alpha: float, n_classes: int) -> dict[str, Tensor]:
    """Inputs and targets mixed with a shuffled copy of the batch; ``label`` becomes a
    (B, n_classes) probability tensor."""
    b = batch["label"].shape[0]
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(b)
    for name in ("audio", "visual", "text"):
        x = batch.get(name)
        if x is None:
            continue
        x = x.float() / 255 if x.dtype == torch.uint8 else x  # face frames: the encoder takes [0, 1] floats too
        batch[name] = lam * x + (1 - lam) * x[perm.to(x.device)]
    y = batch["label"]
    onehot = torch.nn.functional.one_hot(y, n_classes).float() if y.dim() == 1 else y
    batch["label"] = lam * onehot + (1 - lam) * onehot[perm.to(onehot.device)]
    return batch


def augment_batch(batch: dict[str, Tensor], cfg: AugmentConfig, n_classes: int, fused: bool,
                  regression: bool = False) -> dict[str, Tensor]:
    """The training batch with every configured element applied (a new dict)."""
    batch = dict(batch)
    audio = batch.get("audio")
    if audio is not None and audio.dim() == 3:
        if cfg.time_shift:
            audio = time_shift(audio, cfg.time_shift)
        if cfg.time_masks or cfg.freq_masks:
            audio = spec_augment(audio, cfg)
        batch["audio"] = audio
    if cfg.feature_noise:
        for name in ("audio", "visual"):
            x = batch.get(name) if name[0] in cfg.noise_on else None
            if x is not None and x.is_floating_point():
                batch[name] = x + cfg.feature_noise * torch.randn_like(x)
    if fused and cfg.modality_dropout and "audio" in batch and "visual" in batch:
        batch = modality_dropout(batch, cfg.modality_dropout)
    if cfg.mixup and not regression:
        batch = mixup(batch, cfg.mixup, n_classes)
    return batch

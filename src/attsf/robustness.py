"""Robustness to corrupted input at test time (paper Table V and beyond).

``mask_fraction`` replaces a fraction r of one modality's time steps with random values,
as the paper does: ``round(r * T)`` steps chosen at random per clip, each replaced by noise
on the input's own scale (float inputs: a normal draw with the clip's mean and standard
deviation; uint8 face frames: uniform pixels). A sequence of length 1 (the OpenFace AU
vector of the shared RAVDESS data) has no time steps to choose from, so there the fraction
r of its *feature entries* is replaced instead. ``r = 1`` with ``missing=True`` sets the
whole modality to zeros: the modality is absent. The fused head then still answers from
zeros; ``fallback`` scores what ``attsf predict`` answers for a clip without that modality:
the auxiliary head of the modality that is left (its AVAM encoder reads that modality only).

``NoisyAudio`` goes beyond the paper: white Gaussian noise at a given signal-to-noise
ratio (the clip's mean power over the noise power, in dB) is added to each test clip's
waveform, read again from its source, and the MFCCs are computed anew. With
``data.normalize=speaker`` the speaker statistics are recomputed on the noisy clips, as
they would be where every recording of a speaker is noisy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from attsf.data import normalize
from attsf.data.audio import AudioConfig, mfcc
from attsf.io import atomic_write_text, read_json, write_json
from attsf.model import alone_logits

Tensor = torch.Tensor
TIME_DIM = {"audio": -1, "visual": 1}  # audio (B, n_mfcc, T); visual (B, T, ...) frames or features
SNRS_DB = (20.0, 10.0, 5.0, 0.0)


def _noise_like(x: Tensor, g: torch.Generator) -> Tensor:
    if x.dtype == torch.uint8:
        return torch.randint(0, 256, x.shape, generator=g, dtype=torch.uint8)
    flat = x.float().flatten(1)
    mean, std = flat.mean(1), flat.std(1).clamp_min(1e-6)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (torch.randn(x.shape, generator=g) * std.view(shape) + mean.view(shape)).to(x.dtype)


def mask_fraction(x: Tensor, fraction: float, time_dim: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """(masked copy of ``x``, boolean mask of the replaced positions along the masked axis,
    shape (B, T) or (B, F) for length-1 sequences)."""
    x = x.clone()
    time_dim = time_dim % x.dim()
    axis = time_dim if x.shape[time_dim] > 1 else x.dim() - 1  # length 1: mask feature entries
    moved = x.movedim(axis, 1)  # (B, L, ...) view of x
    b, length = moved.shape[:2]
    k = round(fraction * length)
    mask = torch.zeros(b, length, dtype=torch.bool)
    for i in range(b):
        mask[i, torch.randperm(length, generator=g)[:k]] = True
    noise = _noise_like(moved, g)
    where = mask.view(b, length, *([1] * (moved.dim() - 2))).expand_as(moved)
    moved[where] = noise[where]
    return x, mask


def corrupt(batch: dict[str, Tensor], modality: str, fraction: float, g: torch.Generator,
            missing: bool = False) -> dict[str, Tensor]:
    batch = dict(batch)
    if missing:
        batch[modality] = torch.zeros_like(batch[modality])
    elif fraction > 0:
        batch[modality] = mask_fraction(batch[modality], fraction, TIME_DIM[modality], g)[0]
    return batch


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` plus white Gaussian noise whose power is the signal's mean power / 10^(snr/10)."""
    power = float(np.mean(y.astype(np.float64) ** 2))
    return (y + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), y.shape)).astype(np.float32)


class NoisyAudio(Dataset):
    """A test split whose audio is the MFCC of its waveforms with noise at ``snr_db``."""

    def __init__(self, dataset: Dataset, waveforms: list[np.ndarray], audio: AudioConfig, snr_db: float,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dataset = dataset
        self.audio = [torch.from_numpy(mfcc(add_noise(y, snr_db, rng), audio)) for y in waveforms]
        if getattr(dataset, "speaker_stats", None) is not None:
            speakers = [r.speaker for r in dataset.records]
            stats = {s: normalize.clip_stats({"audio": a} for a, t in zip(self.audio, speakers) if t == s)
                     for s in set(speakers)}
            self.audio = [normalize.apply({"audio": a}, stats[s])["audio"] for a, s in zip(self.audio, speakers)]

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, i: int) -> dict:
        return dict(self.dataset[i], audio=self.audio[i])


def robustness(run_dir: str | Path, fractions: tuple[float, ...] = tuple(np.round(np.arange(0.1, 1.0, 0.1), 1)),
               seed: int = 0, snrs: tuple[float, ...] = SNRS_DB, cache: str | None = None) -> dict:
    """Test accuracy of a run's best weights with each modality masked at each fraction,
    with each modality missing, and with noisy audio at each SNR (dB; an empty ``snrs``
    skips it). Written to ``RUN_DIR/robustness.json`` and ``.md``; a result written after
    the best weights with the same fractions, SNRs and seed is reused."""
    from attsf.data.clips import PrepSettings, clip_waveform
    from attsf.evaluate import MODEL_FILE, metrics_for, open_run, predict_dataset

    run_dir = Path(run_dir)
    run = open_run(run_dir, cache=cache)
    modalities = [name for name, code in (("audio", "a"), ("visual", "v")) if code in run.cfg.model.modalities]
    settings = {"seed": seed, "fractions": list(map(float, fractions)),
                "snr_db": list(map(float, snrs)) if "audio" in modalities else []}
    saved = run_dir / "robustness.json"
    if saved.is_file() and saved.stat().st_mtime > (run_dir / MODEL_FILE).stat().st_mtime:
        previous = read_json(saved)
        if all(previous.get(k) == v for k, v in settings.items()) and ("fallback" in previous or len(modalities) < 2):
            return previous
    from attsf.data.datamodule import ClipDataModule  # Lightning: only once there is work to do

    dataset = ClipDataModule(run.cfg).dataset("test")
    regression = run.cfg.model.task == "regression"
    key = "mae" if regression else "accuracy"

    def predict(modality: str | None, fraction: float = 0.0, missing: bool = False,
                data: Dataset = dataset) -> dict[str, np.ndarray]:
        g = torch.Generator().manual_seed(seed)
        transform = None if modality is None else (lambda b: corrupt(b, modality, fraction, g, missing))
        return predict_dataset(run.model, data, batch_size=32, transform=transform)

    def score(pred: dict[str, np.ndarray]) -> float:
        return float(metrics_for(pred, run.labels, regression)[key])

    result = {"metric": key, **settings, "clean": score(predict(None)), "masked": {}, "missing": {}, "fallback": {}}
    for m in modalities:
        result["masked"][m] = [score(predict(m, r)) for r in fractions]
        gone = predict(m, 1.0, missing=True)
        result["missing"][m] = score(gone)
        left = alone_logits(gone, "v" if m == "audio" else "a")  # the answer of the modality that is left
        if len(modalities) == 2 and not regression and left is not None:
            result["fallback"][m] = score(dict(gone, logits=left))
    if settings["snr_db"]:
        audio = PrepSettings.from_index(dataset.cache.settings).audio
        waveforms = [clip_waveform(r, audio.sample_rate) for r in dataset.records]
        result["noise"] = {"audio": [score(predict(None, data=NoisyAudio(dataset, waveforms, audio, snr, seed)))
                                     for snr in snrs]}
    write_json(saved, result)
    atomic_write_text(run_dir / "robustness.md", robustness_table(result))
    return result


def robustness_table(result: dict) -> str:
    pct = 1 if result["metric"] == "mae" else 100
    fallback = result.get("fallback") or {}
    head = ("| modality | " + " | ".join(f"r={r:.1f}" for r in result["fractions"]) + " | missing |"
            + (" missing, the other head answers |" if fallback else ""))
    lines = [f"Test {result['metric']} (clean: {result['clean'] * pct:.2f}) with a fraction r of one modality's "
             "time steps replaced by noise", "", head, "|" + " --- |" * (len(result["fractions"]) + 2 + bool(fallback))]
    for m, values in result["masked"].items():
        other = f" {fallback[m] * pct:.2f} |" if m in fallback else " |" * bool(fallback)
        lines.append(f"| {m} | " + " | ".join(f"{v * pct:.2f}" for v in values) + f" | {result['missing'][m] * pct:.2f} |"
                     + other)
    if "noise" in result:
        lines += ["", f"Test {result['metric']} with white noise added to the audio waveform", "",
                  "| SNR | " + " | ".join(f"{s:g} dB" for s in result["snr_db"]) + " |",
                  "|" + " --- |" * (len(result["snr_db"]) + 1),
                  "| audio | " + " | ".join(f"{v * pct:.2f}" for v in result["noise"]["audio"]) + " |"]
    return "\n".join(lines) + "\n"


def mean_robustness(results: list[dict]) -> dict:
    """The fold-wise mean of ``robustness`` results run with the same settings."""
    def mean(get) -> list[float] | float:
        return np.mean([get(r) for r in results], axis=0).tolist()

    first = results[0]
    out = dict(first, clean=mean(lambda r: r["clean"]), n_folds=len(results),
               masked={m: mean(lambda r, m=m: r["masked"][m]) for m in first["masked"]},
               missing={m: mean(lambda r, m=m: r["missing"][m]) for m in first["missing"]},
               fallback={m: mean(lambda r, m=m: r["fallback"][m]) for m in first.get("fallback", {})})
    if "noise" in first:
        out["noise"] = {"audio": mean(lambda r: r["noise"]["audio"])}
    return out

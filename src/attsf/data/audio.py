"""Audio as in the paper (§IV-A): mono, 16 kHz, 3.6 s (centre crop, or zero padding), 12 MFCCs from a
50 ms Hamming window with a 30 ms hop: ``(12, 121)`` per clip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import soundfile as sf

from attsf.errors import AttsfError


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    duration: float = 3.6
    n_mfcc: int = 12
    window_ms: float = 50.0
    hop_ms: float = 30.0
    pad: Literal["centre", "right"] = "centre"

    @property
    def n_samples(self) -> int:
        return round(self.sample_rate * self.duration)

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // round(self.sample_rate * self.hop_ms / 1000)


class ClipTooLong(AttsfError):
    """A clip whose decoded audio passes the caller's limit (whatever its container claims)."""

    def __init__(self, path: str | Path, max_seconds: float) -> None:
        super().__init__(f"{path}: clip longer than {max_seconds:g} s (decoding stopped there)")
        self.path, self.max_seconds = path, max_seconds

    def __reduce__(self):  # crosses process pools whole
        return type(self), (self.path, self.max_seconds)


def load_waveform(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode any file libsndfile reads (WAV, FLAC, OGG, ...) to mono float32 at
    ``sample_rate``; at most ``max_seconds`` are read, a longer file is an error."""
    path = Path(path)
    try:
        with sf.SoundFile(path) as fh:
            limit = -1 if max_seconds is None else int(max_seconds * fh.samplerate) + 1
            y, sr = fh.read(frames=limit, dtype="float32", always_2d=True), fh.samplerate
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AttsfError(f"{path}: cannot decode audio ({str(exc).splitlines()[0]})") from None
    if max_seconds is not None and len(y) > max_seconds * sr:
        raise ClipTooLong(path, max_seconds)
    return to_mono_rate(y, sr, sample_rate, path)


def to_mono_rate(y: np.ndarray, sr: int, sample_rate: int, path: str | Path) -> np.ndarray:
    """(samples, channels) at ``sr`` -> mono float32 at ``sample_rate``."""
    if y.size == 0:
        raise AttsfError(f"{path}: audio has zero length")
    y = y.mean(axis=1) if y.ndim == 2 else y
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def fit_length(y: np.ndarray, n: int, pad: str = "centre") -> np.ndarray:
    """Centre-crop a longer signal to ``n`` samples; zero-pad a shorter one."""
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start : start + n]
    missing = n - len(y)
    left = missing // 2 if pad == "centre" else 0
    return np.pad(y, (left, missing - left))


def mfcc(y: np.ndarray, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    """MFCC ``(n_mfcc, n_frames)`` float32 of a waveform already at ``cfg.sample_rate``."""
    y = fit_length(y, cfg.n_samples, cfg.pad)
    win = round(cfg.sample_rate * cfg.window_ms / 1000)
    hop = round(cfg.sample_rate * cfg.hop_ms / 1000)
    feats = librosa.feature.mfcc(y=y, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=win,
                                 hop_length=hop, win_length=win, window="hamming")
    return feats.astype(np.float32)


def mfcc_from_file(path: str | Path, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    return mfcc(load_waveform(path, cfg.sample_rate), cfg)

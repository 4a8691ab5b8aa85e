"""Audio as in the paper (§IV-A): mono, 16 kHz, 3.6 s (centre crop, or zero padding), 12 MFCCs from a
50 ms Hamming window with a 30 ms hop: ``(12, 121)`` per clip.

The MFCC is librosa's (``librosa.feature.mfcc`` with a Hamming window: Slaney mel filterbank of
128 bands, power spectrogram, dB with an 80 dB floor, orthonormal DCT-II), written out in NumPy and
``scipy.fft`` so that a cold ``attsf predict`` does not pay librosa's import (scipy.signal, numba:
~2 s of a 6 s answer). The tests hold it bit-identical to librosa on real clips; resampling is
soxr's HQ converter, as librosa's default."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.fft
import soundfile as sf
import soxr

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
    return np.ascontiguousarray(resample(y, sr, sample_rate), dtype=np.float32)


def resample(y: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Mono ``y`` from ``sr`` to ``target_sr`` (soxr HQ), ``ceil(len * ratio)`` samples long."""
    if sr == target_sr:
        return y
    out = soxr.resample(y, sr, target_sr, quality="HQ")
    n = int(np.ceil(len(y) * target_sr / sr))
    return out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))


def fit_length(y: np.ndarray, n: int, pad: str = "centre") -> np.ndarray:
    """Centre-crop a longer signal to ``n`` samples; zero-pad a shorter one."""
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start : start + n]
    missing = n - len(y)
    left = missing // 2 if pad == "centre" else 0
    return np.pad(y, (left, missing - left))


def mel_frequencies(n: int, fmax: float) -> np.ndarray:
    """``n`` frequencies (Hz) evenly spaced on Slaney's mel scale from 0 to ``fmax``: linear
    below 1 kHz (200/3 Hz per mel), logarithmic above (a factor 6.4 per 27 mels)."""
    hz_per_mel, log_hz, log_step = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    log_mel = log_hz / hz_per_mel
    top = log_mel + np.log(fmax / log_hz) / log_step if fmax >= log_hz else fmax / hz_per_mel
    mels = np.linspace(0.0, top, n)
    hz = hz_per_mel * mels
    upper = mels >= log_mel
    hz[upper] = log_hz * np.exp(log_step * (mels[upper] - log_mel))
    return hz


@cache
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 128) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` float32 triangles on the mel scale, each scaled to unit area
    (Slaney's normalisation); built once per setting (a fifth of an MFCC's time), read-only."""
    edges = mel_frequencies(n_mels + 2, sample_rate / 2)
    width = np.diff(edges)
    ramps = np.subtract.outer(edges, np.fft.rfftfreq(n_fft, 1.0 / sample_rate))
    rising, falling = -ramps[:-2] / width[:-1, None], ramps[2:] / width[1:, None]
    bank = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank.flags.writeable = False
    return bank


def mfcc(y: np.ndarray, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    """MFCC ``(n_mfcc, n_frames)`` float32 of a waveform already at ``cfg.sample_rate``."""
    y = fit_length(y, cfg.n_samples, cfg.pad)
    win = round(cfg.sample_rate * cfg.window_ms / 1000)
    hop = round(cfg.sample_rate * cfg.hop_ms / 1000)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hamming
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, win // 2), win)[::hop]  # centred frames
    power = np.abs(np.fft.rfft(window * frames, axis=-1).astype(np.complex64).T) ** 2.0
    mel = np.einsum("ft,mf->mt", power, mel_filterbank(cfg.sample_rate, win), optimize=True)
    db = 10.0 * np.log10(np.maximum(1e-10, mel))
    db = np.maximum(db, db.max() - 80.0)
    return scipy.fft.dct(db, axis=0, type=2, norm="ortho")[: cfg.n_mfcc].astype(np.float32)


def mfcc_from_file(path: str | Path, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    return mfcc(load_waveform(path, cfg.sample_rate), cfg)

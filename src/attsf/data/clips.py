"""One clip from raw media to cache arrays: what it is made from (:class:`ClipSource`),
how it is processed (:class:`PrepSettings`), and the picklable job that does it in a
worker process (:class:`ClipJob`). Dataset readers only produce sources.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from attsf.data.audio import AudioConfig, load_waveform, mfcc
from attsf.data.cache import ClipRecord
from attsf.data.faces import FaceConfig
from attsf.data.media import decode_audio, sample_frames
from attsf.errors import AttsfError

Visual = Literal["faces", "efficientface", "features", "none"]
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}


@dataclass(frozen=True)
class ClipSource:
    media: Path  # video, or audio for audio-only clips
    clip_id: str
    label: str
    speaker: str = ""
    split: str = ""
    text: str = ""
    segment: tuple[float, float] | None = None  # seconds within ``media`` (IEMOCAP utterances)
    region: tuple[float, float] | None = None  # horizontal slice of the frame holding the face
    audio: Path | None = None  # a separate audio file (default: the media's own track)
    features: Path | None = None  # precomputed visual features (npy or OpenFace CSV)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PrepSettings:
    audio: AudioConfig = AudioConfig()
    faces: FaceConfig = FaceConfig()
    visual: Visual = "faces"
    n_frames: int = 15
    span: float = 3.6
    weights: str | None = None  # EfficientFace safetensors for visual="efficientface"
    text: str | None = None  # "minilm", or a folder with BERT weights; None: no text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio"]["n_frames"] = self.audio.n_frames
        return d

    def visual_index_entry(self, feature_dim: int = 0) -> dict:
        """The ``visual`` entry of the cache index that the DataModule and the model read."""
        if self.visual == "faces":
            return {"kind": "frames", "size": self.faces.size, "n_frames": self.n_frames}
        if self.visual == "efficientface":
            return {"kind": "features", "dim": 1024, "backbone": "efficientface", "weights": self.weights}
        if self.visual == "features":
            return {"kind": "features", "dim": feature_dim}
        return {"kind": "none"}


# ----------------------------------------------------------------- per-process models
@functools.cache
def _face_cropper(cfg: FaceConfig):
    from attsf.data.faces import FaceCropper

    return FaceCropper(cfg)


@functools.cache
def _face_encoder(weights: str):
    from attsf.efficientface import FaceEncoder

    return FaceEncoder(weights)


@functools.cache
def _text_encoder(spec: str):
    from attsf.data.text import text_encoder

    return text_encoder(spec)


def limit_threads() -> None:
    """Worker processes share the cores: one intra-op thread each."""
    import torch

    torch.set_num_threads(1)


# ----------------------------------------------------------------- the job
def read_features(path: Path, n: int) -> np.ndarray:
    """Per-frame features ``(T, F)`` from ``.npy`` or an OpenFace CSV (its AU columns),
    ``n`` rows sampled uniformly when longer."""
    if not path.is_file():
        raise AttsfError(f"{path}: feature file not found")
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise AttsfError(f"{path}: not a numeric .npy array ({exc})") from None
    elif path.suffix == ".csv":
        x = _openface_aus(path)
    else:
        raise AttsfError(f"{path}: feature files must be .npy or OpenFace .csv")
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.size == 0 or not np.isfinite(x).all():
        raise AttsfError(f"{path}: features must be a finite (T, F) or (F,) array, got shape {x.shape}")
    if len(x) > n:
        x = x[np.linspace(0, len(x) - 1, n).round().astype(int)]
    return x


def _openface_aus(path: Path) -> np.ndarray:
    import csv

    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise AttsfError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    cols = [i for i, h in enumerate(header) if h.startswith("AU") and h[-2:] in ("_r", "_c")]
    if not cols:
        raise AttsfError(f"{path}: no OpenFace AU columns (AUxx_r / AUxx_c)")
    try:
        return np.asarray([[float(r[i]) for i in cols] for r in rows[1:] if r], dtype=np.float32)
    except (ValueError, IndexError):
        raise AttsfError(f"{path}: non-numeric or missing AU value") from None


@dataclass(frozen=True)
class ClipJob:
    source: ClipSource
    settings: PrepSettings

    @property
    def path(self) -> Path:
        return self.source.media

    @property
    def clip_id(self) -> str:
        return self.source.clip_id

    def audio(self) -> np.ndarray:
        src, cfg = self.source, self.settings.audio
        path = src.audio or src.media
        if not path.is_file():
            raise AttsfError(f"{path}: file not found")
        if path.suffix.lower() in SOUNDFILE_SUFFIXES and src.segment is None:
            y = load_waveform(path, cfg.sample_rate)
        else:
            y = decode_audio(path, cfg.sample_rate, None if src.audio else src.segment)
        if not np.isfinite(y).all():
            raise AttsfError(f"{path}: audio holds non-finite samples")
        return mfcc(y, cfg)

    def visual(self, extra: dict) -> tuple[np.ndarray | None, int]:
        src, s = self.source, self.settings
        if s.visual == "none":
            return None, 0
        if s.visual == "features":
            if src.features is None:
                raise AttsfError(f"{src.media}: no feature file given for this clip")
            return read_features(src.features, s.n_frames), 0
        frames = sample_frames(src.media, s.n_frames, s.span, s.faces.detect_height, src.segment, src.region)
        faces = _face_cropper(s.faces)(frames.full, frames.small, frames.scale, str(src.media))
        extra["face_boxes"] = [[round(b[0] + frames.offset_x, 1), round(b[1], 1), round(b[2] + frames.offset_x, 1),
                                round(b[3], 1)] for b in faces.boxes]
        extra["face_detected"] = faces.detected
        if s.visual == "efficientface":
            return _face_encoder(s.weights)(faces.frames), faces.fallback_frames
        return faces.frames, faces.fallback_frames

    def __call__(self) -> tuple[ClipRecord, dict[str, np.ndarray]]:
        src = self.source
        extra = dict(src.extra)
        if src.text:
            extra["text"] = src.text
        arrays = {"audio": self.audio()}
        visual, fallback = self.visual(extra)
        if visual is not None:
            arrays["visual"] = visual
        if self.settings.text:
            if not src.text:
                raise AttsfError(f"{src.media}: no transcript for this clip")
            arrays["text"] = _text_encoder(self.settings.text)([src.text])[0]
        record = ClipRecord(id=src.clip_id, label=src.label, speaker=src.speaker, source=str(src.media),
                            split=src.split, fallback_frames=fallback, extra=extra)
        return record, arrays


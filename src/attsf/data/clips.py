"""One clip from raw media to cache arrays: what it is made from (:class:`ClipSource`),
how it is processed (:class:`PrepSettings`), and the picklable job that does it in a
worker process (:class:`ClipJob`). Dataset readers only produce sources.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np

from attsf.data.audio import AudioConfig, mfcc
from attsf.data.cache import ClipRecord
from attsf.data.faces import FaceConfig, FaceCrops
from attsf.data.media import read_audio, sample_frames
from attsf.errors import AttsfError

Visual = Literal["faces", "efficientface", "features", "none"]


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
    features: Path | np.ndarray | None = None  # precomputed visual features: npy / OpenFace CSV, or the array
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

    def index_entry(self, visual_dim: int = 0) -> dict:
        """The ``settings`` of the cache index: what the DataModule and the model read, and
        what :meth:`from_index` turns back into settings to prepare a raw clip alike."""
        audio = asdict(self.audio) | {"kind": "mfcc", "n_frames": self.audio.n_frames}
        if self.visual == "faces":
            visual = {"kind": "frames", "size": self.faces.size, "n_frames": self.n_frames}
        elif self.visual == "efficientface":
            from attsf.efficientface import EfficientFace

            visual = {"kind": "features", "dim": EfficientFace.out_dim, "backbone": "efficientface",
                      "weights": self.weights}
        elif self.visual == "features":
            visual = {"kind": "features", "dim": visual_dim}
        else:
            visual = {"kind": "none"}
        out = {"audio": audio, "visual": visual}
        if self.visual in ("faces", "efficientface"):
            out["faces"] = asdict(self.faces) | {"n_frames": self.n_frames, "span": self.span}
        if self.text:
            from attsf.data.text import text_dim

            out["text"] = {"model": self.text, "dim": text_dim(self.text)}
        return out

    @classmethod
    def from_index(cls, settings: dict) -> PrepSettings:
        audio = settings.get("audio", {})
        if audio.get("kind", "mfcc") != "mfcc":
            raise AttsfError("the cache holds precomputed audio features, not MFCCs of raw audio")
        visual = settings.get("visual", {})
        kind = visual.get("kind", "none")
        faces = settings.get("faces", {})
        if kind == "frames":
            faces = faces | {"size": visual.get("size", 224)}
        mode = {"frames": "faces", "none": "none"}.get(kind, "features")
        if kind == "features" and visual.get("backbone") == "efficientface":
            mode = "efficientface"
        return cls(audio=AudioConfig(**_known(AudioConfig, audio)), faces=FaceConfig(**_known(FaceConfig, faces)),
                   visual=mode, n_frames=int(visual.get("n_frames", faces.get("n_frames", 15))),
                   span=float(faces.get("span", 3.6)), weights=visual.get("weights"),
                   text=settings.get("text", {}).get("model"))


def _known(cls: type, values: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


# ----------------------------------------------------------------- per-process models
DEVICE = {"faces": "cpu"}  # where MTCNN runs in this process (`attsf preprocess --device`); not a cache setting


@functools.cache
def _face_cropper(cfg: FaceConfig):
    from attsf.data.faces import FaceCropper

    return FaceCropper(cfg, device=DEVICE["faces"])


@functools.cache
def _face_encoder(weights: str):
    from attsf.efficientface import FaceEncoder

    return FaceEncoder(weights)


@functools.cache
def _text_encoder(spec: str):
    from attsf.data.text import text_encoder

    return text_encoder(spec)


def worker_init(parent: int, device: str = "cpu") -> None:
    """Set-up of a preprocessing worker: one intra-op thread (workers share the cores), MTCNN
    on ``device``, and an exit as soon as the parent process ``parent`` is gone (kill -9
    included), so that no worker outlives the command."""
    import torch

    torch.set_num_threads(1)
    DEVICE["faces"] = device
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills us when the parent dies
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


# ----------------------------------------------------------------- the job
def read_features(path: Path | np.ndarray, n: int) -> np.ndarray:
    """Per-frame features ``(T, F)`` from ``.npy``, an OpenFace CSV (its AU columns) or an
    array already in memory, ``n`` rows sampled uniformly when longer."""
    if isinstance(path, np.ndarray):
        x, path = path, "features"
    elif not path.is_file():
        raise AttsfError(f"{path}: feature file not found")
    elif path.suffix == ".npy":
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


def face_crops(path: Path, settings: PrepSettings, cropper, segment: tuple[float, float] | None = None,
               region: tuple[float, float] | None = None, timings: dict[str, float] | None = None) -> FaceCrops:
    """Sample the frames of a clip and crop its faces; boxes in full-frame pixels, times in
    seconds from the clip start. ``timings`` (if given) receives the seconds spent decoding
    and on faces."""
    t = time.perf_counter()
    frames = sample_frames(path, settings.n_frames, settings.span, settings.faces.detect_height, segment, region)
    t_decoded = time.perf_counter()
    crops = cropper(frames.full, frames.small, frames.scale, str(path))
    if timings is not None:
        timings["decode_video"], timings["faces"] = t_decoded - t, time.perf_counter() - t_decoded
    if frames.offset_x:
        crops.boxes = [(b[0] + frames.offset_x, b[1], b[2] + frames.offset_x, b[3]) for b in crops.boxes]
    crops.times = [round(float(x), 2) for x in frames.times]
    return crops


def clip_audio(path: Path, cfg: AudioConfig, segment: tuple[float, float] | None = None,
               timings: dict[str, float] | None = None, max_seconds: float | None = None) -> np.ndarray:
    """The MFCC input of a clip's audio (``timings`` receives decoding and MFCC seconds;
    ``max_seconds``: a longer clip is refused while it is decoded)."""
    t = time.perf_counter()
    y = read_audio(path, cfg.sample_rate, segment, max_seconds)
    t_decoded = time.perf_counter()
    x = mfcc(y, cfg)
    if timings is not None:
        timings["decode_audio"], timings["mfcc"] = t_decoded - t, time.perf_counter() - t_decoded
    return x


def clip_faces(path: Path, settings: PrepSettings, cropper, encoder=None, segment: tuple[float, float] | None = None,
               region: tuple[float, float] | None = None,
               timings: dict[str, float] | None = None) -> tuple[np.ndarray, FaceCrops]:
    """The visual input of a clip from its face crops: the crops themselves (``faces``) or
    their EfficientFace features (``encoder``), with the crops for boxes and fallbacks."""
    crops = face_crops(path, settings, cropper, segment, region, timings)
    return (crops.frames if encoder is None else encoder(crops.frames)), crops


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
        src = self.source
        segment = None if src.audio else src.segment  # a separate audio file is the utterance already
        return clip_audio(src.audio or src.media, self.settings.audio, segment)

    def visual(self, extra: dict) -> tuple[np.ndarray | None, int]:
        src, s = self.source, self.settings
        if s.visual == "none":
            return None, 0
        if s.visual == "features":
            if src.features is None:
                raise AttsfError(f"{src.media}: no feature file given for this clip")
            return read_features(src.features, s.n_frames), 0
        encoder = _face_encoder(s.weights) if s.visual == "efficientface" else None
        visual, faces = clip_faces(src.media, s, _face_cropper(s.faces), encoder, src.segment, src.region)
        extra["face_boxes"] = faces.rounded_boxes()
        extra["face_detected"] = faces.detected
        return visual, faces.fallback_frames

    def __call__(self) -> tuple[ClipRecord, dict[str, np.ndarray]]:
        src = self.source
        extra = dict(src.extra)
        if src.audio:  # where the waveform lives, for tests that re-read it (audio noise)
            extra["audio_source"] = str(src.audio)
        elif src.segment:
            extra["segment"] = list(src.segment)
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


def clip_waveform(record: ClipRecord, sample_rate: int) -> np.ndarray:
    """The waveform a cached clip's MFCCs were computed from, read again from its source."""
    segment = record.extra.get("segment")
    path = record.extra.get("audio_source") or record.source
    if not Path(path).is_file():
        raise AttsfError(f"{path}: source audio of clip {record.id} not found (run from the folder the cache "
                         "was built in, or leave out the audio-noise test)")
    return read_audio(path, sample_rate, tuple(segment) if segment else None)

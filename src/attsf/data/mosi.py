"""CMU-MOSI (Zadeh et al. 2016): sentiment in [-3, 3] per video segment.

Two inputs are read:

* raw segments in the layout multimodal toolkits use (MMSA)::

      Raw/<video_id>/<clip_id>.mp4
      label.csv   video_id,clip_id,text,label,...,mode     (mode: train / valid / test)

* the feature pickles those toolkits distribute (``aligned_50.pkl``, ``unaligned_50.pkl``):
  ``{"train"|"valid"|"test": {"id", "audio" (N,T,F), "vision" (N,T,F), "text" (N,T,F),
  "regression_labels" (N,), ...}}``. They are opened with :class:`SafeUnpickler`, which
  admits numpy arrays and plain builtins only: a pickle that names any other global
  (``os.system``, ...) is refused before anything runs.

Records hold the sentiment score in ``extra["score"]`` and the 7-class label (the score
rounded and clipped to -3..3) as the label; the speaker is the video id.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attsf.data.cache import ClipRecord
from attsf.data.clips import ClipSource
from attsf.errors import AttsfError

LABELS = ["-3", "-2", "-1", "0", "1", "2", "3"]
SPLITS = {"train": "train", "valid": "val", "val": "val", "test": "test"}

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    *(("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                                       "int", "float", "complex", "bool", "slice", "range")),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array machinery and plain builtins."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def safe_load(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: file not found")
    try:
        with path.open("rb") as fh:
            return SafeUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise AttsfError(f"{path}: refused: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError) as exc:
        raise AttsfError(f"{path}: not a readable feature pickle ({exc.__class__.__name__}: {exc})") from None


def score_label(score: float) -> str:
    return str(int(np.clip(np.round(score), -3, 3)))


def raw_sources(root: str | Path) -> tuple[list[ClipSource], list[tuple[str, str]]]:
    root = Path(root)
    labels = root / "label.csv"
    if not labels.is_file():
        raise AttsfError(f"{root}: label.csv not found (expected the MMSA layout: label.csv and Raw/<video>/<clip>.mp4)")
    out, failures = [], []
    with labels.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        missing = {"video_id", "clip_id", "label"} - set(reader.fieldnames or [])
        if missing:
            raise AttsfError(f"{labels}: missing column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, start=2):
            try:
                score = float(row["label"])
            except ValueError:
                failures.append((f"{labels}:{n}", f"label {row['label']!r} is not a number"))
                continue
            video, clip = row["video_id"].strip(), row["clip_id"].strip()
            media = root / "Raw" / video / f"{clip}.mp4"
            split = SPLITS.get((row.get("mode") or "").strip().lower(), "")
            out.append(ClipSource(media=media, clip_id=f"{video}_{clip}", label=score_label(score), speaker=video,
                                  split=split, text=(row.get("text") or "").strip(), extra={"score": score}))
    return out, failures


@dataclass(frozen=True)
class PickledClip:
    """One segment of a feature pickle, already in memory: audio (F_a, T), vision (T, F_v),
    text (T, F_t) or (F_t,)."""

    key: str  # the pickle's id, e.g. "03bSnISJMiM$_$1"
    split: str
    score: float
    audio: np.ndarray
    vision: np.ndarray
    text: np.ndarray | None
    source: str

    @property
    def clip_id(self) -> str:
        return self.key.replace("$_$", "_").replace("/", "_")

    @property
    def path(self) -> str:
        return f"{self.source}#{self.key}"

    def __call__(self) -> tuple[ClipRecord, dict[str, np.ndarray]]:
        arrays = {"audio": self.audio, "visual": self.vision}
        if self.text is not None:
            arrays["text"] = self.text
        for key, value in arrays.items():
            if not np.isfinite(value).all():
                raise AttsfError(f"{self.path}: {key} features hold non-finite values")
        video = self.key.split("$_$")[0]
        record = ClipRecord(id=self.clip_id, label=score_label(self.score), speaker=video,
                            source=self.path, split=self.split, extra={"score": self.score})
        return record, arrays


def pickle_jobs(path: str | Path) -> tuple[list[PickledClip], dict]:
    """Segments of a feature pickle, and the feature widths for the cache index."""
    data = safe_load(path)
    if not isinstance(data, dict) or not any(k in data for k in SPLITS):
        raise AttsfError(f"{path}: expected a dict with train/valid/test entries")
    jobs = []
    dims = {}
    for key, part in data.items():
        if key not in SPLITS:
            continue
        try:
            ids, audio, vision = part["id"], np.asarray(part["audio"]), np.asarray(part["vision"])
            scores = np.asarray(part["regression_labels"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError):
            raise AttsfError(f"{path}: split '{key}' lacks id/audio/vision/regression_labels") from None
        text = np.asarray(part["text"]) if "text" in part and np.asarray(part["text"]).dtype.kind == "f" else None
        dims = {"audio": int(audio.shape[-1]), "visual": int(vision.shape[-1]),
                "text": int(text.shape[-1]) if text is not None else 0}
        for i, clip in enumerate(ids):
            clip_id = clip.decode() if isinstance(clip, bytes) else str(clip)
            jobs.append(PickledClip(clip_id, SPLITS[key], float(scores[i]), audio[i].T.astype(np.float32),
                                    vision[i].astype(np.float32),
                                    None if text is None else text[i].astype(np.float32), str(path)))
    return jobs, dims

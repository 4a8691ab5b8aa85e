"""The clip cache that training reads.

Layout of a cache directory::

    index.json                 labels, preprocessing settings, one record per clip
    clips/<clip_id>.safetensors  tensors "audio" (n_mfcc, T_a) float32 and "visual"
                               (T_v, H, W, 3) uint8 face frames or (T_v, F) float32
                               features; the clip's record again in the header metadata

Each clip file is written atomically, so a killed preprocessing run leaves only whole
files; ``write_index`` rebuilds the index from the clip files that exist.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from attsf.errors import AttsfError
from attsf.io import atomic_write_bytes, read_json, write_json

FORMAT = "attsf-cache/1"


@dataclass(frozen=True)
class ClipRecord:
    id: str
    label: str
    speaker: str
    source: str = ""
    split: str = ""  # "train" / "val" / "test" for datasets with a fixed split
    fallback_frames: int = 0  # face frames that used a neighbour's box or a centre crop
    extra: dict = field(default_factory=dict)  # dataset-specific fields (intensity, ...)


def clip_path(cache_dir: Path, clip_id: str) -> Path:
    return cache_dir / "clips" / f"{clip_id}.safetensors"


def write_clip(cache_dir: str | Path, record: ClipRecord, arrays: dict[str, np.ndarray]) -> Path:
    """Write one clip atomically: ``audio`` (float32), ``visual`` (uint8 frames kept as
    uint8, features as float32) and ``text`` (float32), each optional."""
    tensors = {}
    for key, value in arrays.items():
        dtype = np.uint8 if key == "visual" and value.dtype == np.uint8 else np.float32
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=dtype))
    path = clip_path(Path(cache_dir), record.id)
    atomic_write_bytes(path, st_save(tensors, metadata={"record": json.dumps(asdict(record))}))
    return path


def is_complete(path: Path) -> bool:
    """True when a clip file exists and its header and record read back."""
    try:
        read_record(path)
        return True
    except Exception:  # noqa: BLE001 - any unreadable file is redone
        return False


def read_record(path: Path) -> ClipRecord:
    with safe_open(path, framework="pt") as fh:
        return ClipRecord(**json.loads(fh.metadata()["record"]))


def write_index(cache_dir: str | Path, dataset: str, labels: list[str], settings: dict) -> dict:
    """Scan the clip files and write ``index.json`` (atomically). Returns the index."""
    cache_dir = Path(cache_dir)
    records = [asdict(read_record(p)) for p in sorted((cache_dir / "clips").glob("*.safetensors"))]
    index = {"format": FORMAT, "dataset": dataset, "labels": labels, "settings": settings, "clips": records}
    write_json(cache_dir / "index.json", index)
    return index


class ClipCache:
    """A cache directory opened for reading."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir)
        index_path = self.root / "index.json"
        if not index_path.is_file():
            why = ("the folder does not exist" if not self.root.exists() else "it is not a folder"
                   if not self.root.is_dir() else "it has no index.json")
            raise AttsfError(f"{self.root.resolve()}: no clip cache here ({why}); build it with `attsf preprocess`, "
                             "or point to it (data.cache=PATH, or --cache PATH for a run's commands)")
        index = read_json(index_path)
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise AttsfError(f"{index_path}: not an attsf cache of format {FORMAT}")
        for key, kind in (("dataset", str), ("labels", list), ("clips", list), ("settings", dict)):
            if not isinstance(index.get(key, {} if key == "settings" else None), kind):
                raise AttsfError(f"{index_path}: '{key}' is missing or not a {kind.__name__}; rebuild the index "
                                 "with `attsf preprocess` (finished clips are kept)")
        self.dataset: str = index["dataset"]
        self.labels: list[str] = list(index["labels"])
        self.settings: dict = index.get("settings", {})
        fields = {f.name for f in dataclasses.fields(ClipRecord)}
        for i, r in enumerate(index["clips"]):
            odd = sorted(set(r) - fields) if isinstance(r, dict) else ["(not a mapping)"]
            if odd or not isinstance(r, dict) or not {"id", "label", "speaker"} <= set(r):
                what = f"unknown fields {', '.join(odd)}" if odd else "id, label or speaker missing"
                raise AttsfError(f"{index_path}: clip record {i} has {what}")
        self.records = [ClipRecord(**r) for r in index["clips"]]
        if not self.records:
            raise AttsfError(f"{self.root}: the cache holds no clips")
        unknown = sorted({r.label for r in self.records} - set(self.labels))
        if unknown:
            raise AttsfError(f"{index_path}: unknown label(s) {', '.join(unknown)} (labels are {', '.join(self.labels)})")

    def load(self, record: ClipRecord, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """A clip's tensors: all of them, or those of ``keys`` that it holds."""
        path = clip_path(self.root, record.id)
        try:
            with safe_open(path, framework="pt") as fh:
                names = fh.keys() if keys is None else [k for k in keys if k in fh.keys()]
                return {k: fh.get_tensor(k) for k in names}
        except (OSError, ValueError, SafetensorError) as exc:
            raise AttsfError(f"{path}: cannot read cached clip ({_reason(exc)})") from None

    def unreadable(self, records: Iterable[ClipRecord], full: bool = False) -> list[tuple[Path, str]]:
        """``(path, reason)`` of each clip file that is missing or does not read back: its
        header and the extent of its data (fast), or with ``full`` every tensor, which must
        also hold only finite values."""
        bad = []
        for record in records:
            path = clip_path(self.root, record.id)
            try:
                if not full:
                    with safe_open(path, framework="pt") as fh:
                        fh.keys()
                    continue
                for name, x in self.load(record).items():
                    if x.is_floating_point() and not torch.isfinite(x).all():
                        bad.append((path, f"'{name}' holds NaN or infinite values"))
                        break
            except (OSError, ValueError, SafetensorError) as exc:
                bad.append((path, _reason(exc)))
            except AttsfError as exc:
                bad.append((path, str(exc).split(": ", 1)[-1]))
        return bad

    def label_index(self, record: ClipRecord) -> int:
        return self.labels.index(record.label)


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file missing"
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return "truncated or not a safetensors file" if "deserializing header" in text else text

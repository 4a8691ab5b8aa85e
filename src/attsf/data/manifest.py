"""Anyone's own clips, listed in a CSV::

    path,label[,speaker,split,text,features]

``path`` is a video or audio file (relative paths are read from the CSV's folder);
``split`` is train / val / test when the data has a fixed split; ``features`` is an
optional per-clip visual feature file (``.npy`` (T, F) or an OpenFace CSV) used instead
of face crops. Clip ids are the file names without extension (made unique with the
parent folder's name when two files share a name).
"""

from __future__ import annotations

import csv
from pathlib import Path

from attsf.data.clips import ClipSource
from attsf.errors import AttsfError

SPLITS = {"train": "train", "val": "val", "valid": "val", "dev": "val", "test": "test", "": ""}


def sources(csv_path: str | Path) -> tuple[list[ClipSource], list[tuple[str, str]], list[str]]:
    """Sources, rows that cannot be used, and the label names (in order of appearance)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise AttsfError(f"{csv_path}: manifest not found")
    base = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise AttsfError(f"{csv_path}: the header must name at least the columns path,label")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not rows:
        raise AttsfError(f"{csv_path}: the manifest lists no clips")
    out, failures, labels, seen = [], [], [], set()
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path}:{n}"
        if not row.get("path") or not row.get("label"):
            failures.append((where, "empty path or label"))
            continue
        split = row.get("split", "").lower()
        if split not in SPLITS:
            failures.append((where, f"split {row['split']!r} is not train, val or test"))
            continue
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else base / row["path"]
        clip_id = path.stem if path.stem not in seen else f"{path.parent.name}_{path.stem}"
        if clip_id in seen:
            failures.append((where, f"clip id {clip_id} is listed twice"))
            continue
        seen.add(clip_id)
        feats = row.get("features")
        features = None if not feats else (Path(feats) if Path(feats).is_absolute() else base / feats)
        if row["label"] not in labels:
            labels.append(row["label"])
        out.append(ClipSource(media=path, clip_id=clip_id, label=row["label"], speaker=row.get("speaker", ""),
                              split=SPLITS[split], text=row.get("text", ""), features=features))
    return out, failures, labels

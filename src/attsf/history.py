"""A run's ``metrics.csv`` across interrupted attempts: Lightning's CSVLogger starts the
file afresh on every start, so a resumed run moves the earlier rows aside
(``keep_history``) and puts them back in front of the new ones when it ends
(``merge_history``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from attsf.io import atomic_write_text, read_json, stale_temp_files

LAST_SIDECAR = "checkpoints/last.json"


def keep_history(run_dir: Path) -> None:
    """Lightning's CSVLogger starts metrics.csv afresh; move the rows of earlier attempts
    to metrics.prev.csv so that a resumed run keeps its whole history. A process killed
    between saving the last checkpoint and writing that epoch's rows left them (or its
    train row) out: they are rebuilt from the metrics the checkpoint's sidecar holds. Temporary files of killed
    writers are removed."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in stale_temp_files(folder) if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
    cur, prev = run_dir / "metrics.csv", run_dir / "metrics.prev.csv"
    rows = read_csv(prev) + read_csv(cur)
    last = run_dir / LAST_SIDECAR
    if last.is_file():
        side = read_json(last)
        epoch, step = side.get("epoch"), side.get("global_step", 0) - 1
        metrics = side.get("metrics", {})
        for stage in ("val_", "train_") if epoch is not None else ():
            row = {k: v for k, v in metrics.items() if k.startswith(stage)}
            if row and not any(r.get("epoch") == str(epoch) and r.get(k) for r in rows for k in row):
                rows.append(dict(row, epoch=epoch, step=step))
    if rows:
        _write_csv(prev, rows)
    cur.unlink(missing_ok=True)


def merge_history(run_dir: Path) -> None:
    cur, prev = run_dir / "metrics.csv", run_dir / "metrics.prev.csv"
    if prev.is_file():
        new = read_csv(cur)
        first = min((int(r["epoch"]) for r in new if r.get("epoch")), default=None)
        old = [r for r in read_csv(prev) if first is None or int(r["epoch"]) < first]
        _write_csv(cur, old + new)
        prev.unlink()


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())

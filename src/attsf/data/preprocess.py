"""Run preprocessing jobs into a clip cache: in worker processes, skipping clips already
written (a file that does not read back is redone), recording failures with a one-line
reason, and rebuilding the index at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from attsf.data.cache import ClipRecord, clip_path, is_complete, write_clip, write_index
from attsf.errors import AttsfError
from attsf.io import stale_temp_files, write_json
from attsf.progress import bar as progress_bar


class Job(Protocol):
    path: Path

    @property
    def clip_id(self) -> str: ...

    def __call__(self) -> tuple[ClipRecord, dict[str, np.ndarray]]: ...


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    fallback_frames: int = 0
    faces: bool = False  # the cache holds face frames (fallback frames mean something)

    def lines(self) -> list[str]:
        if not self.done and not self.failures:
            return [f"nothing to do: all {self.skipped} clips already cached"]
        out = [f"clips written {self.done}, already cached {self.skipped}, failed {len(self.failures)}"
               + (f", fallback face frames {self.fallback_frames}" if self.faces else "")]
        out += [f"  failed: {path}: {reason}" for path, reason in self.failures]
        return out


def _run_one(job: Job, cache_dir: Path) -> tuple[str, int]:
    record, arrays = job()
    write_clip(cache_dir, record, arrays)
    return record.id, record.fallback_frames


def _reason(exc: BaseException, path: str) -> str:
    """One line; the file name is dropped when it is the job's own (the summary names it)."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if not isinstance(exc, AttsfError):
        return f"{exc.__class__.__name__}: {text}"
    return text.removeprefix(f"{path}: ")


def run_jobs(jobs: Sequence[Job], cache_dir: str | Path, *, dataset: str, labels: list[str], settings: dict,
             workers: int = 1, shard: tuple[int, int] = (0, 1), failures: list[tuple[str, str]] | None = None,
             progress: bool = True, on_done: Callable[[str], None] | None = None, device: str = "cpu",
             found: str = "") -> Summary:
    """Run the jobs of shard ``shard`` into ``cache_dir`` (MTCNN on ``device``); ``found``
    says how the clips were found, in the opening line (e.g. how many joined an AU table)."""
    from attsf.data.clips import DEVICE, worker_init

    DEVICE["faces"] = device
    cache_dir = Path(cache_dir)
    (cache_dir / "clips").mkdir(parents=True, exist_ok=True)
    for stale in stale_temp_files(cache_dir / "clips"):  # left by a killed run, never a live shard's
        stale.unlink(missing_ok=True)
    index, count = shard
    mine = [job for i, job in enumerate(jobs) if i % count == index]
    summary = Summary(failures=list(failures or []), faces=settings.get("visual", {}).get("kind") == "frames")
    todo = []
    for job in mine:
        if is_complete(clip_path(cache_dir, job.clip_id)):
            summary.skipped += 1
        else:
            todo.append(job)
    if progress and todo:
        print(f"preprocess: {len(jobs)} clips found" + (f" ({found})" if found else "")
              + (f", {len(mine)} in shard {index}/{count}" if count > 1 else "")
              + f"; {summary.skipped} already cached, {len(todo)} to do", file=sys.stderr, flush=True)
    bar = progress_bar(len(todo), "preprocess", progress and bool(todo))

    def finish(job: Job, result: tuple[str, int] | None, exc: BaseException | None) -> None:
        if exc is not None:
            summary.failures.append((str(job.path), _reason(exc, str(job.path))))
        else:
            summary.done += 1
            summary.fallback_frames += result[1]
            if on_done:
                on_done(result[0])
        bar.update(1)

    if workers <= 1:
        for job in todo:
            try:
                finish(job, _run_one(job, cache_dir), None)
            except Exception as exc:  # noqa: BLE001 - any failure of one clip is reported, the run goes on
                finish(job, None, exc)
    else:
        with ProcessPoolExecutor(workers, initializer=worker_init, initargs=(os.getpid(), device)) as pool:
            futures = {pool.submit(_run_one, job, cache_dir): job for job in todo}
            for future in as_completed(futures):
                exc = future.exception()
                finish(futures[future], None if exc else future.result(), exc)
    bar.close()
    write_index(cache_dir, dataset, labels, settings)
    write_json(cache_dir / f"failures.shard{index}of{count}.json", [{"path": p, "reason": r} for p, r in summary.failures])
    return summary

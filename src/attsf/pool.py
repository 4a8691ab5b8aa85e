"""Jobs in worker processes that die with their parent and stop at the first failure.

Used by ``--jobs`` of ``attsf cv``, ``experiment`` (each job a run) and ``tune`` (each job a
worker running trials of one study). Workers are spawned
(no forked Lightning or CUDA state) and ask the kernel to kill them when the process that
started them dies, so that a ``kill -9`` of the parent leaves no worker training on.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from attsf.errors import AttsfError

PR_SET_PDEATHSIG = 1


def _init_worker(parent: int) -> None:
    """Pool initializer: Ctrl-C is the parent's to handle (it ends the pool; a worker that
    also took it would stop its run half-way through Lightning's own shutdown), and SIGKILL
    this worker when its parent exits (Linux; elsewhere a no-op)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_jobs(jobs: list[tuple[str, Callable[..., Any], tuple]], workers: int) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, result)`` of each ``(name, function, args)`` job as it finishes, at
    most ``workers`` at once. The first job that raises stops the others at once; its
    error comes back as an AttsfError naming the job."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(os.getpid(),)) as pool:  # exit: terminate()
        pending = {pool.apply_async(fn, args): name for name, fn, args in jobs}
        while pending:
            done = [r for r in pending if r.ready()]
            for result in done:
                name = pending.pop(result)
                try:
                    value = result.get()
                except AttsfError as exc:
                    raise AttsfError(f"{name}: {exc}") from None
                except Exception as exc:  # noqa: BLE001 - any failure of a job names the job
                    raise AttsfError(f"{name} failed: {type(exc).__name__}: {exc}") from None
                yield name, value
            if not done:
                time.sleep(0.2)

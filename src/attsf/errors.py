"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
library warnings an attsf user is spared."""

import multiprocessing
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class AttsfError(Exception):
    """A user-facing error: bad input, a missing file, a config key that does not exist."""

    exit_code = 2


class Interrupted(AttsfError):
    """A run stopped by SIGINT or SIGTERM (exit 128 + the signal's number)."""

    def __init__(self, message: str, signum: int, stopped: str = "") -> None:
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum
        self.stopped = stopped or message  # what stopped where, without the advice how to go on

    def resumed_by(self, advice: str) -> "Interrupted":
        """The same interruption with other advice (a run inside a study resumes with the study)."""
        return Interrupted(f"{self.stopped}; {advice}", self.signum, self.stopped)

    def __reduce__(self):  # crosses process pools whole (the default would drop signum)
        return type(self), (str(self), self.signum, self.stopped)


def raise_interrupted(signum: int, frame) -> None:
    """Signal handler: stop where the program is, as an :class:`Interrupted`."""
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}", signum)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM stop the program where it is as an :class:`Interrupted` (training:
    Lightning tears down and re-raises it); the handlers before are restored after. Only in
    the main thread of the main process: pool workers ignore SIGINT, and their pool ends
    them with SIGTERM (``attsf.pool``)."""
    if threading.current_thread() is not threading.main_thread() or multiprocessing.parent_process() is not None:
        yield
        return
    before = {sig: signal.signal(sig, raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def quiet_library_warnings() -> None:
    """Leave out the libraries' warnings that say nothing to an attsf user: Lightning's about
    a run directory that already holds attsf's own files (or a run being resumed), a
    deprecation inside Lightning, and the modules in eval mode at the start of training
    (the branches ``train.freeze_init`` keeps frozen, on purpose). Called in every process
    that trains (spawned ones too)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")

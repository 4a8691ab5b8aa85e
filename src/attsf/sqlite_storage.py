"""Optuna's RDB storage on an SQLite file, where a trial's change of state is made by one worker only.

Optuna changes a trial's state by reading it, checking it and writing the new one, guarded
by ``SELECT ... FOR UPDATE``, which SQLite ignores. Workers asking at the same moment all
took the same waiting trial (an enqueued one, or the retry of an interrupted or dead trial)
and trained it in one folder at once; workers that found the same dead trial all failed it
and each queued a retry. Here every change of state holds an exclusive lock on a file
beside the database (an SQLite database is a local file, so its workers share one machine)."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.engine


class SQLiteStorage(optuna.storages.RDBStorage):
    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        db = sqlalchemy.engine.make_url(url).database
        self.state_lock = Path(f"{db}.lock") if db and db != ":memory:" else None

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if self.state_lock is None:
            return super().set_trial_state_values(trial_id, state, values)
        with open(self.state_lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
            return super().set_trial_state_values(trial_id, state, values)

"""Shared fixtures: a tiny real cache (written by the cache writer) and a tiny model config."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attsf.data.cache import ClipRecord, write_clip, write_index

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per test worker and per process it starts: with `-n 2` on two cores, two
    # workers' OpenMP threads spinning against each other made tiny models ~15x slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LABELS = ["neutral", "happy", "sad", "angry"]
SPEAKERS = ["01", "02", "03", "04", "05", "06"]

TINY = [
    "model.n_classes=4", "model.d_model=16", "model.n_heads=2", "model.audio_channels=[8,16,16,16]",
    "model.visual_mode=features", "model.visual_dim=6", "model.visual_channels=[16]", "model.n_cmb=1",
    "model.n_sab=1", "model.n_avam=1", "model.ffn_cmb=32", "model.ffn_sab=32", "model.ffn_avam=32",
    "model.dropout=0.1", "train.batch_size=8", "train.lr=0.003", "train.progress=false", "train.threads=1",
]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """96 clips, 6 speakers, 4 classes; MFCC-shaped audio and 6-d visual features whose
    means depend on the class, so that a model can learn them."""
    root = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    for s in SPEAKERS:
        for c, label in enumerate(LABELS):
            for k in range(4):
                audio = rng.normal(0, 1, (12, 121)).astype(np.float32)
                audio[c * 3 : c * 3 + 3] += 1.5
                visual = rng.normal(0, 1, (1, 6)).astype(np.float32)
                visual[0, c] += 2.0
                record = ClipRecord(id=f"{s}-{label}-{k}", label=label, speaker=s)
                write_clip(root, record, {"audio": audio, "visual": visual})
    write_index(root, "tiny", LABELS, {"visual": {"kind": "features", "dim": 6}})
    folds = [{"train": SPEAKERS[:4], "val": [SPEAKERS[4]], "test": [SPEAKERS[5]]},
             {"train": SPEAKERS[2:], "val": [SPEAKERS[0]], "test": [SPEAKERS[1]]}]
    (root / "folds.json").write_text(json.dumps({"folds": folds}))
    return root


@pytest.fixture
def tiny_overrides(tiny_cache) -> list[str]:
    return TINY + [f"data.cache={tiny_cache}", f"data.folds={tiny_cache / 'folds.json'}"]


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore") | kw.pop("env", {})
    proc = subprocess.run([sys.executable, "-m", "attsf", *args], capture_output=True, text=True, env=env,
                          cwd=kw.pop("cwd", ROOT), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"attsf {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``attsf ARGS`` in this process: the same main() as the console script, without a new
    interpreter's 5-10 s of imports. For the commands that train nothing (refusals, evaluate,
    predict, inspect, report); training runs in a process of its own, as a user's does."""
    from attsf.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    if check and code != 0:
        raise AssertionError(f"attsf {' '.join(args)} failed ({code}):\n{err.getvalue()[-3000:]}")
    return subprocess.CompletedProcess(["attsf", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """``attsf demo`` with one epoch: a finished run directory that later commands use."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = run_cli("demo", "--epochs", "1", "--out", str(out), timeout=600)
    (out / "stdout.txt").write_text(proc.stdout)
    return out

"""Runs that lose nothing and answer no garbage: file modes, non-finite values, interrupted runs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from conftest import ROOT


def test_written_files_follow_the_umask(tiny_overrides, tmp_path):
    """Config, metrics, checkpoints, sidecars, report and figures: 0644 under umask 022 (the
    atomic writer's temporary files start as 0600)."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for args in (["train", "demo", *tiny_overrides, "train.max_epochs=1", "--out", str(out)], ["report", str(out)]):
        proc = subprocess.run([sys.executable, "-m", "attsf", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                              preexec_fn=lambda: os.umask(0o022))
        assert proc.returncode == 0, proc.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.yaml", "metrics.json", "best.safetensors", "last.json", "report.html"} <= names
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes

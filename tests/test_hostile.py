"""Hostile and careless input: one-line errors naming the thing and the problem, a non-zero
exit, and nothing written or lost."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import cli, run_cli


def _one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attsf: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("override,key", [
    ("train.max_epochs=-1", "train.max_epochs"), ("train.batch_size=0", "train.batch_size"), ("train.lr=-1", "train.lr"),
])
def test_bad_values_stop_before_anything_is_written(override, key, tiny_overrides, tmp_path):
    """Every key's range is walked in test_config.py; here the probes of the command line."""
    out = tmp_path / "run"
    proc = cli("train", "configs/ravdess_au.yaml", *tiny_overrides, override, "--out", str(out), check=False)
    _one_line_error(proc, f"config key '{key}'", "out of range")
    assert not out.exists()


def test_summary_refuses_out_of_range_values():
    proc = cli("summary", "demo", "train.patience=-5", "data.num_workers=-3", "train.threads=-2",
                   "loss.lambda_sim=-1", check=False)
    _one_line_error(proc, "config key '", "out of range (must be >= 0)")


def test_fold_outside_the_fold_file(tiny_overrides, tmp_path):
    proc = cli("train", "configs/ravdess_au.yaml", *tiny_overrides, "data.fold=7", "--out", str(tmp_path / "r"), check=False)
    _one_line_error(proc, "data.fold=7 is out of range", "has 2 folds")
    assert not (tmp_path / "r").exists()


def test_cv_with_unparsable_folds():
    _one_line_error(cli("cv", "demo", "--folds", "a", check=False), "--folds a: expected comma-separated")


def test_corrupt_clip_is_named_before_training_and_by_inspect_verify(tiny_overrides, tiny_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    victim = sorted((cache / "clips").iterdir())[3]
    os.truncate(victim, 500)
    overrides = [o for o in tiny_overrides if not o.startswith("data.cache=")] + [f"data.cache={cache}"]
    out = tmp_path / "run"
    proc = cli("train", "configs/ravdess_au.yaml", *overrides, "--out", str(out), check=False)
    _one_line_error(proc, str(victim), "truncated or not a safetensors file", "--verify")
    assert not out.exists()
    check = cli("inspect", str(cache), "--verify", "--no-sheet", check=False)
    assert check.returncode == 1 and "1 of 96 do not read back" in check.stdout and str(victim) in check.stdout
    assert cli("inspect", str(tiny_cache), "--verify", "--no-sheet").stdout.count("0 of 96 do not read back") == 1


def test_resume_without_its_last_checkpoint_refuses(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "configs/ravdess_au.yaml", *tiny_overrides, "train.max_epochs=2", "--out", str(run))
    (run / "metrics.json").unlink()  # as if killed after its last epoch
    (run / "checkpoints/last.safetensors").unlink()
    best = (run / "checkpoints/model.safetensors").read_bytes()
    proc = cli("train", "--resume", str(run), check=False)
    _one_line_error(proc, "last.safetensors: missing", "overwrite its best weights")
    assert (run / "checkpoints/model.safetensors").read_bytes() == best

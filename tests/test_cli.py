import json

import pytest
from conftest import cli, run_cli

from attsf.cli import build_parser


def test_help_lists_every_command():
    out = run_cli("--help").stdout
    for cmd in ("train", "evaluate", "cv", "summary", "preprocess", "convert-weights", "inspect", "predict", "serve",
                "experiment", "robustness", "report", "verify",
                "demo"):
        assert cmd in out


def test_summary_prints_blocks_and_counts():
    out = cli("summary", "ravdess_au").stdout
    for block in ("cmb", "sab", "aux_a", "aux_v", "head", "total"):
        assert block in out
    assert "5,224,310" in out  # the paper-size model on 35-d AU features
    assert build_parser().parse_args(["summary", "ravdess"]).config == "ravdess"


@pytest.mark.parametrize("args,message", [
    (["train", "missing.yaml"], "missing.yaml: config file not found"),
    (["train", "ravdess_au", "model.fusoin=sum"], "unknown config key 'model.fusoin' (did you mean 'model.fusion'?)"),
    (["train", "ravdess_au", "train.lr=fast"], "config key 'train.lr': expected float"),
    (["train", "ravdess_au", "model.fusion=concat"], "'concat' is not one of sum | l2 | gate"),
    (["train", "ravdess_au", "data.cache=/nonexistent"], "/nonexistent: no clip cache here"),
    (["evaluate", "/nonexistent"], "/nonexistent: not a run directory"),
    (["preprocess", "ravdess", "--root", "/nonexistent", "--out", "x"], "/nonexistent: folder not found"),
])
def test_bad_input_is_one_line_error(args, message):
    proc = cli(*args, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _cache_with(tmp_path, tiny_cache, edit):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    index = json.loads((cache / "index.json").read_text())
    edit(index)
    (cache / "index.json").write_text(json.dumps(index))
    return cache


def test_empty_split_and_unknown_label_are_reported(tiny_overrides, tiny_cache, tmp_path):
    def drop_test_speaker(index):
        index["clips"] = [c for c in index["clips"] if c["speaker"] != "06"]

    cache = _cache_with(tmp_path / "a", tiny_cache, drop_test_speaker)
    proc = cli("train", "ravdess_au", *tiny_overrides, f"data.cache={cache}", "--out", str(tmp_path / "r1"), check=False)
    assert proc.returncode == 2 and "the test split is empty" in proc.stderr

    def bad_label(index):
        index["clips"][0]["label"] = "bored"

    cache = _cache_with(tmp_path / "b", tiny_cache, bad_label)
    proc = cli("train", "ravdess_au", *tiny_overrides, f"data.cache={cache}", "--out", str(tmp_path / "r2"), check=False)
    assert proc.returncode == 2 and "unknown label(s) bored" in proc.stderr


def test_demo_runs_end_to_end(demo_dir):
    out = (demo_dir / "stdout.txt").read_text()
    assert "not an accuracy result" in out and "[3/3] test speaker 06: accuracy" in out
    assert (demo_dir / "run" / "metrics.json").is_file()
    assert len(list((demo_dir / "cache" / "clips").glob("*.safetensors"))) == 96

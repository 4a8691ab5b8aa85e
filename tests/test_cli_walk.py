"""Every subcommand with bad arguments: one line "attsf: error: ...", exit 2, no traceback."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, TINY

from attsf.cli import main
from attsf.commands.args import ints as _ints
from attsf.io import atomic_write_bytes

LONG = "x" * 300


def call(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def one_line(capsys, *args: str, expect: str = "", code: int = 2) -> None:
    got, err = call(capsys, *args)
    lines = err.strip().splitlines()
    assert got == code and "Traceback" not in err, (args, got, err[-1500:])
    assert lines[-1].startswith("attsf: error: ") and expect in lines[-1], (args, lines[-1])


@pytest.fixture
def tiny(tiny_cache) -> list[str]:
    return [*TINY, f"data.cache={tiny_cache}", f"data.folds={tiny_cache / 'folds.json'}", "train.max_epochs=1"]


def test_argument_values(capsys, tmp_path):
    for args, expect in [
        (["cv", "demo", "--seeds=-1"], "--seeds -1: expected whole numbers from 0 to 2^32-1"),
        (["cv", "demo", "--seeds", "99999999999"], "expected whole numbers from 0 to 2^32-1"),
        (["serve", "--run", "x", "--port", "99999"], "'99999' is not a port number"),
        (["serve", "--run", "x", "--max-mb", "-1"], "'-1' is not a positive number"),
        (["serve", "--run", "x", "--max-seconds", "nan"], "'nan' is not a positive number"),
        (["robustness", "x", "--snr", "nan"], "--snr nan: expected finite numbers"),
        (["preprocess", "ravdess", "--root", "r", "--out", "o", "--detect-height", "0"], "'0' is not a whole number"),
        (["preprocess", "ravdess", "--root", "r", "--out", "o", "--workers", "0"], "'0' is not a whole number"),
        (["preprocess", "ravdess", "--root", "r", "--out", "o", "--workers", "-1"], "'-1' is not a whole number"),
        (["inspect", "c", "--clips", "-3"], "'-3' is not a whole number"),
        (["cv", "demo", "--jobs", "0"], "'0' is not a whole number"),
        (["tune", "demo", "--space", "s.yaml", "--trials", "0"], "'0' is not a whole number"),
        (["demo", "--epochs", "-2"], "'-2' is not a whole number"),
        (["nosuchcommand"], "invalid choice"),
        (["experiment", "variants", "nosuch.yaml"], "nosuch.yaml: config file not found"),
        (["experiment", "nosuch", "demo"], "invalid choice"),
        (["convert-weights", str(tmp_path / "missing.pth.tar"), str(tmp_path / "w.safetensors")], "missing.pth.tar"),
        (["summary", "demo", "model.n_cmb=-1"], "config key 'model.n_cmb'"),
        (["evaluate", str(tmp_path)], "not a run directory"),
        (["report", str(tmp_path)], ""),
        (["train"], "train needs a CONFIG"),
    ]:
        one_line(capsys, *args, expect=expect)
    assert _ints("--folds", "0,0,1") == [0, 1]  # duplicates dropped


def test_files_and_paths(capsys, tmp_path, tiny, tiny_cache):
    (tmp_path / "empty.json").write_text("[]")
    one_line(capsys, "verify", str(tmp_path / "empty.json"), expect="records no provenance")
    (tmp_path / "m.json").write_text(json.dumps({"val": {"accuracy": 0.5}, "test": {}, "provenance": {"config": {}}}))
    one_line(capsys, "verify", str(tmp_path / "m.json"), expect="neither a cv.json nor a finished run's metrics.json")
    out = tmp_path / "cv"
    one_line(capsys, "cv", "demo", *tiny, "--folds", "0,9", "--out", str(out), expect="fold 9 is out of range")
    assert not out.exists()  # checked before any run started
    for template in ("runs/{fold[0]}", "runs/{fold:300}", "runs/{fold.__class__}", "runs/{fold!r}", "runs/{x}"):
        one_line(capsys, "train", "demo", *tiny, f"train.fallback_audio={template}", "--out", str(tmp_path / "r"),
                 expect="only {fold} and {seed} may stand in braces")
    for name, index in [("list", []), ("nodataset", {"format": "attsf-cache/1", "labels": ["a"], "clips": []}),
                        ("oddclip", {"format": "attsf-cache/1", "dataset": "d", "labels": ["a"],
                                     "clips": [{"id": "1", "label": "a", "speaker": "s", "colour": "red"}]})]:
        cache = tmp_path / name
        cache.mkdir()
        (cache / "index.json").write_text(json.dumps(index))
        one_line(capsys, "train", "demo", *tiny, f"data.cache={cache}", "--out", str(tmp_path / "r"),
                 expect=str(cache / "index.json"))
    one_line(capsys, "inspect", str(tmp_path / "oddclip"), expect="clip record 0 has unknown fields colour")
    one_line(capsys, "train", "demo", *tiny, "--out", str(tmp_path / LONG / "run"), expect="File name too long")
    one_line(capsys, "predict", str(tmp_path / f"{LONG}.wav"), "--run", str(tmp_path), expect="")
    one_line(capsys, "inspect", str(tmp_path / LONG), expect="")
    one_line(capsys, "evaluate", str(tmp_path / LONG), expect="")
    one_line(capsys, "report", str(tmp_path / LONG), expect="")
    one_line(capsys, "cv", "demo", *tiny, "--out", str(ROOT / "README.md" / "sub"), expect="README.md")
    one_line(capsys, "preprocess", "ravdess", "--root", str(tmp_path), "--out", "/proc/attsf-x", expect="")
    one_line(capsys, "tune", "demo", *tiny, "--space", str(tmp_path / "nospace.yaml"), "--out", str(tmp_path / "t"),
             expect="search space file not found")


def test_a_clip_name_near_the_file_system_limit_is_written(tmp_path):
    target = tmp_path / ("c" * 245 + ".safetensors")[:250]
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data"


def test_last_resort_handler_names_the_exception_and_debug_shows_it(capsys, monkeypatch):
    import attsf.cli

    def broken(args):
        raise KeyError("boom")

    original = attsf.cli.build_parser

    def with_broken_summary():
        parser = original()
        parser._subparsers._group_actions[0].choices["summary"].set_defaults(func=broken)
        return parser

    monkeypatch.setattr(attsf.cli, "build_parser", with_broken_summary)
    one_line(capsys, "summary", "demo", expect="unexpected KeyError: 'boom' (run with --debug for the traceback)", code=1)
    with pytest.raises(KeyError):
        main(["--debug", "summary", "demo"])

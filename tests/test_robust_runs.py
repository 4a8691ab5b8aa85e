"""Runs that lose nothing and answer no garbage: file modes, non-finite values, interrupted runs."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, cli, run_cli


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
    assert {"config.yaml", "metrics.json", "model.safetensors", "last.json", "report.html"} <= names
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def _nan_cache(tiny_cache, root):
    """The tiny cache with one NaN in one training clip of fold 0."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_cache, root)
    clip = root / "clips" / "01-happy-0.safetensors"
    from safetensors import safe_open

    with safe_open(clip, framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(clip)
    tensors["audio"][3, 7] = torch.nan
    save_file(tensors, clip, metadata=meta)
    return root


def test_a_nan_in_the_cache_stops_training_with_one_line(tiny_cache, tiny_overrides, tmp_path):
    cache = _nan_cache(tiny_cache, tmp_path / "cache")
    out = tmp_path / "run"
    args = [o for o in tiny_overrides if not o.startswith("data.cache=")]
    proc = run_cli("train", "demo", *args, f"data.cache={cache}", "train.max_epochs=2", "--out", str(out), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.search(r"^attsf: error: non-finite training loss \(nan\) at epoch 1, step \d+: ", lines[-1])
    assert f"attsf inspect {cache} --verify" in lines[-1]
    assert not (out / "metrics.json").exists()
    check = cli("inspect", str(cache), "--verify", "--no-sheet", check=False)
    assert check.returncode == 1 and "01-happy-0.safetensors: 'audio' holds NaN or infinite values" in check.stdout


@pytest.fixture(scope="module")
def finished(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    run_cli("train", "demo", *TINY, f"data.cache={tiny_cache}", f"data.folds={tiny_cache / 'folds.json'}",
            "train.max_epochs=1", "--out", str(out))
    return out


def test_non_finite_weights_and_bad_labels_are_refused(finished, tmp_path):
    import json
    import shutil

    import torch

    from attsf.io import load_state, save_state

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    best = run / "checkpoints" / "model.safetensors"
    side = best.with_suffix(".json")
    labels = json.loads(side.read_text())["labels"]
    for bad, message in ((labels[:-1], "3 labels for a network with 4 outputs"),
                         ([labels[0]] * 4, "names a class twice"), ([1, 2, 3, 4], "list of class names")):
        side.write_text(json.dumps(dict(json.loads(side.read_text()), labels=bad)))
        proc = cli("evaluate", str(run), check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    side.write_text(json.dumps(dict(json.loads(side.read_text()), labels=labels)))
    state = load_state(best)
    key = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
    save_state(best, state)
    for args in (["evaluate", str(run)], ["predict", str(ROOT / "README.md"), "--run", str(run)],
                 ["predict", str(ROOT / "README.md"), "--run", str(best)]):
        proc = cli(*args, check=False)
        assert proc.returncode == 2 and "weights hold non-finite values" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat_file.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cv_pool_stops_at_the_first_failure_and_dies_with_its_parent(tiny_cache, tmp_path):
    cache = _nan_cache(tiny_cache, tmp_path / "cache")  # fold 0 trains on the NaN clip, fold 1 validates on it
    def data(root: Path) -> list[str]:
        return [f"data.cache={root}", f"data.folds={root / 'folds.json'}"]

    long = [*TINY, "train.max_epochs=400"]
    out = tmp_path / "cv"
    proc = run_cli("cv", "demo", *long, *data(cache), "--jobs", "2", "--out", str(out), check=False, timeout=900)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith(f"attsf: error: {out / 'fold0'}: non-finite training loss"), last
    assert not (out / "fold1" / "metrics.json").exists()  # stopped, not trained to its end first

    parent = subprocess.Popen([sys.executable, "-m", "attsf", "cv", "demo", *long, *data(tiny_cache), "--jobs", "2",
                               "--out", str(tmp_path / "cv2")], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "cv2").glob("fold*/checkpoints/last.safetensors")):
        time.sleep(0.5)
    workers = [c for c in _children(parent.pid) if _alive(c)]
    assert len(workers) >= 2, workers  # two trainers (and perhaps a resource tracker)
    os.kill(parent.pid, 9)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]


def test_a_run_being_written_by_a_live_process_is_not_resumed(finished, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "metrics.json").unlink()
    (run / ".lock").write_text(str(os.getpid()))  # this test's process is alive
    proc = run_cli("train", "--resume", str(run), check=False)  # another process: this one holds the lock
    assert proc.returncode == 2 and f"{run}: being written by process {os.getpid()}" in proc.stderr, proc.stderr
    (run / ".lock").write_text("999999999")  # a writer that is gone: taken over
    assert run_cli("train", "--resume", str(run)).returncode == 0 and not (run / ".lock").exists()


def _start_train(tiny_cache, out: Path, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "attsf", "train", "demo", *TINY, f"data.cache={tiny_cache}",
                             f"data.folds={tiny_cache / 'folds.json'}", f"train.max_epochs={epochs}", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_signalled_cross_validation_says_the_same_command_resumes_it(tiny_cache, tmp_path):
    """Ctrl-C of `attsf cv` told to resume the one run with `attsf train --resume`; the cv
    command itself resumes it and reuses the finished folds."""
    out = tmp_path / "cv"
    proc = subprocess.Popen([sys.executable, "-m", "attsf", "cv", "demo", *TINY, f"data.cache={tiny_cache}",
                             f"data.folds={tiny_cache / 'folds.json'}", "train.max_epochs=40", "--folds", "0",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and not (out / "fold0" / "checkpoints" / "last.json").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert re.fullmatch(rf"attsf: error: {re.escape(str(out / 'fold0'))}: interrupted by SIGINT at epoch \d+ of 40; "
                        r"it is unfinished \(no metrics.json\); the same command resumes it and reuses the finished runs",
                        err.strip().splitlines()[-1]), err[-2000:]


def test_ctrl_c_of_a_cross_validation_with_jobs_ends_it_and_says_how_to_resume(tiny_cache, tmp_path):
    """A terminal's Ctrl-C reaches every process of `attsf cv --jobs 2`: the workers ignore
    it, the parent ends the pool and says that the same command resumes the runs."""
    out = tmp_path / "cv"
    proc = subprocess.Popen([sys.executable, "-m", "attsf", "cv", "demo", *TINY, f"data.cache={tiny_cache}",
                             f"data.folds={tiny_cache / 'folds.json'}", "train.max_epochs=40", "--folds", "0,1",
                             "--jobs", "2", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(list(out.glob("fold*/checkpoints/last.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert re.fullmatch(r"attsf: error: interrupted by SIGINT; the same command resumes the unfinished runs and "
                        r"reuses the finished ones", err.strip().splitlines()[-1]), err[-2000:]
    assert "Traceback" not in err and not list(out.glob("fold*/metrics.json"))


@pytest.mark.parametrize("sig", [15, 2])
def test_a_signalled_run_says_so_and_is_not_used_as_finished(sig, tiny_cache, tmp_path):
    from attsf.card import model_card
    from attsf.io import read_json

    out = tmp_path / "run"
    proc = _start_train(tiny_cache, out, 40)
    deadline = time.time() + 600
    while time.time() < deadline and not (out / "checkpoints" / "last.json").is_file():  # one whole checkpoint
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 128 + sig, err[-2000:]
    assert re.match(rf"attsf: error: {re.escape(str(out))}: interrupted by SIG(TERM|INT) at epoch \d+ of 40; ", last)
    assert f"attsf train --resume {out}" in last and "Traceback" not in err
    assert not (out / "metrics.json").exists()
    best = out / "checkpoints" / "model.safetensors"
    card = model_card(best, read_json(best.with_suffix(".json")))
    assert re.fullmatch(r"unfinished, epoch \d+ of 40", card["unfinished"]) and "unfinished" in card["warning"]
    refused = cli("predict", str(ROOT / "README.md"), "--run", str(out), check=False)
    assert refused.returncode == 2 and "this run is unfinished, epoch" in refused.stderr
    allowed = cli("predict", str(ROOT / "README.md"), "--run", str(out), "--allow-unfinished", check=False)
    assert "unfinished" not in allowed.stderr  # past that check (this run takes AU features, not raw clips)
    if sig == signal.SIGINT:
        return  # the resume is the same after either signal: SIGTERM's run covers it
    run_cli("train", "--resume", str(out))
    assert (out / "metrics.json").is_file() and read_json(best.with_suffix(".json"))["finished"] is True
    assert model_card(best, read_json(best.with_suffix(".json")))["unfinished"] is None


@pytest.mark.parametrize("lost", ["both", "train"])
def test_resume_refuses_overrides_and_mends_what_a_kill_during_a_save_left(finished, tmp_path, lost):
    import shutil

    from attsf.io import read_json

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "metrics.json").unlink()  # a run stopped after its last checkpoint
    for extra in (["train.lr=0.1"], ["demo"]):
        bad = cli("train", *extra, "--resume", str(out), check=False)
        assert bad.returncode == 2 and "continues the run with its recorded settings" in bad.stderr, bad.stderr
    # what a kill between the checkpoint and the CSV rows of its epoch leaves: no rows of that
    # epoch (or its validation row only), and the temporary file of a writer that is gone
    epoch = read_json(out / "checkpoints" / "last.json")["epoch"]
    lines = (out / "metrics.csv").read_text().splitlines()
    kept = [x for x in lines if not x.startswith(f"{epoch},")
            or (lost == "train" and x.split(",")[2] == "")]
    assert len(kept) == len(lines) - (2 if lost == "both" else 1)
    (out / "metrics.csv").write_text("\n".join(kept) + "\n")
    (out / "checkpoints" / ".last.safetensors.999999999.abc.tmp").write_bytes(b"half a checkpoint")
    run_cli("train", "--resume", str(out))
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    epochs = sorted(int(r.split(",")[0]) for r in rows)
    assert epochs == sorted(list(range(epoch + 1)) * 2), epochs  # a val row and a train row per epoch, none lost
    assert not list(out.rglob("*.tmp"))


def test_attsf_errors_cross_process_pools_whole():
    import pickle

    from attsf.data.audio import ClipTooLong
    from attsf.errors import AttsfError, Interrupted

    for exc in (AttsfError("x: bad"), Interrupted("run: interrupted by SIGTERM", 15), ClipTooLong("a.mkv", 3.0)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.exit_code == exc.exit_code

"""attsf tune as processes: several jobs, several machines on one PostgreSQL study, Ctrl-C
and resuming (each test starts `attsf tune` processes, so they live apart from
test_tune.py and run beside it)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.fixture
def postgresql():
    """A PostgreSQL server of its own (unix socket in a temporary folder), as a study shared
    by several machines would use; run as the postgres user when the tests run as root."""
    import os
    import subprocess
    import tempfile

    bindir = Path("/usr/lib/postgresql")
    initdb = shutil.which("initdb") or next((str(p) for p in sorted(bindir.glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'attsf[postgres]')")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="attsf-pg-"))
    if os.geteuid() == 0:  # initdb refuses root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        root.chmod(0o755)
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "attsf"], check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-c listen_addresses='' -k {root}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://attsf@/postgres?host={root}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_machines_share_one_study_on_postgresql(postgresql, tiny_overrides, tmp_path):
    """Two `attsf tune` processes with their own output folders (two machines) on one
    PostgreSQL study: each trains trials the other does not, and the study ends with the
    trials asked for."""
    import subprocess
    import sys

    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [6, 8]\naugment.feature_noise: [0.0, 0.3, 0.6]\n")
    args = ["tune", "demo", *tiny_overrides, "train.seed=0", "--space", str(space), "--trials", "3", "--folds", "0",
            "--storage", postgresql, "--study", "shared"]
    # trials of seconds, not of a fraction of one: a machine that started a moment later (busy
    # with other processes) found the whole study done by the other
    machines = [subprocess.Popen([sys.executable, "-m", "attsf", *args, "--out", str(tmp_path / m)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for m in ("a", "b")]
    for proc in machines:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    trained = [{p.name for p in (tmp_path / m / "trials").iterdir()} for m in ("a", "b")]
    assert trained[0] and trained[1] and not trained[0] & trained[1]  # both worked, no trial twice
    study = json.loads((tmp_path / "b" / "study.json").read_text())
    assert study["storage"] == postgresql
    done = [t for t in study["trials"] if t["state"] == "COMPLETE"]
    assert 3 <= len(done) <= 4 and {f"trial{t['number']}" for t in done} <= trained[0] | trained[1]


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_study_retries_its_trials_and_resumes_their_runs(jobs, tiny_overrides, tmp_path):
    """Ctrl-C of a study. One job: Optuna failed the trial, so the study resumed without it (a
    grid study lost that combination, its runs trained again from the start elsewhere) and
    the message told to resume the run with `attsf train`. Two jobs: the trials stayed
    "running" until Optuna's heartbeat went stale, so a study resumed at once trained new
    trials first and ended with them listed as running."""
    import os
    import signal
    import subprocess
    import sys

    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [8, 9]\n")
    out = tmp_path / "study"
    args = ["tune", "demo", *tiny_overrides, "train.seed=0", "--space", str(space), "--trials", "2", "--folds", "0",
            "--jobs", str(jobs), "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "attsf", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(list(out.glob("trials/*/fold0/checkpoints/last.json"))) < jobs:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to every process of the command
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    where = rf"{re.escape(str(out))}/trials/trial0/fold0: interrupted by SIGINT at epoch \d+ of \d; it is unfinished " \
        r"\(no metrics.json\)" if jobs == 1 else "interrupted by SIGINT"
    assert re.fullmatch(rf"attsf: error: {where}; the same `attsf tune` command retries the unfinished trials of "
                        r"study 'demo' and resumes their runs", err.strip().splitlines()[-1]), err[-2000:]
    assert "Traceback" not in err
    # the record is written as the study stops (it was written only after a finished trial)
    stopped = json.loads((out / "study.json").read_text())["trials"]
    assert [t["interrupted"] for t in stopped] == [True] * jobs and all(t["params"] for t in stopped)
    again = run_cli(*args)  # at once: no waiting for a heartbeat to go stale
    trials = json.loads((out / "study.json").read_text())["trials"]
    interrupted = [t for t in trials if t["state"] == "FAIL"]
    assert len(interrupted) == jobs and all(t["interrupted"] for t in interrupted), trials
    assert len([t for t in trials if t["state"] == "COMPLETE"]) == 2 and {t["state"] for t in trials} == {"FAIL", "COMPLETE"}
    table = (out / "study.md").read_text()
    for t in interrupted:
        retry = next(r for r in trials if r["retry_of"] == t["number"])
        assert retry["state"] == "COMPLETE" and retry["runs"] == t["runs"]
        assert f"| {t['number']} | interrupted, retried as {retry['number']} |" in table
        metrics = json.loads((out / "trials" / t["runs"] / "fold0" / "metrics.json").read_text())
        assert metrics["provenance"]["resumed"] is True
        assert not (out / "trials" / f"trial{retry['number']}").exists()
    if jobs == 1:
        return
    assert "best overrides (validation speakers only): train.max_epochs=" in again.stdout
    # each worker's finished folds reach the terminal (a spawned worker had no log handler)
    assert re.search(r"\[worker [01]\] trial \d fold 0: val accuracy [\d.]+ %", again.stderr), again.stderr
    assert re.search(r"\[worker [01]\] trial \d: train.max_epochs=[89]\n", again.stderr), again.stderr
    bad = run_cli("tune", "demo", *tiny_overrides, "--space", str(space), "--folds", "7", "--out", str(out), check=False)
    assert bad.returncode == 2 and "fold 7 is out of range" in bad.stderr and "Traceback" not in bad.stderr
    # an error inside a trial is one line too (Optuna logged the trial's traceback)
    space.write_text("train.max_epochs: [3]\n")
    clash = run_cli("tune", "demo", *tiny_overrides, "train.seed=0", "--space", str(space), "--trials", "1",
                    "--folds", "0", "--study", "another", "--out", str(out), check=False)
    assert clash.returncode == 2 and "this run has other settings" in clash.stderr, clash.stderr
    assert "Traceback" not in clash.stderr

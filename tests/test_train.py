import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import ROOT, cli, run_cli

from attsf.config import load_config
from attsf.errors import AttsfError
from attsf.losses import LossConfig, total_loss
from attsf.model import build_model


def test_small_model_overfits_a_fixed_batch(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["model.dropout=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    batch = {"audio": torch.randn(8, 12, 121), "visual": torch.randn(8, 1, 6)}
    y = torch.arange(8) % 4
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = total_loss(model(**batch), y, LossConfig())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(**batch)["logits"].argmax(1) == y).all()


def _train_args(out, overrides, epochs=6):
    return ["train", "configs/ravdess_au.yaml", *overrides, f"train.max_epochs={epochs}", "train.patience=100",
            "--out", str(out)]


def test_train_writes_run_directory_and_learns(tiny_overrides, tmp_path):
    run_cli(*_train_args(tmp_path / "run", tiny_overrides, epochs=8))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "metrics.json", "train.log", "checkpoints/model.safetensors",
                 "checkpoints/model.json", "checkpoints/last.safetensors", "checkpoints/last.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 8
    log_lines = re.findall(r" INFO (epoch \d+/8): ", (run / "train.log").read_text())  # without progress too
    assert log_lines == [f"epoch {k}/8" for k in range(1, 9)]
    assert metrics["test"]["accuracy"] > 0.5  # chance is 0.25; the classes are separable
    side = json.loads((run / "checkpoints/model.json").read_text())
    assert side["labels"] == ["neutral", "happy", "sad", "angry"] and side["config"]["model"]["d_model"] == 16
    assert "torch" in side["versions"] and side["provenance"]["cache"]["clips"] > 0
    out = cli("evaluate", str(run), "--split", "val").stdout
    assert "val: accuracy" in out and (run / "eval_val.json").is_file()

    # a run copied elsewhere: it works from another folder, and with --cache where its cache is gone
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)
    assert "test: accuracy" in run_cli("evaluate", str(copy), cwd=tmp_path).stdout
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cached_at = cfg["data"]["cache"]
    cfg["data"]["cache"] = "/nonexistent/cache"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    gone = cli("evaluate", str(copy), check=False)
    assert gone.returncode == 2 and "/nonexistent/cache: no clip cache here (the folder does not exist)" in gone.stderr
    assert "--cache" in gone.stderr
    assert "test: accuracy" in cli("evaluate", str(copy), "--cache", cached_at).stdout
    alike = cli("evaluate", str(run), "--new-speakers", check=False)
    assert alike.returncode == 2 and "does not normalise per speaker" in alike.stderr


def test_evaluate_as_new_speakers_is_the_speaker_train_setting(tiny_overrides, tmp_path):
    """A run trained with speaker normalisation, evaluated as `attsf predict` sees a new
    speaker: the same as the run's test split in the ``speaker_train`` setting, and as the
    enrolment curve with no clip of the speaker."""
    run = tmp_path / "run"
    run_cli(*_train_args(run, [*tiny_overrides, "data.normalize=speaker"], epochs=2))
    new = json.loads(cli("evaluate", str(run), "--new-speakers", "--json").stdout)["test"]
    assert json.loads((run / "eval_test_new_speakers.json").read_text())["test"] == new
    # the enrolment curve's ends: no clip of the speaker = a new speaker; all its clips, unshrunk = the run's own
    # figure (shrunk towards the pool, as predict does, they need not be)
    from attsf.enrolment import enrolment_curve

    curve = enrolment_curve(run, [0, 2, 1000], draws=3)
    own = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert curve[0] == [pytest.approx(100 * new["accuracy"])]
    assert enrolment_curve(run, [1000], shrink=False)[1000] == [pytest.approx(100 * own)]
    assert len(curve[2]) == 3 and all(0 <= a <= 100 for a in curve[2])
    (run / "metrics.json").unlink()  # a run stopped before its end is no model to measure
    with pytest.raises(AttsfError, match="not a finished run"):
        enrolment_curve(run, [0])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["normalize"] = "speaker_train"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert json.loads(cli("evaluate", str(run), "--json").stdout)["test"] == new


RECIPE = ["augment.time_masks=2", "augment.freq_masks=1", "augment.time_shift=4", "augment.feature_noise=0.1",
          "augment.modality_dropout=0.3", "augment.mixup=0.2", "loss.label_smoothing=0.1", "train.schedule=cosine",
          "train.warmup_epochs=1", "train.ema_decay=0.9"]


@pytest.mark.parametrize("recipe", [False, True], ids=["paper", "recipe"])
def test_killed_run_resumes_to_the_same_metrics(tiny_overrides, tmp_path, recipe):
    """Killed mid-run and resumed: the same metrics as an uninterrupted run, with the
    paper's settings and with every recipe element (augmentation draws, EMA weights) on."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    overrides = tiny_overrides + RECIPE * recipe
    run_cli(*_train_args(ref, overrides))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "attsf", *_train_args(killed, overrides)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints/last.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and json.loads(last.read_text() or "{}").get("epoch", -1) >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    run_cli("train", "--resume", str(killed))
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["selected_epoch"] == b["selected_epoch"]
    rows_a = (ref / "metrics.csv").read_text().splitlines()
    rows_b = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == 1 + 2 * 6


def test_cv_runs_all_folds_and_reuses_finished_ones(tiny_overrides, tmp_path):
    out = run_cli("cv", "configs/ravdess_au.yaml", *tiny_overrides, "train.max_epochs=2", "--out", str(tmp_path)).stdout
    assert "mean ± std" in out and "Each AVAM head alone" in out
    summary = json.loads((tmp_path / "cv.json").read_text())
    assert set(summary["folds"]) == {"0", "1"}
    tests = [json.loads((tmp_path / f"fold{k}" / "metrics.json").read_text())["test"] for k in (0, 1)]
    assert summary["avam_accuracy_mean"] == pytest.approx(
        {"audio": 50 * sum(t["accuracy_a_avam"] for t in tests), "visual": 50 * sum(t["accuracy_v_avam"] for t in tests)})
    stamp = (tmp_path / "fold0" / "metrics.json").stat().st_mtime
    run_cli("cv", "configs/ravdess_au.yaml", *tiny_overrides, "train.max_epochs=2", "train.threads=1",
            "--out", str(tmp_path))  # threads change how it runs, not what it learns: reused
    assert (tmp_path / "fold0" / "metrics.json").stat().st_mtime == stamp
    other = run_cli("cv", "configs/ravdess_au.yaml", *tiny_overrides, "train.max_epochs=2", "model.fusion=l2",
                    "--out", str(tmp_path), check=False)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "fold0: this run has other settings (model.fusion=sum there, l2 here)" in other.stderr
    assert (tmp_path / "fold0" / "metrics.json").stat().st_mtime == stamp


def test_patience_is_compared_only_with_early_stopping():
    from attsf.reuse import config_differences

    last = ["train.select=last"]
    assert config_differences(load_config(None, [*last, "train.patience=5"]), load_config(None, last)) == []
    assert config_differences(load_config(None, ["train.patience=5"]), load_config(None)) == [
        "train.patience=5 there, 30 here"]


def test_ddp_two_cpu_processes_with_torchrun(tiny_overrides, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [torchrun, "--nproc_per_node=2", "--master_port=29531", "-m", "attsf",
           *_train_args(tmp_path / "ddp", tiny_overrides, epochs=2),
           "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "2 device(s)" in log


def test_cv_over_seeds_with_the_whole_recipe(tiny_overrides, tmp_path):
    args = ("cv", "configs/ravdess_au.yaml", *tiny_overrides, *RECIPE, "data.normalize=speaker", "train.max_epochs=2",
            "--folds", "0", "--seeds", "0,1", "--jobs", "2", "--out", str(tmp_path))
    proc = run_cli(*args, env={"PYTHONWARNINGS": ""})  # the warnings a user would see, worker processes too
    out = proc.stdout
    for noise in ("LeafSpec", "Experiment logs directory", "exists and is not empty"):
        assert noise not in proc.stderr, proc.stderr
    summary = json.loads((tmp_path / "cv.json").read_text())
    assert set(summary["folds"]) == {"seed0/fold0", "seed1/fold0"} and set(summary["seeds"]) == {"0", "1"}
    accs = [f["test_accuracy"] for f in summary["folds"].values()]
    assert summary["accuracy_mean"] == pytest.approx(sum(accs) / 2)
    assert summary["seed_means_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2)
    assert (tmp_path / "seed1" / "cv.json").is_file() and "| seed |" in out
    assert yaml.safe_load((tmp_path / "seed1/fold0/config.yaml").read_text())["train"]["seed"] == 1
    stamp = (tmp_path / "seed0/fold0/metrics.json").stat().st_mtime
    run_cli(*args)  # finished runs are reused
    assert (tmp_path / "seed0/fold0/metrics.json").stat().st_mtime == stamp
    # the new-speaker column of a cv: every run evaluated as new speakers, and mean ± std over them
    out = run_cli("evaluate", str(tmp_path), "--new-speakers").stdout
    new = json.loads((tmp_path / "eval_test_new_speakers.json").read_text())
    each = [json.loads((tmp_path / run / "eval_test_new_speakers.json").read_text())["test"]["accuracy"] * 100
            for run in ("seed0/fold0", "seed1/fold0")]
    assert [r["accuracy"] for r in new["runs"].values()] == pytest.approx(each) and list(new["runs"]) == [
        "seed0/fold0", "seed1/fold0"]
    assert new["accuracy_mean"] == pytest.approx(sum(each) / 2) and "new speakers" in new["setting"]
    assert "2 runs, new speakers" in out and "seed1/fold0: test: accuracy" in out
    report = run_cli("report", str(tmp_path))  # the folder of `attsf cv --seeds`: every seed's runs
    assert "1 model(s), 2 finished run(s)" in report.stderr and (tmp_path / "report.html").is_file()
    bad = cli("cv", "configs/ravdess_au.yaml", *tiny_overrides, "--seeds", "a", check=False)
    expected = "attsf: error: --seeds a: expected comma-separated whole numbers, e.g. 0,1,2"
    assert bad.returncode == 2 and bad.stderr.strip() == expected


def test_verify_reruns_a_recorded_fold_to_identical_metrics(tiny_overrides, tmp_path):
    """Determinism and `attsf verify`: the same settings, seed and thread count give the same
    metrics.json (every recipe element on, so their random draws are covered too)."""
    # two runs at once: the parent process has two threads, each run one of its own
    run_cli("cv", "configs/ravdess_au.yaml", *tiny_overrides, *RECIPE, "train.max_epochs=3", "train.threads=1",
            "--folds", "0,1", "--jobs", "2", "--out", str(tmp_path / "cv"), env={"OMP_NUM_THREADS": "2"})
    result = tmp_path / "cv" / "cv.json"
    assert json.loads(result.read_text())["folds"]["1"]["provenance"]["devices"]["threads"] == 1
    out = run_cli("verify", str(result), "--run", "1", "--out", str(tmp_path / "v1"), env={"OMP_NUM_THREADS": "2"}).stdout
    assert "re-running fold1 (seed 42, 1 thread(s))" in out  # the run's thread count, not this process's
    assert out.count("same") == 4 and "DIFFERENT" not in out
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "cv/fold1/metrics.json", tmp_path / "v1/metrics.json"))
    for m in (a, b):
        m.pop("train_seconds")
        m["provenance"]["config"]["train"]["progress"] = None  # verify turns the progress bar off
    assert a == b
    assert a["provenance"]["seed"] == 42 and a["provenance"]["devices"]["threads"] == 1
    assert a["provenance"]["cache"]["tensors_sha256"] and a["provenance"]["code"]["version"]
    doc = json.loads(result.read_text())
    doc["folds"]["1"]["test_accuracy"] += 1.0
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    other = run_cli("verify", str(tampered), "--run", "1", "--out", str(tmp_path / "v1"), check=False)
    assert other.returncode == 1 and "test_accuracy" in other.stdout and "DIFFERENT" in other.stdout
    gone = cli("verify", str(result), "--cache", str(tmp_path / "nowhere"), check=False)
    assert gone.returncode == 2 and "nowhere: the cache this result was computed on is not there; give its place " \
        "with --cache" in gone.stderr and "Traceback" not in gone.stderr
    doc.pop("provenance")
    tampered.write_text(json.dumps(doc))
    old = cli("verify", str(tampered), check=False)
    assert old.returncode == 2 and "records no provenance" in old.stderr
    for text in ("[]", '{"test": {}, "val": {"accuracy": 0.5}, "provenance": {"config": {}}}'):
        tampered.write_text(text)
        bad = cli("verify", str(tampered), check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr


def test_cv_and_experiment_under_torchrun(tiny_overrides, tmp_path):
    """Two CPU processes (gloo): every rank trains every fold, rank 0 writes cv.json and the table."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    ddp = ["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp", "train.max_epochs=2"]

    def launch(*args: str, port: int) -> subprocess.CompletedProcess:
        cmd = [torchrun, "--nproc_per_node=2", f"--master_port={port}", "-m", "attsf", *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    launch("cv", "configs/ravdess_au.yaml", *tiny_overrides, *ddp, "--out", str(tmp_path / "attsf_net"), port=29533)
    summary = json.loads((tmp_path / "attsf_net" / "cv.json").read_text())
    assert set(summary["folds"]) == {"0", "1"} and summary["provenance"]["devices"]
    assert "2 device(s)" in (tmp_path / "attsf_net" / "fold1" / "train.log").read_text()
    out = launch("experiment", "replacements", "configs/ravdess_au.yaml", *tiny_overrides, *ddp, "--folds", "0",
                 "--out", str(tmp_path), port=29534).stdout
    assert out.count("| ATTSF-Net |") == 1 and "LSTM -> Linear" in out
    table = json.loads((tmp_path / "replacements.json").read_text())
    assert set(table) == {"attsf_net", "avam_temporal_pooling", "lstm_linear", "cmb_similarity_aware_enhancement_block"}


def test_refit_on_train_and_val_keeps_the_last_epoch(tiny_overrides, tiny_cache, tmp_path):
    """``data.train_on=train+val`` with ``train.select=last``: the validation speakers join
    training, no early stopping cuts the schedule, and the evaluated weights are the last
    epoch's; selecting on validation speakers that were trained on is refused."""
    refit = [*tiny_overrides, "data.train_on=train+val", "train.select=last"]
    out = run_cli("cv", "configs/ravdess_au.yaml", *refit, "train.max_epochs=3", "train.patience=0", "--folds", "0",
                  "--out", str(tmp_path / "cv")).stdout
    assert "| val acc % (actors trained on) |" in out
    run = tmp_path / "cv" / "fold0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and not metrics["stopped_early"]
    best, last = (json.loads((run / f"checkpoints/{n}.json").read_text()) for n in ("model", "last"))
    assert best["epoch"] == last["epoch"] == metrics["selected_epoch"] == 2
    fold = json.loads((tiny_cache / "folds.json").read_text())["folds"][0]
    assert best["preprocessing"]["training_data"]["speakers"] == len(fold["train"]) + len(fold["val"])
    bad = cli(*_train_args(tmp_path / "bad", [*tiny_overrides, "data.train_on=train+val"]), check=False)
    assert bad.returncode == 2 and "set train.select=last" in bad.stderr and "Traceback" not in bad.stderr


def test_a_refit_skips_the_per_epoch_validation_and_keeps_its_results(tiny_overrides, tmp_path, monkeypatch):
    """Under ``data.train_on=train+val`` the validation actors, trained on, are no longer
    evaluated after each epoch; every figure of the run is what it was with that pass."""
    import attsf.train
    from attsf.history import read_csv
    from attsf.train import train

    cfg = load_config(ROOT / "configs/ravdess_au.yaml", [*tiny_overrides, *RECIPE, "data.train_on=train+val",
                                                         "train.select=last", "train.max_epochs=3", "train.seed=0"])
    skipped = train(cfg, tmp_path / "skipped")
    monkeypatch.setattr(attsf.train, "per_epoch_validation", lambda cfg: True)  # the pass as before
    validated = train(cfg, tmp_path / "validated")
    rows = {name: read_csv(tmp_path / name / "metrics.csv") for name in ("skipped", "validated")}
    assert not any(r.get("val_acc") for r in rows["skipped"])
    assert sum(bool(r.get("val_acc")) for r in rows["validated"]) == 3
    train_rows = {name: [(r["epoch"], r["train_loss"]) for r in v if r.get("train_loss")] for name, v in rows.items()}
    assert len(train_rows["skipped"]) == 3 and train_rows["skipped"] == train_rows["validated"]
    assert skipped["test"] == validated["test"] and skipped["val"] == validated["val"]


def test_validating_at_the_end_only_keeps_every_result(tiny_overrides, tmp_path):
    """``train.validate=end`` (with select=last): the validation actors are scored once,
    after training, instead of after every epoch; the weights and every figure are the
    same as with the per-epoch pass, and select=best refuses it."""
    from attsf.history import read_csv
    from attsf.train import train

    base = [*tiny_overrides, *RECIPE, "train.select=last", "train.max_epochs=3", "train.seed=0"]
    each = train(load_config(ROOT / "configs/ravdess_au.yaml", base), tmp_path / "each")
    end = train(load_config(ROOT / "configs/ravdess_au.yaml", [*base, "train.validate=end"]), tmp_path / "end")
    rows = {name: read_csv(tmp_path / name / "metrics.csv") for name in ("each", "end")}
    assert sum(bool(r.get("val_acc")) for r in rows["each"]) == 3 and not any(r.get("val_acc") for r in rows["end"])
    train_rows = {name: [(r["epoch"], r["train_loss"]) for r in v if r.get("train_loss")] for name, v in rows.items()}
    assert len(train_rows["end"]) == 3 and train_rows["end"] == train_rows["each"]
    assert end["val"] == each["val"] and end["test"] == each["test"]
    with pytest.raises(AttsfError, match="train.validate=end .* set train.select=last"):
        load_config(ROOT / "configs/ravdess_au.yaml", [*tiny_overrides, "train.validate=end"])


def test_ema_weights_are_validated_and_saved(tiny_overrides, tmp_path):
    """``train.ema_decay``: validation during training runs on the moving average, and both
    checkpoints hold that average as their weights (the last one also the raw weights, to
    resume from)."""
    from attsf.io import load_state

    run = tmp_path / "run"
    run_cli("train", "configs/ravdess_au.yaml", *tiny_overrides, "train.ema_decay=0.9", "train.select=last",
            "train.max_epochs=3", "--out", str(run))
    best = load_state(run / "checkpoints/model.safetensors")["state_dict"]
    last = load_state(run / "checkpoints/last.safetensors")
    raw = last["current_model_state"]
    assert best.keys() == raw.keys() == last["state_dict"].keys()
    assert all(torch.equal(best[k], last["state_dict"][k]) for k in best)
    assert not all(torch.equal(best[k], raw[k]) for k in best)
    metrics = json.loads((run / "metrics.json").read_text())
    logged = [float(r["val_acc"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val_acc")]
    assert len(logged) == 3 and metrics["val"]["accuracy"] == pytest.approx(logged[-1], abs=1e-6)


def test_verify_names_the_commit_the_run_itself_was_trained_at(tiny_overrides, tmp_path):
    """A cv.json of before per-run provenance records each run's commit beside the summary's:
    a re-run is compared with the run's own commit, not the one that wrote the summary; and
    with the CPU it ran on."""
    from attsf.config import load_config
    from attsf.provenance import devices
    from attsf.verify import plan

    cfg = load_config("configs/ravdess_au.yaml", tiny_overrides)
    doc = {"folds": {"seed0/fold0": {"test_accuracy": 50.0, "val_accuracy": 50.0, "commit": "1" * 40}},
           "provenance": {"config": cfg.to_dict(), "code": {"version": "0.1.0", "commit": "2" * 40, "dirty": False}}}
    result = tmp_path / "cv.json"
    result.write_text(json.dumps(doc))
    notes = plan(result, "seed0/fold0", None)[3]
    assert any(n.startswith("code: recorded 1111111111,") for n in notes), notes
    # the CPU: its kernels decide the digits; a record without them says so
    assert any(n.startswith("CPU: recorded ? (kernels not recorded), now ") for n in notes), notes
    doc["provenance"]["devices"] = devices()
    result.write_text(json.dumps(doc))
    assert not any(n.startswith("CPU") for n in plan(result, "seed0/fold0", None)[3])

"""`attsf preprocess` on each dataset layout in miniature, real media, real MTCNN."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from attsf.data.cache import ClipCache, clip_path
from tests import layouts
from tests.conftest import ROOT, cli, run_cli


def _failures(cache) -> dict[str, str]:
    rows = json.loads((cache / "failures.shard0of1.json").read_text())
    return {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in rows}


@pytest.fixture(scope="module")
def ravdess_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess")
    return root, layouts.ravdess(root)


def test_ravdess_video(ravdess_root, tmp_path):
    root, expected = ravdess_root
    cache = tmp_path / "cache"
    out = run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(cache), "--workers", "2", "--quiet",
                  "--allow-failures").stdout
    assert "clips written 3, already cached 0, failed 4" in out
    c = ClipCache(cache)
    assert {r.id: (r.label, r.speaker) for r in c.records} == expected
    assert c.settings["visual"]["kind"] == "frames"
    for r in c.records:
        arrays = c.load(r)
        assert tuple(arrays["audio"].shape) == (12, 121) and tuple(arrays["visual"].shape) == (15, 224, 224, 3)
        assert r.fallback_frames == 0 and len(r.extra["face_boxes"]) == 15
    fails = _failures(cache)
    assert "RAVDESS scheme" in fails["01-01-09-01-01-01-02.mp4"]
    assert "not a readable media file" in fails["01-01-04-01-01-01-02.mp4"]
    assert fails["01-01-06-01-01-01-01.mp4"] == "no audio stream"
    assert fails["01-01-07-01-01-01-01.mp4"].startswith("no face found")
    assert not list((cache / "clips").glob("*.tmp")) and not list((cache / "clips").glob(".*"))

    # a killed run: one clip half-written, one missing, a stale temp file
    first, second = (clip_path(cache, r.id) for r in c.records[:2])
    first.write_bytes(first.read_bytes()[:100])
    second.unlink()
    (cache / "clips" / f".{second.name}.abc.tmp").write_bytes(b"partial")
    proc = run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(cache), "--quiet", check=False)
    assert "clips written 2, already cached 1" in proc.stdout
    assert proc.returncode == 1 and "4 clip(s) failed (listed above)" in proc.stderr and "Traceback" not in proc.stderr
    assert len(ClipCache(cache).records) == 3 and not list((cache / "clips").glob(".*.tmp"))


def test_ravdess_audio_only_and_shards(ravdess_root, tmp_path):
    root, _ = ravdess_root
    cache = tmp_path / "cache"
    for shard in ("0/2", "1/2"):
        run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(cache), "--audio-only", "--shard", shard,
                "--quiet")
    c = ClipCache(cache)
    assert {r.id: r.label for r in c.records} == {"03-01-03-01-01-01-01": "happy", "03-01-04-02-02-02-02": "sad"}
    assert c.settings["visual"]["kind"] == "none" and set(c.load(c.records[0])) == {"audio"}


def test_iemocap_layout(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    expected = layouts.iemocap(root)
    cache = tmp_path / "cache"
    run_cli("preprocess", "iemocap", "--root", str(root), "--out", str(cache), "--quiet")
    c = ClipCache(cache)
    assert c.labels == ["neutral", "happy", "sad", "angry"]
    assert {r.id: (r.label, r.speaker, r.split) for r in c.records} == {k: v[:3] for k, v in expected.items()}
    for r in c.records:
        xs = np.array(r.extra["face_boxes"])[:, [0, 2]]
        side = expected[r.id][3]
        assert (xs.max() <= 240) if side == "left" else (xs.min() >= 240), (r.id, side, xs)
        assert r.fallback_frames == 0
    assert next(r for r in c.records if r.id == "Ses01F_impro01_F000").extra["text"] == "Excuse me."
    audio = c.load(c.records[0])["audio"]
    assert tuple(audio.shape) == (12, 121)


def test_mosi_raw_with_text(tmp_path):
    root = tmp_path / "MOSI"
    expected = layouts.mosi_raw(root)
    cache = tmp_path / "cache"
    run_cli("preprocess", "mosi", "--root", str(root), "--out", str(cache), "--text", "minilm", "--quiet")
    c = ClipCache(cache)
    got = {r.id: (r.label, r.extra["score"], r.speaker, r.split) for r in c.records}
    assert got == expected
    assert c.settings["text"] == {"model": "minilm", "dim": 384}
    texts = [c.load(r)["text"] for r in c.records]
    assert all(tuple(t.shape) == (384,) for t in texts)
    assert float(texts[0] @ texts[2]) < 0.95 * float(texts[0] @ texts[0])  # different sentences, different features


def test_mosi_pickle_and_refusal(tmp_path):
    pkl = tmp_path / "aligned_50.pkl"
    layouts.mosi_pickle(pkl)
    cache = tmp_path / "cache"
    run_cli("preprocess", "mosi", "--root", str(pkl), "--out", str(cache), "--quiet")
    c = ClipCache(cache)
    assert len(c.records) == 10 and {r.split for r in c.records} == {"train", "val", "test"}
    arrays = c.load(c.records[0])
    assert tuple(arrays["audio"].shape) == (5, 50) and tuple(arrays["visual"].shape) == (50, 20)
    assert tuple(arrays["text"].shape) == (50, 768)
    assert c.settings["audio"] == {"kind": "features", "dim": 5}

    evil, marker = tmp_path / "evil.pkl", tmp_path / "pwned"
    layouts.evil_pickle(evil, marker)
    proc = cli("preprocess", "mosi", "--root", str(evil), "--out", str(tmp_path / "c2"), check=False)
    assert proc.returncode == 2 and "refused: forbidden global" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_manifest_audio_and_features(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(tmp_path / f"a{i}.wav", layouts._voice("neutral", i, 2.0), 22050)
    (tmp_path / "audio.csv").write_text("path,label,speaker\na0.wav,calm,s1\na1.wav,tense,s2\na2.wav,calm,s2\n")
    cache = tmp_path / "cache_audio"
    run_cli("preprocess", "manifest", "--root", str(tmp_path / "audio.csv"), "--out", str(cache),
            "--labels", "tense,calm", "--quiet")
    c = ClipCache(cache)
    assert c.labels == ["tense", "calm"] and c.settings["visual"]["kind"] == "none" and len(c.records) == 3

    np.save(tmp_path / "f0.npy", rng.normal(size=(30, 7)).astype(np.float32))
    with (tmp_path / "f1.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", " timestamp", " AU01_r", " AU02_r", " AU04_r", " AU01_c", " AU02_c", " AU04_c", " gaze_0_x"])
        for k in range(40):
            w.writerow([k, k / 30, *rng.uniform(0, 5, 3).round(2), *rng.integers(0, 2, 3), 0.1])
    (tmp_path / "feats.csv").write_text(
        "path,label,split,features\na0.wav,calm,train,f0.npy\na1.wav,tense,test,f1.csv\na2.wav,calm,val,missing.npy\n")
    cache = tmp_path / "cache_feats"
    proc = run_cli("preprocess", "manifest", "--root", str(tmp_path / "feats.csv"), "--out", str(cache), "--quiet",
                   check=False)
    out = proc.stdout
    assert "clips written 2" in out and "failed 1" in out and "missing.npy: feature file not found" in out
    assert proc.returncode == 1
    c = ClipCache(cache)
    shapes = {r.id: tuple(c.load(r)["visual"].shape) for r in c.records}
    assert shapes == {"a0": (15, 7), "a1": (15, 6)} and c.settings["visual"] == {"kind": "features", "dim": 7}


def test_inspect_writes_contact_sheet(ravdess_root, tmp_path):
    root, _ = ravdess_root
    cache = tmp_path / "cache"
    run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(cache), "--quiet", "--allow-failures")
    out = cli("inspect", str(cache)).stdout
    assert "3 clips" in out and "per class: angry 1, happy 1, neutral 1" in out and "per speaker: 01 2, 02 1" in out
    sheet = cache / "contact_sheet.png"
    from PIL import Image

    img = np.asarray(Image.open(sheet))
    assert img.shape[0] > 100 and img.shape[1] > 500 and img[..., :3].std() > 20


def test_preprocess_bad_arguments(tmp_path):
    for args, text in [(["ravdess", "--root", str(tmp_path / "nope")], "folder not found"),
                       (["iemocap", "--root", str(tmp_path)], "no Session1..5 folders"),
                       (["mosi", "--root", str(tmp_path)], "label.csv not found"),
                       (["manifest", "--root", str(tmp_path / "m.csv")], "manifest not found"),
                       (["ravdess", "--root", str(tmp_path), "--shard", "3/2"], "--shard 3/2")]:
        proc = cli("preprocess", *args, "--out", str(tmp_path / "c"), check=False)
        assert proc.returncode == 2 and text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_mosi_pickle_trains_and_cross_validates_a_regression_run(tmp_path):
    """CMU-MOSI: a regression on the cache's predefined split. `attsf cv --seeds` trains one
    run per seed (not one per entry of an unrelated fold file) and summarises MAE, r, Acc-2,
    F1 and Acc-7; evaluate and verify read those; export and tune, which need classes, say so."""
    pkl = tmp_path / "aligned_50.pkl"
    layouts.mosi_pickle(pkl, n=(16, 8, 8))
    cache = tmp_path / "cache"
    run_cli("preprocess", "mosi", "--root", str(pkl), "--out", str(cache), "--quiet")
    tiny = ("mosi_features", f"data.cache={cache}", "model.d_model=16", "model.n_heads=2",
            "model.audio_channels=[8,8,8,16]", "model.visual_channels=[16]", "model.n_cmb=1", "model.n_sab=1",
            "model.ffn_cmb=16", "model.ffn_sab=16", "model.ffn_avam=16", "train.batch_size=8", "train.max_epochs=2",
            "train.progress=false", "train.threads=1")
    out = tmp_path / "cv"
    proc = run_cli("cv", *tiny, "--seeds", "0,1", "--out", str(out))
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.glob("**/metrics.json")) == [
        "seed0/fold0", "seed1/fold0"]
    assert "the cache's predefined split, seed 1 -> " in proc.stderr and "2/2 runs finished" in proc.stderr
    metrics = json.loads((out / "seed1/fold0/metrics.json").read_text())
    assert metrics["test"]["n"] == 8 and 0 < metrics["test"]["mae"] < 10
    summary = json.loads((out / "cv.json").read_text())
    maes = [json.loads((out / run / "metrics.json").read_text())["test"]["mae"] for run in ("seed0/fold0", "seed1/fold0")]
    assert summary["mae_mean"] == pytest.approx(sum(maes) / 2) and summary["folds"]["seed1/fold0"]["test_mae"] == maes[1]
    assert summary["folds"]["seed0/fold0"]["test_acc2_non0"] == pytest.approx(100 * json.loads(
        (out / "seed0/fold0/metrics.json").read_text())["test"]["acc2_non0"])
    assert f"mosi_features: MAE {summary['mae_mean']:.3f} ± " in proc.stdout and "| test Acc-7 % |" in proc.stdout
    evaluated = run_cli("evaluate", str(out)).stdout
    assert f"seed1/fold0: test: MAE {maes[1]:.3f}" in evaluated
    assert "2 runs, the runs' own normalisation: test MAE" in evaluated
    verified = run_cli("verify", str(out / "cv.json"), "--run", "seed1/fold0", "--out", str(tmp_path / "v")).stdout
    assert "test_mae" in verified and verified.count("same") == 4 and "DIFFERENT" not in verified
    assert run_cli("report", str(out / "seed0/fold0")).stdout.strip().endswith("report.html")
    for args, words in ((("cv", *tiny, "--folds", "1"), "fold 1 is out of range (a predefined split"),
                        (("export", str(out / "seed0/fold0"), "--name", "m", "--out", str(tmp_path)), "cannot be exported"),
                        (("tune", *tiny, "--space", "fused"), "a regression config"),
                        (("experiment", "ablations", *tiny), "a regression config")):
        bad = cli(*args, check=False)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_workers_exit_when_preprocess_is_killed(ravdess_root, tmp_path):
    """kill -9 of the main process: its worker processes exit within seconds."""
    root, _ = ravdess_root
    proc = subprocess.Popen([sys.executable, "-m", "attsf", "preprocess", "ravdess", "--root", str(root), "--out",
                             str(tmp_path / "cache"), "--workers", "2", "--quiet"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.time() + 60
    while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
        time.sleep(0.1)
    assert len(workers) >= 2, "no worker processes seen"
    time.sleep(1)  # inside their first clip
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived the killed command"


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def test_concurrent_shards_keep_each_others_temp_files(ravdess_root, tmp_path):
    """A shard starting up removes only temp files of dead writers, never a running shard's."""
    clips = tmp_path / "cache" / "clips"
    clips.mkdir(parents=True)
    live = clips / f".x.safetensors.{os.getpid()}.abc123.tmp"  # a writer that is running (this test)
    dead = clips / ".y.safetensors.999999999.abc123.tmp"
    for f in (live, dead):
        f.write_bytes(b"partial")
    root, _ = ravdess_root
    procs = [subprocess.Popen([sys.executable, "-m", "attsf", "preprocess", "ravdess", "--root", str(root), "--out",
                               str(tmp_path / "cache"), "--audio-only", "--shard", shard, "--quiet"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for shard in ("0/2", "1/2")]
    for p in procs:
        p.wait(timeout=120)
    assert live.exists() and not dead.exists()
    c = ClipCache(tmp_path / "cache")
    assert len(c.records) == 2 and c.unreadable(c.records, full=True) == []


def test_logs_read_plainly_when_piped(ravdess_root, tiny_overrides, tmp_path):
    """Not on a terminal: plain progress lines, no carriage-return bars; a rerun with nothing
    to do says so once; training prints one line per epoch."""
    root, _ = ravdess_root
    args = ("preprocess", "ravdess", "--root", str(root), "--out", str(tmp_path / "cache"), "--audio-only")
    first = run_cli(*args)
    assert "preprocess: 2 clips found; 0 already cached, 2 to do" in first.stderr and "(100 %)" in first.stderr
    assert "\r" not in first.stderr and "fallback face frames" not in first.stdout  # no faces in this cache
    again = run_cli(*args)
    assert again.stdout.strip() == "nothing to do: all 2 clips already cached" and again.stderr.strip() == ""
    run = run_cli("train", "configs/ravdess_au.yaml", *tiny_overrides, "train.progress=true", "train.max_epochs=2",
                  "--out", str(tmp_path / "run"))
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"] and "val_acc" in lines[0]
    assert "\r" not in run.stderr
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    for k, line in enumerate(lines):  # each line shows its own epoch's figures (rows count epochs from 0)
        shown = dict(re.findall(r"(\w+_\w+) ([\d.]+)", line))
        for key in ("train_acc", "train_loss", "val_acc"):
            logged = next(float(r[key]) for r in rows if r["epoch"] == str(k) and r[key])
            assert float(shown[key]) == pytest.approx(logged, abs=6e-5), (line, key, logged)
    assert [ln.split(" INFO ")[1] for ln in (tmp_path / "run" / "train.log").read_text().splitlines()
            if " INFO epoch " in ln] == lines

"""Figures and the HTML report of a run."""

import base64
import json
import re

import numpy as np
from conftest import cli
from PIL import Image

from attsf.overview import fold_robustness, fold_summary, pooled_confusion
from attsf.report import curves_figure, fusion_cases, fusion_section, metric_rows, tsne_embedding


def test_tsne_is_deterministic_for_a_seed():
    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    a, b = tsne_embedding(x, seed=3), tsne_embedding(x, seed=3)
    assert a.shape == (40, 2) and np.array_equal(a, b) and a.std(0).min() > 0.1


def test_fusion_cases():
    eye = np.eye(3)
    pred = {"label": np.array([0, 1, 2, 0]),
            "logits": eye[[0, 1, 0, 1]], "logits_a_avam": eye[[1, 1, 2, 2]], "logits_v_avam": eye[[2, 0, 2, 1]]}
    cases = fusion_cases(pred, ["c0", "c1", "c2", "c3"], ["x", "y", "z"])
    assert cases["helps"] == [["c0", "x", "y", "z", "x"]]  # both heads wrong, fused right
    assert [r[0] for r in cases["hurts"]] == ["c2"]  # a head right, fused wrong (c3: all wrong)
    pred["logits"] = eye[[1, 0, 2, 1]]  # fused never right where both heads are wrong; c1 hurts
    helps, hurts = fusion_section(fusion_cases(pred, ["c0", "c1", "c2", "c3"], ["x", "y", "z"]))
    assert "(0 clips" in helps and helps.endswith("<p>none</p>") and "<table>" in hurts


def test_metric_names_are_readable():
    rows = dict(metric_rows({"accuracy": 0.5, "unweighted_accuracy": 0.25, "n": 40, "accuracy_a_avam": 0.125,
                             "per_class_recall": {"x": 1.0}, "mae": 0.51234}))
    assert rows == {"Accuracy (weighted accuracy, WA)": "50.00 %", "Unweighted accuracy (UA: mean class recall)": "25.00 %",
                    "Test clips": "40", "Accuracy of the audio AVAM head alone": "12.50 %", "Mean absolute error": "0.5123"}


def test_report_is_self_contained(demo_dir):
    run = demo_dir / "run"
    cli("robustness", str(run), "--fractions", "0.3,0.6", "--snr", "10,0")
    noise = json.loads((run / "robustness.json").read_text())["noise"]["audio"]
    assert len(noise) == 2 and all(0 <= v <= 1 for v in noise)
    proc = cli("report", str(run))
    out = proc.stdout
    page = (run / "report.html").read_text()
    assert "report.html" in out and page.startswith("<!doctype html>")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # confusion, t-SNE, curves, robustness
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from the network
    commit = json.loads((run / "metrics.json").read_text())["provenance"]["code"].get("commit", "")
    assert "<h2>Provenance</h2>" in page and "seed, threads" in page and commit[:10] in page
    for name in ("confusion", "tsne", "curves", "robustness"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 5000
        with Image.open(run / "figures" / f"{name}.png") as im:
            assert round(im.info["dpi"][0]) >= 150, name
        assert (run / "figures" / f"{name}.svg").read_bytes().startswith(b"<?xml")
        assert (run / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert "predicting its" in proc.stderr and "t-SNE of" in proc.stderr and "figures ->" in proc.stderr  # its steps
    assert 'class="banner">demo model trained on generated clips' in page
    assert "<th>what</th><th>recorded</th>" in page and "<h2>Settings</h2>" in page
    assert "<tr><td>model.d_model</td><td>32</td><td>128</td></tr>" in page  # the demo's narrow model
    assert "<td>model.fusion</td>" not in page  # only the keys that differ from the defaults
    assert "Accuracy (weighted accuracy, WA)" in page and "Chance (one class in n)</td><td>25.00 %" in page


def test_cv_folder_pools_its_finished_folds(tmp_path):
    recall = {"a": 0.5, "b": 1.0}
    for k, confusion in enumerate([[[1, 1], [0, 2]], [[3, 0], [1, 1]]]):
        (tmp_path / f"fold{k}").mkdir()
        (tmp_path / f"fold{k}" / "metrics.json").write_text(
            json.dumps({"test": {"confusion": confusion, "per_class_recall": recall, "accuracy": 0.5 + k / 4,
                                 "unweighted_accuracy": 0.5}, "val": {"accuracy": 0.6}, "epochs": 3, "selected_epoch": 1}))
    (tmp_path / "fold2").mkdir()  # interrupted: no metrics.json, left out
    assert pooled_confusion(tmp_path) == ([[4, 1], [1, 3]], ["a", "b"])
    summary = fold_summary(tmp_path)
    assert {k: f["test_accuracy"] for k, f in summary["folds"].items()} == {"0": 50.0, "1": 75.0}
    assert summary["accuracy_mean"] == 62.5 and summary["accuracy_std"] == 12.5
    assert fold_robustness(tmp_path) is None  # no fold has one
    base = {"metric": "accuracy", "seed": 0, "fractions": [0.5], "snr_db": [10.0]}
    for k, (clean, masked, noisy) in enumerate([(0.8, 0.6, 0.7), (0.6, 0.2, 0.5)]):
        (tmp_path / f"fold{k}" / "robustness.json").write_text(json.dumps(dict(
            base, clean=clean, masked={"audio": [masked]}, missing={"audio": masked / 2}, fallback={"audio": masked},
            noise={"audio": [noisy]})))
    mean = fold_robustness(tmp_path)
    assert mean["n_folds"] == 2 and np.isclose(mean["clean"], 0.7) and np.allclose(mean["masked"]["audio"], [0.4])
    assert np.isclose(mean["missing"]["audio"], 0.2) and np.allclose(mean["noise"]["audio"], [0.6])
    assert np.isclose(mean["fallback"]["audio"], 0.4)
    (tmp_path / "fold1" / "robustness.json").write_text(json.dumps(dict(
        base, seed=1, clean=0.6, masked={"audio": [0.2]}, missing={"audio": 0.1})))
    assert fold_robustness(tmp_path) is None  # other settings: not averaged


def test_metric_names_of_a_run_with_fallback_networks():
    rows = dict(metric_rows({"accuracy_a_fallback": 0.625, "accuracy_a_avam": 0.5}))
    assert rows == {"Accuracy of the audio fallback network (audio alone)": "62.50 %",
                    "Accuracy of the audio AVAM head alone": "50.00 %"}


def test_curves_name_the_run_s_network_on_whole_epochs(tmp_path):
    """An audio-only run's loss is its audio network's, not a "fused head"; epochs are
    whole numbers from 1; L_sim is drawn on a log scale."""
    csv_path = tmp_path / "metrics.csv"
    rows = ["epoch,step,train_acc,train_loss,train_loss_av,train_loss_a,train_loss_sim,val_acc,val_loss_av"]
    rows += [f"{e},{e},{0.3 + e / 20},{2 - e / 10},{1 - e / 20},{1.1 - e / 20},{10 / (e + 1)},{0.3 + e / 25},{1.2 - e / 20}"
             for e in range(7)]
    csv_path.write_text("\n".join(rows) + "\n")
    fig = curves_figure(csv_path, 6, 8, modalities="a")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "train, audio network" in legend and not any("fused" in t for t in legend)
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("−-").isdigit() for t in ticks), ticks
    assert fig.axes[2].get_yscale() == "log"
    assert "train, fused head" in [t.get_text() for t in curves_figure(csv_path, 6, 8).axes[1].get_legend().get_texts()]
    # a refit logs no validation pass: still an accuracy panel, with chance, not "MAE"
    csv_path.write_text("\n".join(r.rsplit(",", 2)[0] for r in rows) + "\n")
    refit = curves_figure(csv_path, 6, 8, val_trained_on=True, modalities="a").axes[0]
    assert refit.get_title() == "Accuracy per epoch"
    assert "chance (12.5 %)" in [t.get_text() for t in refit.get_legend().get_texts()]


def test_a_cv_summary_s_provenance_is_its_runs_own():
    """A cv.json written by ``--jobs 2`` records the parent process (seed 42, 2 threads); the
    report shows what every run trained with (one thread each, its own seed, which resumed)."""
    from conftest import ROOT

    from attsf.report import provenance_section

    page = provenance_section(ROOT / "docs" / "results" / "au_only.json")
    rows = re.findall(r"<tr><td>(seed\d/fold\d)</td><td>(\d+), (\d+)</td><td>(yes|no)</td></tr>", page)
    assert len(rows) == 15 and {(run[4], seed, threads) for run, seed, threads, _ in rows} == {
        (s, s, "1") for s in "012"}
    assert "42, 2" not in page and ("seed0/fold4", "0", "1", "yes") in rows
    assert "commit 2ecba35644" in page and "tensors 56e4de9eb0d60089" in page

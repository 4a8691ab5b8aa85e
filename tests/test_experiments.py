"""The experiment commands on a tiny config: tables with the paper's numbers, runs reused."""

import json

import pytest
from conftest import cli, run_cli
from PIL import Image

from attsf.overview import pooled_confusion


def test_experiments_write_tables_and_reuse_runs(tiny_overrides, tmp_path):
    out = tmp_path / "exp"
    common = [*tiny_overrides, "train.max_epochs=1", "--out", str(out), "--folds", "0"]
    table = run_cli("experiment", "ablations", "ravdess_au", *common).stdout
    for row, paper in [("ATTSF-Net", "88.67"), ("w/o L_sim", "87.43"), ("w/o audio auxiliary", "85.65"),
                       ("w/o visual auxiliary", "88.46"), ("w/o SAB", "86.86")]:
        line = next(x for x in table.splitlines() if x.startswith(f"| {row} |"))
        assert line.rstrip().endswith(f"| {paper} |")
    assert (out / "ablations.md").read_text() == table.split("-> ")[0]
    trained = (out / "attsf_net" / "fold0" / "metrics.json").stat().st_mtime

    rob = run_cli("experiment", "robustness", "ravdess_au", *common, "--fractions", "0.5", "--snr", "none").stdout
    assert (out / "attsf_net" / "fold0" / "metrics.json").stat().st_mtime == trained  # reused, not retrained
    assert "| ATTSF-Net (audio) |" in rob and "| paper ATTSF-Net (audio) | 88.67 | 83.40 | — | — |" in rob
    head = json.loads((out / "attsf_net" / "fold0" / "metrics.json").read_text())["test"]["accuracy_v_avam"]
    line = next(x for x in rob.splitlines() if x.startswith("| ATTSF-Net (audio) |"))
    assert line.endswith(f"| {100 * head:.2f} |")  # audio missing: the visual head answers
    assert "| ATTSF-Gat (visual) |" in rob
    result = json.loads((out / "robustness.json").read_text())
    assert set(result) == {"attsf_net", "attsf_l2", "attsf_gat"}
    fig = result["attsf_net"]["robustness"]  # the figures themselves, per fold and their mean, in %
    fold0 = json.loads((out / "attsf_net" / "fold0" / "robustness.json").read_text())
    assert fig["folds"]["0"]["masked"]["audio"] == [pytest.approx(100 * fold0["masked"]["audio"][0])]
    assert fig["folds"]["0"]["fallback"]["audio"] == pytest.approx(100 * head)
    assert fig["mean"]["missing"]["visual"] == pytest.approx(100 * fold0["missing"]["visual"])  # one fold: its mean
    assert f"| {fig['mean']['clean']:.2f} | {fig['mean']['masked']['audio'][0]:.2f} |" in line

    proc = run_cli("experiment", "replacements", "ravdess_au", *common, "--jobs", "2")
    rep, log = proc.stdout, proc.stderr.splitlines()
    assert "| LSTM -> Linear |" in rep and rep.count("| 87.25 |") == 1
    assert "| CMB -> similarity-aware enhancement block |" in rep and rep.count("| 86.67 |") == 1
    assert (out / "cmb_similarity_aware_enhancement_block" / "fold0" / "metrics.json").is_file()
    # --jobs 2: one pool for all the rows' runs, every run handed to it before the first one finishes
    planned = [n for n, line in enumerate(log) if line.startswith("fold 0/") and " -> " in line]
    finished = [n for n, line in enumerate(log) if "test accuracy" in line]
    assert len(planned) == len(finished) == 4 and max(planned) < min(finished)

    page = cli("report", str(out)).stdout  # the experiment folder's report
    assert page.strip().endswith("report.html")
    text = (out / "report.html").read_text()
    assert "<h2>ablations</h2>" in text and "<h2>replacements</h2>" in text and "<h2>variants</h2>" not in text
    assert "paper ATTSF-Net (audio)" in text and "data:image/png;base64," in text
    for name in ("ablations", "replacements", "robustness", "curves", "confusion_attsf_net"):
        assert Image.open(out / "figures" / f"{name}.png").size[0] > 300
    confusion, labels = pooled_confusion(out / "attsf_net")
    test = json.loads((out / "attsf_net" / "fold0" / "metrics.json").read_text())["test"]
    assert confusion == test["confusion"] and labels == list(test["per_class_recall"])


def test_every_row_of_every_experiment_loads_on_the_fallback_config():
    """The unimodal rows leave out the fused-only keys (fallbacks, branch init) of a fused base."""
    from attsf.config import load_config, resolve_config_path
    from attsf.experiments import EXPERIMENTS

    base = resolve_config_path("ravdess_au_fallback")
    for rows in EXPERIMENTS.values():
        for row in rows:
            cfg = load_config(base, list(row.overrides))
            assert bool(cfg.train.fallback_audio) == (cfg.model.modalities == "av"), row.name

"""Figures and the HTML report of a run."""

import base64
import json
import re

import numpy as np
from conftest import run_cli

from attsf.report import fusion_cases, tsne_embedding


def test_tsne_is_deterministic_for_a_seed():
    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    a, b = tsne_embedding(x, seed=3), tsne_embedding(x, seed=3)
    assert a.shape == (40, 2) and np.array_equal(a, b) and a.std(0).min() > 0.1


def test_fusion_cases():
    eye = np.eye(3)
    pred = {"label": np.array([0, 1, 2, 0]),
            "logits": eye[[0, 1, 0, 1]], "logits_a": eye[[1, 1, 2, 2]], "logits_v": eye[[2, 0, 2, 1]]}
    cases = fusion_cases(pred, ["c0", "c1", "c2", "c3"], ["x", "y", "z"])
    assert cases["helps"] == [["c0", "x", "y", "z", "x"]]  # both heads wrong, fused right
    assert [r[0] for r in cases["hurts"]] == ["c2"]  # a head right, fused wrong (c3: all wrong)


def test_report_is_self_contained(demo_dir):
    run = demo_dir / "run"
    run_cli("robustness", str(run), "--fractions", "0.3,0.6", "--snr", "10,0")
    noise = json.loads((run / "robustness.json").read_text())["noise"]["audio"]
    assert len(noise) == 2 and all(0 <= v <= 1 for v in noise)
    out = run_cli("report", str(run)).stdout
    page = (run / "report.html").read_text()
    assert "report.html" in out and page.startswith("<!doctype html>")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # confusion, t-SNE, curves, robustness
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from the network
    for name in ("confusion", "tsne", "curves", "robustness"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 5000

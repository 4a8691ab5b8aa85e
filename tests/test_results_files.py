"""The committed result files hold the figures the results page shows."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

RESULTS = ROOT / "docs" / "results"
PAGE = (ROOT / "docs" / "results.md").read_text()


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["attsf_net", "audio_only", "au_only"])
def test_headline_rows_match_their_cv_files(name):
    cv = _load(name)
    assert len(cv["folds"]) == 15 and cv["val_trained_on"]
    assert f"{cv['accuracy_mean']:.2f} ± {cv['accuracy_std']:.2f}" in PAGE


@pytest.mark.parametrize("name", ["attsf_net", "audio_only", "au_only"])
def test_new_speaker_figures_are_the_runs_of_their_cv_file(name):
    """The new-speaker column (`attsf evaluate CV_DIR --new-speakers`) over the same 15 runs."""
    cv, new = _load(name), _load(f"{name}_new_speakers")
    assert set(new["runs"]) == set(cv["folds"]) and "new speakers" in new["setting"]
    accs = [r["accuracy"] if isinstance(r, dict) else r for r in new["runs"].values()]
    assert new["accuracy_mean"] == pytest.approx(sum(accs) / len(accs), abs=1e-3)
    assert f"{new['accuracy_mean']:.2f} ± {new['accuracy_std']:.2f}" in PAGE


def test_robustness_file_holds_the_figures_of_the_page():
    rob, variants = _load("experiments_robustness"), _load("experiments_variants")
    for slug, name in (("attsf_net", "ATTSF-Net"), ("attsf_l2", "ATTSF-L2"), ("attsf_gat", "ATTSF-Gat")):
        mean = rob[slug]["robustness"]["mean"]
        assert mean["clean"] == pytest.approx(variants[slug]["accuracy_mean"], abs=0.006)
        for modality, label in (("audio", "audio"), ("visual", "AU")):
            masked = mean["masked"][modality]
            assert len(masked) == 9 and all(0 < v < 100 for v in masked) and masked[0] > masked[-1]
            cells = [mean["clean"], masked[0], masked[2], masked[4], masked[6], masked[8], mean["missing"][modality],
                     mean["fallback"][modality]]
            assert f"| {name}, {label} | " + " | ".join(f"{v:.2f}" for v in cells) + " |" in PAGE
        assert " / ".join(f"{v:.2f}" for v in mean["noise"]["audio"]) in PAGE
    # with the audio missing the AU network answers: the fallback is that network's own figure
    assert rob["attsf_net"]["robustness"]["mean"]["fallback"]["audio"] == pytest.approx(74.57)


def test_a_missing_modality_is_answered_by_the_unimodal_rows():
    """With a modality missing the fallback is the other modality's network: its figures are
    the unimodal rows' own, and the fused network's AVAM heads are those of its cv file."""
    mm, heads = _load("missing_modality"), _load("attsf_net")["avam_accuracy_mean"]
    assert mm["audio_missing"] == pytest.approx(_load("au_only")["accuracy_mean"], abs=0.006)
    assert mm["au_missing"] == pytest.approx(_load("audio_only")["accuracy_mean"], abs=0.006)
    own = mm["own_avam_heads"]
    assert (own["audio_missing"], own["au_missing"]) == pytest.approx((heads["visual"], heads["audio"]), abs=0.006)
    assert f"{own['audio_missing']:.2f} / {own['au_missing']:.2f} %" in PAGE


def test_the_results_page_is_short_and_names_its_normalisation():
    assert len(PAGE.splitlines()) < 300
    assert "own-speaker" in PAGE and "new-speaker" in PAGE

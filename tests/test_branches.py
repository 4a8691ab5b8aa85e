"""Two-stage training: a fused model's branches started from unimodal runs of the same fold
(train.init_audio / init_visual), frozen with train.freeze_init."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli, run_cli

from attsf.config import load_config
from attsf.cv_results import cv_summary
from attsf.data.datamodule import ClipDataModule
from attsf.engine import ATTSFModule
from attsf.evaluate import open_run, predict_dataset
from attsf.io import load_state


def _args(out, overrides, *extra):
    return ["configs/ravdess_au.yaml", *overrides, "train.max_epochs=2", "train.patience=100", *extra, "--out", str(out)]


@pytest.fixture(scope="module")
def unimodal_runs(tiny_cache, tmp_path_factory):
    """Seed-0 audio-only and visual-only runs of fold 0, laid out as `attsf cv --seeds 0` does."""
    from conftest import TINY

    root = tmp_path_factory.mktemp("unimodal")
    overrides = TINY + [f"data.cache={tiny_cache}", f"data.folds={tiny_cache / 'folds.json'}"]
    for m in ("a", "v"):
        run_cli("cv", *_args(root / m, overrides, f"model.modalities={m}"), "--seeds", "0", "--folds", "0")
    return {m: f"{root / m}/seed{{seed}}/fold{{fold}}" for m in ("a", "v")}


def _init(unimodal_runs, freeze=True):
    return [f"train.init_audio={unimodal_runs['a']}", f"train.init_visual={unimodal_runs['v']}",
            f"train.freeze_init={str(freeze).lower()}", "train.seed=0", "data.fold=0"]


def _outputs(run_dir, key):
    run = open_run(run_dir)
    return predict_dataset(run.model, ClipDataModule(run.cfg).dataset("test"))[key]


def test_frozen_branches_answer_as_the_unimodal_networks(tiny_overrides, unimodal_runs, tmp_path):
    fused = tmp_path / "fused"
    run_cli("train", *_args(fused, tiny_overrides, *_init(unimodal_runs)))
    audio, visual = (unimodal_runs[m].format(seed=0, fold=0) for m in ("a", "v"))
    # the heads with the other modality missing are the unimodal networks, to the last bit of their weights
    np.testing.assert_array_equal(_outputs(fused, "logits_a_avam"), _outputs(audio, "logits"))
    np.testing.assert_array_equal(_outputs(fused, "logits_v_avam"), _outputs(visual, "logits"))
    state = load_state(fused / "checkpoints/model.safetensors")["state_dict"]
    uni = load_state(f"{audio}/checkpoints/model.safetensors")["state_dict"]
    assert torch.equal(state["model.audio.front.convs.1.running_mean"], uni["model.stream.front.convs.1.running_mean"])
    # while the fused path learned: its weights moved from where a fresh model of this seed starts
    torch.manual_seed(0)
    start = ATTSFModule(load_config(fused / "config.yaml"), ["x"] * 4).model.state_dict()
    assert not torch.equal(start["head.1.weight"], state["model.head.1.weight"])
    prov = json.loads((fused / "metrics.json").read_text())["provenance"]["init"]
    assert set(prov) == {"audio", "visual"} and len(prov["audio"]["weights_sha256"]) == 64


def test_init_without_freezing_starts_from_the_unimodal_weights(tiny_overrides, unimodal_runs):
    cfg = load_config("configs/ravdess_au.yaml", tiny_overrides + _init(unimodal_runs, freeze=False))
    module = ATTSFModule(cfg, ["x"] * 4)
    uni = load_state(f"{unimodal_runs['a'].format(seed=0, fold=0)}/checkpoints/model.safetensors")["state_dict"]
    assert torch.equal(module.model.aux_a.classifier.weight, uni["model.aux.classifier.weight"])
    assert all(p.requires_grad for p in module.parameters())
    module.train()
    assert module.model.audio.training


@pytest.mark.parametrize("change, message", [
    (["data.fold=1", "train.init_audio={a0}", "train.init_visual={v0}"], "was trained with data.fold=0, this run has 1"),
    (["train.seed=5"], "is not a finished run"),
    (["train.init_visual={a}"], "is a model.modalities=a run, not v"),
    (["model.visual_norm=none"], "does not fit this model's visual branch"),
    (["train.init_audio=runs/{{fold}}/{{nope}}"], "only {fold} and {seed} may stand in braces"),
])
def test_a_source_run_that_does_not_fit_is_a_one_line_error(tiny_overrides, unimodal_runs, tmp_path, change, message):
    a, v = unimodal_runs["a"], unimodal_runs["v"]
    change = [c.format(a=a, a0=a.format(seed=0, fold=0), v0=v.format(seed=0, fold=0)) for c in change]
    proc = cli("train", *_args(tmp_path / "run", tiny_overrides, *_init(unimodal_runs), *change), check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_freeze_init_needs_a_fused_model_with_an_init(tiny_overrides):
    proc = cli("train", *_args("unused", tiny_overrides, "train.freeze_init=true"), check=False)
    assert proc.returncode == 2 and "train.freeze_init needs train.init_audio" in proc.stderr


def test_without_the_audio_auxiliary_the_stream_alone_is_loaded_and_frozen(tiny_overrides, unimodal_runs):
    cfg = load_config("configs/ravdess_au.yaml", tiny_overrides + _init(unimodal_runs) + ["model.use_audio_aux=false"])
    module = ATTSFModule(cfg, ["x"] * 4)
    uni = load_state(f"{unimodal_runs['a'].format(seed=0, fold=0)}/checkpoints/model.safetensors")["state_dict"]
    assert torch.equal(module.model.audio.temporal.seq.weight_ih_l0, uni["model.stream.temporal.seq.weight_ih_l0"])
    module.train()
    assert not module.model.audio.training and not any(p.requires_grad for p in module.model.audio.parameters())
    assert module.model.cmb.training and all(p.requires_grad for p in module.model.cmb.parameters())


def test_fallback_networks_answer_for_a_missing_modality(tiny_overrides, unimodal_runs, tmp_path):
    """train.fallback_*: the unimodal runs travel in the fused run and answer with the other
    modality missing; the fused network trains exactly as without them."""
    fallbacks = [f"train.fallback_audio={unimodal_runs['a']}", f"train.fallback_visual={unimodal_runs['v']}"]
    plain, carried = tmp_path / "plain", tmp_path / "carried"
    run_cli("train", *_args(plain, tiny_overrides, "train.seed=0", "data.fold=0"))
    run_cli("train", *_args(carried, tiny_overrides, "train.seed=0", "data.fold=0", *fallbacks))
    p, c = (json.loads((r / "metrics.json").read_text()) for r in (plain, carried))
    assert c["test"]["accuracy"] == p["test"]["accuracy"] and c["test"]["confusion"] == p["test"]["confusion"]
    assert c["test"]["accuracy_a_avam"] == p["test"]["accuracy_a_avam"] and "accuracy_a_fallback" not in p["test"]
    uni = {m: json.loads((Path(unimodal_runs[m].format(seed=0, fold=0)) / "metrics.json").read_text())["test"]
           for m in ("a", "v")}
    assert c["test"]["accuracy_a_fallback"] == uni["a"]["accuracy"]
    assert c["test"]["accuracy_v_fallback"] == uni["v"]["accuracy"]
    assert (carried / "checkpoints/fallback_audio.safetensors").is_file()
    assert set(c["provenance"]["fallbacks"]) == {"audio", "visual"}
    summary = cv_summary({0: c})
    assert summary["fallback_accuracy_mean"]["audio"] == 100 * uni["a"]["accuracy"]
    assert summary["avam_accuracy_mean"]["audio"] == 100 * p["test"]["accuracy_a_avam"]
    cli("robustness", str(carried), "--fractions", "0.5", "--snr", "none")
    fallback = json.loads((carried / "robustness.json").read_text())["fallback"]
    assert fallback == {"audio": uni["v"]["accuracy"], "visual": uni["a"]["accuracy"]}

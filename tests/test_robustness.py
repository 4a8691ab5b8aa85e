"""Test-time corruption: masking replaces exactly the requested fraction."""

import json

import numpy as np
import pytest
import torch
from conftest import cli, run_cli

from attsf.config import load_config
from attsf.data.clips import PrepSettings, clip_waveform
from attsf.data.datamodule import ClipDataModule
from attsf.robustness import NoisyAudio, add_noise, corrupt, mask_fraction


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_mask_replaces_exact_fraction_of_time_steps(fraction):
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 12, 121) + 5
    masked, mask = mask_fraction(audio, fraction, -1, g)
    k = round(fraction * 121)
    assert mask.shape == (4, 121) and (mask.sum(1) == k).all()
    changed = (masked != audio).any(dim=1)  # per time step
    assert torch.equal(changed, mask)
    if k:  # noise on the clip's scale
        assert abs(masked[mask.unsqueeze(1).expand_as(masked)].mean().item() - 5) < 0.5


def test_mask_frames_and_length_one_features():
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 15, 3, 8, 8), dtype=torch.uint8)
    masked, mask = mask_fraction(frames, 0.4, 1, g)
    assert (mask.sum(1) == 6).all() and masked.dtype == torch.uint8
    assert torch.equal((masked != frames).flatten(2).any(2), mask)
    au = torch.rand(3, 1, 35)  # the shared AU vector: a sequence of length 1 -> mask its entries
    masked, mask = mask_fraction(au, 0.2, 1, g)
    assert mask.shape == (3, 35) and (mask.sum(1) == 7).all()
    assert torch.equal(masked[:, 0] != au[:, 0], mask)
    gone = corrupt({"audio": torch.randn(2, 12, 5)}, "audio", 1.0, g, missing=True)["audio"]
    assert not gone.any()


def test_robustness_command(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "ravdess_au", *tiny_overrides, "train.max_epochs=2", "--out", str(run))
    out = cli("robustness", str(run), "--fractions", "0.5,1.0", "--snr", "none").stdout
    assert "| audio |" in out and "| visual |" in out
    result = json.loads((run / "robustness.json").read_text())
    assert result["fractions"] == [0.5, 1.0] and len(result["masked"]["audio"]) == 2
    clean = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert result["clean"] == pytest.approx(clean)
    assert all(0 <= v <= 1 for v in result["masked"]["audio"] + list(result["missing"].values()))
    # with a modality missing, the head of the other answers, as `attsf predict` does; that
    # head reads its own modality only, so it scores what it scores on clean input
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert result["fallback"] == pytest.approx({"audio": test["accuracy_v_avam"], "visual": test["accuracy_a_avam"]})
    assert "missing, the other head answers" in out
    stamp = (run / "robustness.json").stat().st_mtime
    assert cli("robustness", str(run), "--fractions", "0.5,1.0", "--snr", "none").stdout == out
    assert (run / "robustness.json").stat().st_mtime == stamp  # same settings: reused
    cli("robustness", str(run), "--fractions", "0.5,1.0", "--snr", "none", "--seed", "3")
    assert json.loads((run / "robustness.json").read_text())["seed"] == 3


@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_add_noise_has_the_requested_snr(snr):
    rng = np.random.default_rng(0)
    y = np.sin(np.linspace(0, 2000, 64000)).astype(np.float32) * 0.3
    noise = add_noise(y, snr, rng) - y
    measured = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.1)


def test_noisy_audio_rereads_the_source_of_each_cached_clip(demo_dir):
    cfg = load_config(demo_dir / "run" / "config.yaml")
    test = ClipDataModule(cfg).dataset("test")
    audio = PrepSettings.from_index(test.cache.settings).audio
    waveforms = [clip_waveform(r, audio.sample_rate) for r in test.records]
    clean = torch.stack([test[i]["audio"] for i in range(len(test))])
    quiet = torch.stack([NoisyAudio(test, waveforms, audio, 80.0)[i]["audio"] for i in range(len(test))])
    loud = torch.stack([NoisyAudio(test, waveforms, audio, 0.0)[i]["audio"] for i in range(len(test))])
    torch.testing.assert_close(quiet, clean, atol=0.5, rtol=0.01)  # same MFCCs as the cache's at 80 dB
    assert (loud - clean).abs().mean() > 10 * (quiet - clean).abs().mean()

"""The training recipe's elements (augment.py), the learning-rate schedules and label smoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attsf.augment import AugmentConfig, augment_batch, mixup, modality_dropout, spec_augment, time_shift
from attsf.config import TrainConfig
from attsf.engine import lr_factor
from attsf.losses import LossConfig, total_loss


def _batch(b: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"audio": torch.randn(b, 12, 121, generator=g) + 5, "visual": torch.randn(b, 1, 35, generator=g) + 5,
            "label": torch.arange(b) % 8}


def test_spec_augment_zeroes_bands_no_wider_than_asked():
    torch.manual_seed(0)
    x = _batch()["audio"]
    out = spec_augment(x, AugmentConfig(time_masks=2, time_width=10, freq_masks=1, freq_width=2))
    zero_cols = (out == 0).all(dim=1).sum(dim=1)  # frames blanked in every coefficient
    zero_rows = (out == 0).all(dim=2).sum(dim=1)  # coefficients blanked in every frame
    assert (zero_cols <= 20).all() and zero_cols.sum() > 0
    assert (zero_rows <= 2).all() and zero_rows.sum() > 0
    kept = out != 0
    assert torch.equal(out[kept], x[kept])  # nothing else changes


def test_time_shift_moves_frames_and_fills_zeros():
    torch.manual_seed(1)
    x = _batch()["audio"]
    out = time_shift(x, 5)
    for i in range(x.shape[0]):
        shifts = [s for s in range(-5, 6) if torch.equal(out[i, :, max(s, 0):121 + min(s, 0)],
                                                         x[i, :, max(-s, 0):121 - max(s, 0)])]
        assert len(shifts) == 1
        s = shifts[0]
        assert (out[i, :, :s] == 0).all() if s > 0 else (out[i, :, 121 + s:] == 0).all() if s < 0 else True


def test_modality_dropout_blanks_exactly_one_modality():
    torch.manual_seed(2)
    out = modality_dropout(_batch(64), 1.0)
    audio_gone = (out["audio"] == 0).flatten(1).all(1)
    visual_gone = (out["visual"] == 0).flatten(1).all(1)
    assert (audio_gone ^ visual_gone).all()  # every sample lost one, never both
    assert 10 < audio_gone.sum() < 54
    none = modality_dropout(_batch(64), 0.0)
    assert torch.equal(none["audio"], _batch(64)["audio"])


def test_mixup_mixes_inputs_and_targets_alike():
    torch.manual_seed(3)
    b = _batch(8)  # labels 0..7: a sample's class names the sample
    out = mixup(dict(b), 0.4, 8)
    assert out["label"].shape == (8, 8) and torch.allclose(out["label"].sum(1), torch.ones(8))
    for i in range(8):
        weights = out["label"][i]
        lam = float(weights[i])
        j = int(torch.where(torch.arange(8) == i, torch.zeros(8), weights).argmax()) if lam < 1 else i
        assert torch.allclose(out["audio"][i], lam * b["audio"][i] + (1 - lam) * b["audio"][j], atol=1e-5)


def test_augment_batch_leaves_unimodal_and_clean_batches_alone():
    b = _batch()
    assert torch.equal(augment_batch(b, AugmentConfig(), 8, fused=True)["audio"], b["audio"])
    out = augment_batch(b, AugmentConfig(modality_dropout=1.0), 8, fused=False)
    assert torch.equal(out["audio"], b["audio"]) and torch.equal(out["visual"], b["visual"])


def test_feature_noise_reaches_only_the_modalities_in_noise_on():
    b = _batch()
    torch.manual_seed(4)
    only_v = augment_batch(b, AugmentConfig(feature_noise=0.8, noise_on="v"), 8, fused=True)
    assert torch.equal(only_v["audio"], b["audio"])
    assert (only_v["visual"] - b["visual"]).std() > 0.5
    both = augment_batch(b, AugmentConfig(feature_noise=0.8), 8, fused=True)
    assert not torch.equal(both["audio"], b["audio"]) and not torch.equal(both["visual"], b["visual"])


def test_paper_learning_rate_schedule():
    t = TrainConfig()  # x0.9 at epoch 30 and every 20 epochs after it (paper §IV-B)
    assert [lr_factor(e, t) for e in (0, 29, 30, 49, 50, 70)] == pytest.approx([1, 1, 0.9, 0.9, 0.81, 0.729])


def test_warmup_and_cosine_schedule():
    t = TrainConfig(schedule="cosine", warmup_epochs=3, max_epochs=23)
    f = [lr_factor(e, t) for e in range(23)]
    assert f[:3] == pytest.approx([0.25, 0.5, 0.75]) and f[3] == pytest.approx(1.0)
    assert f[13] == pytest.approx(0.5) and f[22] < 0.01
    assert all(a >= b for a, b in zip(f[3:], f[4:]))


def test_label_smoothing_is_applied_to_every_cross_entropy_term():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 1])
    out = {"logits": logits, "logits_a_avam": logits, "logits_v_avam": logits}
    terms = total_loss(out, y, LossConfig(label_smoothing=0.1, lambda_sim=0))
    expect = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert terms["loss_av"] == pytest.approx(expect.item()) and terms["loss"] == pytest.approx(2 * expect.item())
    assert terms["loss_av"] > total_loss(out, y, LossConfig(lambda_sim=0))["loss_av"]

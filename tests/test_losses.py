import torch
from torch.distributions import Normal, kl_divergence

from attsf.losses import LossConfig, batch_gaussian_sym_kl, similarity_loss, total_loss


def _reference(p, q, eps=1e-5):
    dp = Normal(p.mean(0), (p.var(0, unbiased=False) + eps).sqrt())
    dq = Normal(q.mean(0), (q.var(0, unbiased=False) + eps).sqrt())
    return (kl_divergence(dp, dq) + kl_divergence(dq, dp)).sum()


def test_sym_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(8, 128, generator=g), 2 + 0.5 * torch.randn(8, 128, generator=g)
    assert torch.allclose(batch_gaussian_sym_kl(p, q), _reference(p, q), rtol=1e-5)
    assert batch_gaussian_sym_kl(p, p).abs() < 1e-5


def test_similarity_loss_is_half_sum():
    g = torch.Generator().manual_seed(1)
    t, a, v = (torch.randn(6, 16, generator=g) for _ in range(3))
    assert torch.allclose(similarity_loss(t, a, v), 0.5 * (_reference(t, a) + _reference(t, v)), rtol=1e-5)


def test_total_loss_weights():
    g = torch.Generator().manual_seed(2)
    out = {k: torch.randn(4, 3, generator=g) for k in ("logits", "logits_a_avam", "logits_v_avam")}
    out |= {k: torch.randn(4, 8, generator=g) for k in ("h_a2v", "h_v2a", "h_learn")}
    y = torch.tensor([0, 1, 2, 1])
    terms = total_loss(out, y, LossConfig())
    expected = terms["loss_av"] + 0.5 * terms["loss_a"] + 0.5 * terms["loss_v"] + 0.3 * terms["loss_sim"]
    assert torch.allclose(terms["loss"], expected)
    no_sim = total_loss(out, y, LossConfig(lambda_sim=0))
    assert "loss_sim" not in no_sim and torch.allclose(no_sim["loss"], expected - 0.3 * terms["loss_sim"])
    reg = total_loss({"logits": torch.zeros(4, 1)}, torch.tensor([1.0, -1.0, 2.0, 0.0]), LossConfig(), regression=True)
    assert torch.isclose(reg["loss"], torch.tensor(1.0))


def test_sim_mean_reduction_divides_by_dimensions():
    g = torch.Generator().manual_seed(3)
    p, q = torch.randn(8, 32, generator=g), torch.randn(8, 32, generator=g) + 1
    assert torch.allclose(batch_gaussian_sym_kl(p, q, reduction="mean"), _reference(p, q) / 32, rtol=1e-5)
    try:
        LossConfig(sim_reduction="max")
    except ValueError as exc:
        assert "sim_reduction" in str(exc)
    else:
        raise AssertionError("an unknown reduction was accepted")


def test_sim_loss_is_skipped_for_batches_too_small_to_fit_a_gaussian():
    """The paper-size network's outputs: B = 1 (a last validation batch) gave L_sim ~1e7 before."""
    from attsf.model import attsf_net

    net = attsf_net(visual_mode="features", visual_dim=35).eval()
    g = torch.Generator().manual_seed(3)
    for b in (1, 2, 3, 4, 8):
        with torch.no_grad():
            out = net(audio=torch.randn(b, 12, 121, generator=g), visual=torch.randn(b, 1, 35, generator=g))
        terms = total_loss(out, torch.arange(b) % 8, LossConfig(sim_reduction="mean"))
        assert torch.isfinite(terms["loss"]) and ("loss_sim" in terms) == (b >= 4)
        if b < 4:  # the cross-entropy terms alone
            assert terms["loss"] < 3 * 10, terms

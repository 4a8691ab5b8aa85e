from dataclasses import replace

import pytest
import torch

from attsf.model import ATTSFConfig, attsf_gat, attsf_l2, attsf_net, build_model

SMALL = ATTSFConfig(n_classes=8, d_model=16, n_heads=2, audio_channels=(8, 16, 16, 16), visual_mode="features",
                    visual_dim=35, visual_channels=(16,), n_cmb=2, n_sab=2, n_avam=1, ffn_cmb=32, ffn_sab=32,
                    ffn_avam=32)
VARIANTS = {
    "sum": {}, "l2": {"fusion": "l2"}, "gate": {"fusion": "gate"}, "linear": {"temporal": "linear"},
    "pool": {"auxiliary": "pool"}, "no_sab": {"use_sab": False}, "no_audio_aux": {"use_audio_aux": False},
    "no_visual_aux": {"use_visual_aux": False}, "text": {"text_dim": 24},
    "regression": {"task": "regression", "n_classes": 1}, "audio_only": {"modalities": "a"},
    "visual_only": {"modalities": "v"}, "visual_len_7": {}, "seb": {"cross_block": "seb"},
    "visual_no_norm": {"visual_norm": "none"},
}


def _batch(cfg: ATTSFConfig, b: int = 4, t_v: int = 1) -> dict:
    batch = {"audio": torch.randn(b, 12, 121), "visual": torch.randn(b, t_v, cfg.visual_dim)}
    if cfg.text_dim:
        batch["text"] = torch.randn(b, cfg.text_dim)
    return batch


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_forward_backward_shapes(name):
    cfg = replace(SMALL, **VARIANTS[name])
    model = build_model(cfg)
    out = model(**_batch(cfg, t_v=7 if name == "visual_len_7" else 1))
    assert out["logits"].shape == (4, cfg.n_classes)
    n_parts = {"no_sab": 2, "text": 4, "audio_only": 1, "visual_only": 1}.get(name, 3)
    assert out["features"].shape == (4, n_parts * cfg.d_model)
    if cfg.modalities == "av":
        assert ("logits_a_avam" in out) == cfg.use_audio_aux and ("logits_v_avam" in out) == cfg.use_visual_aux
        assert ("h_learn" in out) == cfg.use_sab
    out["logits"].sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:3])


def test_factories_pick_fusion():
    assert attsf_net().cfg.fusion == "sum"
    assert attsf_l2().cfg.fusion == "l2"
    assert attsf_gat().cfg.fusion == "gate"
    assert attsf_gat().fuse_a2v.gate.in_features == 256


def test_paper_size_model():
    model = attsf_net(visual_mode="features", visual_dim=35)
    n = sum(p.numel() for p in model.parameters())
    assert 4_000_000 < n < 7_000_000
    assert len(model.cmb.a2v) == 6 and len(model.sab.layers) == 6
    assert len(model.aux_a.encoder.layers) == 2
    x_a = model.audio(torch.randn(2, 12, 121))
    assert x_a.shape == (2, 109, 128)  # 121 - 4 x (2 conv + 1 pool)


def test_seb_shares_one_cross_block_between_directions():
    model = build_model(replace(SMALL, cross_block="seb", dropout=0.0)).eval()
    assert {n.split(".")[1] for n, _ in model.cmb.named_parameters(prefix="cmb")} == {"self_audio", "cross"}
    x_a, x_v = torch.randn(2, 9, 16), torch.randn(2, 3, 16)
    (a2v,), (v2a,) = model.cmb(x_a, x_v)
    assert a2v.shape == x_a.shape and v2a.shape == x_v.shape
    refined = model.cmb.self_audio(x_a, x_a)
    torch.testing.assert_close(v2a, x_v + model.cmb.cross(x_v, refined))  # the same weights map v onto a
    torch.testing.assert_close(a2v, refined + model.cmb.cross(refined, x_v))  # ... and a onto v


def _names(model):
    return {n: p.shape for n, p in model.named_parameters()}


@pytest.mark.parametrize("flag,prefix", [("use_sab", "sab."), ("use_audio_aux", "aux_a."), ("use_visual_aux", "aux_v.")])
def test_ablation_removes_exactly_its_parameters(flag, prefix):
    full = _names(build_model(replace(SMALL, fusion="gate")))
    ablated = _names(build_model(replace(SMALL, fusion="gate", **{flag: False})))
    fusion = {"aux_a.": "fuse_a2v.", "aux_v.": "fuse_v2a."}.get(prefix, "\0")
    removed = set(full) - set(ablated)
    assert removed == {n for n in full if n.startswith(prefix) or n.startswith(fusion)}
    assert not set(ablated) - set(full)
    changed = {n for n in ablated if ablated[n] != full[n]}
    assert changed == ({"head.1.weight"} if flag == "use_sab" else set())


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_visual_norm_none_makes_the_visual_stream_per_sample(norm):
    """Without its BatchNorms the AU front-end maps each clip on its own in training mode too."""
    stream = build_model(replace(SMALL, modalities="v", visual_norm=norm, dropout=0.0)).stream.train()
    x = torch.randn(6, 1, 35)
    alone, together = stream(x[:2]), stream(x)[:2]
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in stream.modules())
    assert (n_bn, torch.allclose(alone, together, atol=1e-6)) == ((0, True) if norm == "none" else (2, False))


def test_efficientface_mode_on_frames():
    cfg = replace(SMALL, visual_mode="efficientface", visual_channels=(16,))
    model = build_model(cfg)
    frames = torch.randint(0, 255, (2, 3, 3, 64, 64), dtype=torch.uint8)
    out = model(audio=torch.randn(2, 12, 121), visual=frames)
    assert out["logits"].shape == (2, 8)
    assert model.visual.front.encoder.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1024)


def test_efficientface_parameter_names_match_authors_checkpoint():
    from attsf.efficientface import EfficientFace

    names = set(EfficientFace().state_dict())
    for key in ["conv1.0.weight", "conv1.1.running_mean", "stage2.0.branch1.0.weight", "stage2.0.branch2.6.bias",
                "stage3.7.branch2.3.weight", "stage4.3.branch2.5.weight",
                "local.conv1_1.weight", "local.bn4_2.running_var", "modulator.channel_att.gate_c.gate_c_fc_0.weight",
                "modulator.channel_att.gate_c.gate_c_bn_1.weight", "modulator.channel_att.gate_c.gate_c_fc_final.bias",
                "modulator.spatial_att.gate_s.gate_s_conv_reduce0.weight",
                "modulator.spatial_att.gate_s.gate_s_conv_di_1.weight",
                "modulator.spatial_att.gate_s.gate_s_conv_final.bias", "conv5.1.num_batches_tracked"]:
        assert key in names, key


def test_config_rejects_inconsistent_widths():
    with pytest.raises(ValueError):
        ATTSFConfig(d_model=64)

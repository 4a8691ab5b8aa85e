"""The paper's structural invariants, each checked so that a wrong wiring would fail."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import torch
from conftest import run_cli

from attsf.model import ATTSFConfig, Fusion, build_model

CFG = ATTSFConfig(n_classes=8, d_model=16, n_heads=2, audio_channels=(8, 16, 16, 16), visual_mode="features",
                  visual_dim=35, visual_channels=(16,), n_cmb=3, n_sab=3, n_avam=1, ffn_cmb=32, ffn_sab=32,
                  ffn_avam=32)


def _inputs(b: int = 3, t_v: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 12, 121, generator=g), torch.randn(b, t_v, 35, generator=g)


def _capture(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_hook(lambda m, args, out: store.append((args, out)))


def test_cmb_queries_come_from_the_dominant_stream_and_keys_from_the_other():
    net = build_model(CFG).eval()
    streams, a2v, v2a = [], [], []
    hooks = [_capture(net.audio, streams), _capture(net.visual, streams),
             *(_capture(layer.cross_attn, a2v) for layer in net.cmb.a2v),
             *(_capture(layer.cross_attn, v2a) for layer in net.cmb.v2a)]
    audio, visual = _inputs()
    with torch.no_grad():
        net(audio=audio, visual=visual)
    for h in hooks:
        h.remove()
    x_a, x_v = streams[0][1], streams[1][1]
    assert x_a.shape[1] == 109 and x_v.shape[1] == 5
    q, k, v = a2v[0][0]  # A->V branch, first layer: Q = audio stream, K = V = visual front-end stream
    assert torch.equal(q, x_a) and torch.equal(k, x_v) and torch.equal(v, x_v)
    q, k, v = v2a[0][0]
    assert torch.equal(q, x_v) and torch.equal(k, x_a) and torch.equal(v, x_a)
    for (_, k, v), _ in a2v[1:]:  # every layer reads the other modality's front-end stream (as in MulT)
        assert torch.equal(k, x_v) and torch.equal(v, x_v)


def test_sab_layer_i_reads_cmb_layer_i():
    net = build_model(CFG).eval()
    cmb_a2v, cmb_v2a, sab = [], [], []
    hooks = [*(_capture(layer, cmb_a2v) for layer in net.cmb.a2v), *(_capture(layer, cmb_v2a) for layer in net.cmb.v2a),
             *(_capture(layer, sab) for layer in net.sab.layers)]
    audio, visual = _inputs()
    with torch.no_grad():
        net(audio=audio, visual=visual)
    for h in hooks:
        h.remove()
    assert len(sab) == 3
    for i, ((_, video, aud), _) in enumerate(sab):
        assert torch.equal(video, cmb_v2a[i][1]) and torch.equal(aud, cmb_a2v[i][1])


def test_l2_and_gate_fusion_equal_hand_computed_values():
    h_av, h_m = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 1.0]])  # norms 5 and 1
    l2 = Fusion(2, "l2")(h_av, h_m)
    torch.testing.assert_close(l2, torch.tensor([[5 / 6 * 3, 5 / 6 * 4 + 1 / 6 * 1]]))
    gate = Fusion(2, "gate")
    with torch.no_grad():
        gate.gate.weight.zero_()
        gate.gate.bias.copy_(torch.tensor([0.0, torch.log(torch.tensor(3.0))]))  # softmax -> 1/4, 3/4
    torch.testing.assert_close(gate(h_av, h_m), torch.tensor([[0.75, 1.0 + 0.75]]))
    torch.testing.assert_close(Fusion(2, "sum")(h_av, h_m), torch.tensor([[3.0, 5.0]]))


def test_unimodal_and_fused_parts_are_the_papers():
    net = build_model(replace(CFG, n_cmb=6, n_sab=6, n_avam=2))
    assert len(net.cmb.a2v) == len(net.cmb.v2a) == 6 and len(net.sab.layers) == 6
    assert len(net.aux_a.encoder.layers) == 2 and net.head[1].in_features == 3 * 16


def test_evaluated_weights_are_the_best_validation_epochs(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "configs/ravdess_au.yaml", *tiny_overrides, "train.max_epochs=6", "train.patience=100",
            "--out", str(run))
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val_acc")]
    accs = [float(r["val_acc"]) for r in rows]
    best = json.loads((run / "checkpoints/model.json").read_text())["epoch"]
    assert best == accs.index(max(accs))  # the first epoch with the highest validation accuracy
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_epoch"] == best and abs(metrics["val"]["accuracy"] - max(accs)) < 1e-6

import torch

from attsf.engine import SafetensorsCheckpointIO
from attsf.evaluate import load_weights
from attsf.io import load_state, save_state
from attsf.model import ATTSFConfig, build_model

CFG = ATTSFConfig(n_classes=4, d_model=16, n_heads=2, audio_channels=(8, 16, 16, 16), visual_mode="features",
                  visual_dim=6, visual_channels=(16,), n_cmb=1, n_sab=1, n_avam=1, ffn_cmb=32, ffn_sab=32, ffn_avam=32)


def test_state_codec_roundtrip(tmp_path):
    opt_state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}},
                 "param_groups": [{"params": [0], "betas": (0.9, 0.999), "lr": 1e-3, "foreach": None}]}
    state = {"epoch": 2, "optimizer_states": [opt_state], "loss": float("inf"), "name": "x"}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert back["epoch"] == 2 and back["loss"] == float("inf")
    group = back["optimizer_states"][0]["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["foreach"] is None
    assert torch.equal(back["optimizer_states"][0]["state"][0]["exp_avg"], opt_state["state"][0]["exp_avg"])
    assert list(tmp_path.iterdir()) == [tmp_path / "s.safetensors"]  # no temporary file left


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    batch = {"audio": torch.randn(3, 12, 121), "visual": torch.randn(3, 1, 6)}
    io = SafetensorsCheckpointIO()
    io.save_checkpoint({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                        "attsf": {"labels": list("abcd")}}, tmp_path / "model.safetensors")
    assert (tmp_path / "model.json").is_file()
    torch.manual_seed(1)
    other = build_model(CFG).eval()
    load_weights(other, tmp_path / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(model(**batch)["logits"], other(**batch)["logits"])


def test_non_safetensors_file_is_refused(tmp_path):
    import pytest

    from attsf.errors import AttsfError

    bad = tmp_path / "evil.safetensors"
    torch.save({"x": 1}, bad)  # a pickle
    with pytest.raises(AttsfError, match="not a safetensors file"):
        load_state(bad)

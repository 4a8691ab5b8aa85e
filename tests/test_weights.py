"""`attsf convert-weights` on a checkpoint in the EfficientFace authors' format, and
preprocessing into per-frame EfficientFace features with the converted weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from attsf.data.cache import ClipCache
from attsf.efficientface import EfficientFace, FaceEncoder, load_encoder_weights
from attsf.model import ATTSFConfig, ATTSFNet
from tests import layouts
from tests.conftest import cli, run_cli

KEYS = json.loads((Path(__file__).parent / "fixtures" / "efficientface_affectnet7_keys.json").read_text())["keys"]


def authors_checkpoint(path, seed: int = 0, drop: str | None = None) -> dict:
    """A checkpoint in the authors' format, built from the key names and shapes of their
    public model definition (tests/fixtures), not from our EfficientFace: DataParallel
    names, a 7-way classifier, epoch, best accuracy and optimiser state. Returns the
    encoder's tensors (no ``module.`` prefix, no ``fc``)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in KEYS:
        if name == drop:
            continue
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(100, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        else:
            state[name] = torch.randn(shape, generator=g) * 0.05
    torch.save({"epoch": 12, "arch": "EfficientFace", "state_dict": state, "best_acc1": torch.tensor(59.3),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}, path)
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("module.fc.")}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    src, dst = root / "EfficientFace_Trained_on_AffectNet7.pth.tar", root / "efficientface.safetensors"
    reference = authors_checkpoint(src)
    out = run_cli("convert-weights", str(src), str(dst)).stdout
    assert "left out: fc.bias, fc.weight" in out and "loads strictly" in out
    return dst, reference


def test_converted_weights_load_strictly(converted):
    dst, reference = converted
    model = EfficientFace()
    load_encoder_weights(model, dst)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    # the same weights drive the model's efficientface front-end
    net = ATTSFNet(ATTSFConfig(n_classes=4, visual_mode="efficientface"))
    load_encoder_weights(net.visual.front.encoder, dst)
    assert torch.equal(net.visual.front.encoder.conv1[0].weight, reference["conv1.0.weight"])


def test_authors_key_set_is_exactly_ours():
    theirs = {k.removeprefix("module."): tuple(s) for k, s in KEYS if not k.startswith("module.fc.")}
    ours = {k: tuple(v.shape) for k, v in EfficientFace().state_dict().items()}
    assert ours == theirs and len(ours) == 416


def test_convert_refuses_bad_checkpoints(tmp_path):
    wrong = tmp_path / "wrong.pth.tar"
    authors_checkpoint(wrong, drop="module.modulator.spatial_att.gate_s.gate_s_conv_di_1.weight")
    proc = cli("convert-weights", str(wrong), str(tmp_path / "o.safetensors"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "1 missing (e.g. modulator.spatial_att.gate_s.gate_s_conv_di_1.weight)" in proc.stderr

    code = tmp_path / "code.pth.tar"
    torch.save({"state_dict": {}, "hook": print}, code)  # a global that weights_only refuses
    proc = cli("convert-weights", str(code), str(tmp_path / "o.safetensors"), check=False)
    assert proc.returncode == 2 and "weights_only=True" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()

    class Payload:  # what a malicious checkpoint carries: a call run on unpickling
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "x": Payload()}, evil)
    proc = run_cli("convert-weights", str(evil), str(tmp_path / "o.safetensors"), check=False)
    line = proc.stderr.strip()
    assert proc.returncode == 2 and "pwned" not in proc.stdout and len(line.splitlines()) == 1
    assert "loading it would call posix.system (forbidden global)" in line and line.endswith("weights_only=True)")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all\n")
    proc = cli("convert-weights", str(tmp_path / "junk.pth"), str(tmp_path / "o.safetensors"), check=False)
    assert proc.returncode == 2 and "junk.pth: not a PyTorch checkpoint (" in proc.stderr


def test_preprocess_efficientface_features(converted, tmp_path):
    dst, _ = converted
    root = tmp_path / "ravdess"
    layouts.small_clip(root / "Actor_03" / "01-01-02-01-01-01-03.mp4", "neutral", seed=3)
    cache = tmp_path / "cache"
    run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(cache), "--visual-features", "efficientface",
            "--weights", str(dst), "--quiet")
    c = ClipCache(cache)
    feats = c.load(c.records[0])["visual"]
    assert tuple(feats.shape) == (15, 1024) and feats.dtype == torch.float32 and feats.std() > 0
    assert c.settings["visual"]["kind"] == "features" and c.settings["visual"]["dim"] == 1024
    # they are the frozen encoder's output on the face crops of the same clip
    frames_cache = tmp_path / "frames"
    run_cli("preprocess", "ravdess", "--root", str(root), "--out", str(frames_cache), "--quiet")
    crops = ClipCache(frames_cache).load(c.records[0])["visual"].numpy()
    assert torch.allclose(torch.from_numpy(FaceEncoder(dst)(crops)), feats, atol=1e-4)


def test_frames_path_end_to_end_with_the_pretrained_encoder(converted, demo_dir, tmp_path, caplog):
    """Generated clips -> cache (the demo's) -> authors-format checkpoint converted -> 1 epoch
    with model.visual_weights -> the front-end starts from the file -> evaluate -> predict."""
    from attsf.config import load_config
    from attsf.data.synthetic import talking_clip
    from attsf.engine import ATTSFModule
    from attsf.model import visual_encoder

    dst, reference = converted
    run = tmp_path / "run"
    data = [f"data.cache={demo_dir / 'cache'}", f"data.folds={demo_dir / 'folds.json'}", "train.progress=false"]
    proc = run_cli("train", "demo", *data, f"model.visual_weights={dst}", "train.max_epochs=1", "--out", str(run))
    assert f"pretrained weights from {dst}" in proc.stderr and "random weights" not in proc.stderr
    cfg = load_config(run / "config.yaml")
    encoder = visual_encoder(ATTSFModule(cfg, ["a", "b", "c", "d"]).model)  # what training starts from
    assert all(torch.equal(v, reference[k]) for k, v in encoder.state_dict().items())
    assert "test: accuracy" in cli("evaluate", str(run)).stdout
    clip = tmp_path / "clip.mp4"
    talking_clip(clip, label="happy", seconds=3.0)
    answer = json.loads(cli("predict", str(clip), "--run", str(run), "--json").stdout)["clips"][0]
    assert answer["label"] in ("neutral", "happy", "sad", "angry") and answer["modalities"] == ["audio", "video"]

    caplog.set_level("WARNING", logger="attsf")
    ATTSFModule(load_config(run / "config.yaml", ["model.visual_weights="]), ["a", "b", "c", "d"])
    warnings = [r.message for r in caplog.records if "EfficientFace starts from random weights" in r.message]
    assert len(warnings) == 1
    missing = cli("train", "demo", *data, "model.visual_weights=nowhere.safetensors", "--out", str(tmp_path / "r2"),
                  check=False)
    assert missing.returncode == 2 and "nowhere.safetensors: EfficientFace weights not found" in missing.stderr
    assert not (tmp_path / "r2").exists()

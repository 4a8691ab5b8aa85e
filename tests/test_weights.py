"""`attsf convert-weights` on a checkpoint in the EfficientFace authors' format, and
preprocessing into per-frame EfficientFace features with the converted weights."""

from __future__ import annotations

import os

import pytest
import torch

from attsf.data.cache import ClipCache
from attsf.efficientface import EfficientFace, FaceEncoder, load_encoder_weights
from attsf.model import ATTSFConfig, ATTSFNet
from tests import layouts
from tests.conftest import run_cli


def authors_checkpoint(path, seed: int = 0) -> dict:
    """What the authors' training script saves: DataParallel names, a 7-way classifier,
    epoch, best accuracy and optimiser state."""
    torch.manual_seed(seed)
    net = EfficientFace()
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.fc.weight"], state["module.fc.bias"] = torch.randn(7, 1024), torch.randn(7)
    torch.save({"epoch": 12, "arch": "EfficientFace", "state_dict": state, "best_acc1": torch.tensor(59.3),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}, path)
    return net.state_dict()


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


def test_convert_refuses_bad_checkpoints(tmp_path):
    wrong = tmp_path / "wrong.pth.tar"
    state = {f"module.{k}": v for k, v in EfficientFace().state_dict().items() if not k.startswith("conv5")}
    torch.save({"state_dict": state}, wrong)
    proc = run_cli("convert-weights", str(wrong), str(tmp_path / "o.safetensors"), check=False)
    assert proc.returncode == 2 and "missing (e.g. conv5" in proc.stderr and "Traceback" not in proc.stderr

    code = tmp_path / "code.pth.tar"
    torch.save({"state_dict": {}, "hook": print}, code)  # a global that weights_only refuses
    proc = run_cli("convert-weights", str(code), str(tmp_path / "o.safetensors"), check=False)
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
    proc = run_cli("convert-weights", str(tmp_path / "junk.pth"), str(tmp_path / "o.safetensors"), check=False)
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

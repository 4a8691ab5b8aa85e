"""Prediction latency: ms per 4 s 1280x720 30 fps H.264 + AAC clip, end to end, split into
decoding, face detection, MFCC and the forward pass; cold (first clip, fresh process
state) and warm (mean of the next clips).

The model is the paper's RAVDESS ATTSF-Net (configs/ravdess.yaml: EfficientFace on
15 face crops of 224x224, 6 CMB / 6 SAB layers) with untrained weights: the cost is the
same as for trained ones.

    python bench/predict.py [--clips 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attsf.config import load_config, resolve_config_path
from attsf.data.ravdess import LABELS
from attsf.data.synthetic import talking_clip
from attsf.io import save_state
from attsf.model import build_model


def make_weights(root: Path) -> Path:
    cfg = load_config(resolve_config_path("ravdess"))
    model = build_model(cfg.model)
    path = root / "attsf_ravdess.safetensors"
    save_state(path, {"state_dict": model.state_dict()})
    prep = {"audio": {"kind": "mfcc", "sample_rate": 16000, "duration": 3.6, "n_mfcc": 12},
            "visual": {"kind": "frames", "size": 224, "n_frames": 15}}
    path.with_suffix(".json").write_text(json.dumps({"config": cfg.to_dict(), "labels": LABELS, "preprocessing": prep}))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = [root / f"clip{i}.mp4" for i in range(args.clips + 1)]
        for i, clip in enumerate(clips):
            talking_clip(clip, seed=i)
        weights = make_weights(root)

        from attsf.predict import EmotionRecognizer

        t0 = time.perf_counter()
        rec = EmotionRecognizer.from_pretrained(weights, device="cpu")
        load = time.perf_counter() - t0
        cold = rec.predict(clips[0])
        warm = [rec.predict(c) for c in clips[1:]]
        fresh = EmotionRecognizer.from_pretrained(weights, device="cpu")
        t0 = time.perf_counter()
        fresh.warmup()
        warmup = time.perf_counter() - t0
        after_warmup = fresh.predict(clips[0])

    stages = ["decode_audio", "decode_video", "faces", "mfcc", "forward", "total"]
    print(f"{args.clips} warm clips + 1 cold, 1280x720 30 fps 4 s H.264 + AAC, torch threads {args.threads}, "
          f"paper RAVDESS ATTSF-Net ({sum(x.numel() for x in rec.model.parameters()) / 1e6:.2f} M parameters)")
    print(f"model load {load * 1000:.0f} ms; warmup() {warmup * 1000:.0f} ms "
          f"(attsf serve runs it at start); first clip after warmup() {after_warmup.timings['total'] * 1000:.0f} ms")
    print("stage          cold ms   warm ms (mean ± std)")
    for s in stages:
        w = np.array([r.timings.get(s, 0.0) for r in warm]) * 1000
        print(f"{s:13s} {cold.timings.get(s, 0.0) * 1000:8.0f}   {w.mean():7.0f} ± {w.std():.0f}")


if __name__ == "__main__":
    main()

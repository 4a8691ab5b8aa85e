"""Is this machine ready to train the paper's RAVDESS video model? 50 training steps of the
paper-size ATTSF-Net on face frames (15 crops of 224x224 per clip, audio MFCC), with
EfficientFace loaded through `model.visual_weights` from a checkpoint in the authors'
format (random values, converted by `attsf convert-weights`), mixed precision on CUDA.

    python bench/gpu_check.py [--steps 50] [--batch 8] [--device cuda]

Prints ms/step, samples/s, peak GPU memory and the loss at the start and the end. Fails
(exit 1) if CUDA was not used or the loss did not fall on the fixed batches it repeats.
Without a GPU it says so and exits 0 (`--device cpu --steps 4 --batch 2` runs the same
code on the CPU, for checking the script itself).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from attsf.config import load_config, resolve_config_path
from attsf.efficientface import EfficientFace, convert_checkpoint
from attsf.engine import ATTSFModule
from attsf.losses import total_loss
from attsf.model import visual_encoder


def authors_format_checkpoint(path: Path) -> None:
    """Random EfficientFace weights saved as the authors' training script saves them."""
    state = {f"module.{k}": v.clone().normal_(0, 0.05) if v.is_floating_point() else v
             for k, v in EfficientFace().state_dict().items()}
    state |= {"module.fc.weight": torch.randn(7, 1024), "module.fc.bias": torch.zeros(7)}
    torch.save({"epoch": 1, "arch": "EfficientFace", "state_dict": state}, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=8, help="clips per step (the paper: 8)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to check (run it where there is a GPU)")
        return 0
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "EfficientFace_Trained_on_AffectNet7.pth.tar", Path(tmp) / "efficientface.safetensors"
        authors_format_checkpoint(src)
        convert_checkpoint(src, dst)
        cfg = load_config(resolve_config_path("ravdess"), [f"model.visual_weights={dst}"])
        module = ATTSFModule(cfg, [str(i) for i in range(8)])
    model = module.model.to(device).train()
    encoder_ok = visual_encoder(model) is not None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    g = torch.Generator().manual_seed(0)
    batches = [{"audio": torch.randn(args.batch, 12, 121, generator=g),
                "visual": torch.randint(0, 256, (args.batch, 15, 3, 224, 224), dtype=torch.uint8, generator=g),
                "label": torch.randint(0, 8, (args.batch,), generator=g)} for _ in range(2)]
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(enabled=cuda and dtype == torch.float16)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses, times = [], []
    for step in range(args.steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[step % len(batches)].items()}
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            out = model(audio=batch["audio"], visual=batch["visual"])
        loss = total_loss({k: v.float() for k, v in out.items()}, batch["label"], cfg.loss)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
        losses.append(loss.item())
    timed = times[min(5, len(times) - 1):]  # after warm-up
    ms = 1000 * sum(timed) / len(timed)
    start, end = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    print(f"device {name}, precision {dtype if cuda else torch.float32}, batch {args.batch} clips x 15 frames 224x224")
    print(f"{args.steps} steps: {ms:.1f} ms/step, {1000 * args.batch / ms:.1f} clips/s, peak memory {peak:.2f} GiB")
    print(f"loss {start:.3f} at the start, {end:.3f} at the end; EfficientFace from the converted checkpoint: "
          f"{encoder_ok}")
    failed = []
    if args.device.startswith("cuda") and not cuda:
        failed.append("CUDA was not used")
    if not end < start:
        failed.append("the loss did not fall")
    for reason in failed:
        print(f"gpu_check: FAILED: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

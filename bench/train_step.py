"""Training speed on CPU, side by side in one run: fp32, bf16 autocast, torch.compile and
larger batches, as ms per step, samples/s and seconds per RAVDESS fold epoch; and the
attsf engine (Lightning) against a bare PyTorch loop over the same model and batches.

    python bench/train_step.py [--steps 30] [--threads 2] [--config ravdess_au] [--only fp32,bf16]

The paper's RAVDESS config, audio (12x121 MFCC) + 35-d AU input, random tensors of the
real shapes (no data needed). Each condition builds the model afresh from one seed.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from attsf.config import load_config, resolve_config_path
from attsf.engine import ATTSFModule
from attsf.losses import total_loss

# name -> (batch size, bf16 autocast, torch.compile)
CONDITIONS = {
    "fp32": (8, False, False),
    "bf16": (8, True, False),
    "compile": (8, False, True),
    "fp32-b16": (16, False, False),
    "fp32-b32": (32, False, False),
    "compile-b32": (32, False, True),
    "bf16-b32": (32, True, False),
}


class Batches(Dataset):
    def __init__(self, n: int, visual_dim: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.audio = torch.randn(n, 12, 121, generator=g)
        self.visual = torch.randn(n, 1, visual_dim, generator=g)
        self.label = torch.randint(0, 8, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict:
        return {"audio": self.audio[i], "visual": self.visual[i], "label": self.label[i]}


def bare_loop(module: ATTSFModule, loader: DataLoader, warmup: int, bf16: bool = False, compile_: bool = False) -> float:
    """Mean seconds per step after ``warmup`` steps (compilation happens in the warm-up)."""
    model = module.model.train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=4e-4, weight_decay=1e-5)
    times = []
    for i, batch in enumerate(loader):
        t = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            out = step_model(audio=batch["audio"], visual=batch["visual"])
            loss = total_loss({k: v.float() for k, v in out.items()}, batch["label"], module.cfg.loss)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t = warmup, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ravdess_au")
    p.add_argument("--steps", type=int, default=30, help="timed steps per condition (after the warm-up)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-clips", type=int, default=776, help="clips in a fold's train split (RAVDESS 22 actors)")
    p.add_argument("--only", help="comma-separated conditions (default: all, then the engine overhead)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_config_path(args.config), ["model.visual_dim=35"])
    labels = [str(i) for i in range(8)]
    names = args.only.split(",") if args.only else list(CONDITIONS)
    print(f"config {args.config}, {args.threads} threads, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'condition':12} {'batch':>5} {'ms/step':>8} {'samples/s':>9} {'s/epoch':>8} {'speed-up':>8}")
    base = None
    for name in names:
        batch, bf16, compile_ = CONDITIONS[name]
        data = Batches((args.steps + args.warmup) * batch, 35)
        torch.manual_seed(0)
        sec = bare_loop(ATTSFModule(cfg, labels), DataLoader(data, batch_size=batch), args.warmup, bf16, compile_)
        rate = batch / sec
        base = base or rate
        epoch = (args.train_clips // batch) * sec
        print(f"{name:12} {batch:5d} {sec * 1000:8.1f} {rate:9.1f} {epoch:8.1f} {rate / base:7.2f}x", flush=True)
    if args.only:
        return
    data = Batches((args.steps + args.warmup) * 8, 35)
    torch.manual_seed(0)
    bare = bare_loop(ATTSFModule(cfg, labels), DataLoader(data, batch_size=8), args.warmup)
    torch.manual_seed(0)
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(ATTSFModule(cfg, labels), DataLoader(data, batch_size=8, shuffle=True))
    engine = sum(timer.times) / len(timer.times)
    print(f"engine overhead, batch 8: bare loop {bare * 1000:.1f} ms/step, attsf engine (Lightning) "
          f"{engine * 1000:.1f} ms/step ({(engine / bare - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()

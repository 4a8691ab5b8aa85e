"""ms per training step of the attsf engine (Lightning) against a bare PyTorch loop over
the same model and batches, in one run; and seconds per epoch of a RAVDESS fold.

    python bench/train_step.py [--steps 40] [--threads 2] [--config ravdess_au]

Batch 8, the paper's RAVDESS config, audio (12x121 MFCC) + 35-d AU input. Uses random
tensors of the real shapes, so it needs no data.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from attsf.cli import resolve_config_path
from attsf.config import load_config
from attsf.engine import ATTSFModule
from attsf.losses import total_loss


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


def bare_loop(module: ATTSFModule, loader: DataLoader, warmup: int) -> float:
    model = module.model.train()
    opt = torch.optim.Adam(model.parameters(), lr=4e-4, weight_decay=1e-5)
    times = []
    for i, batch in enumerate(loader):
        t = time.perf_counter()
        out = model(audio=batch["audio"], visual=batch["visual"])
        loss = total_loss(out, batch["label"], module.cfg.loss)["loss"]
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
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-clips", type=int, default=776, help="clips in a fold's train split (RAVDESS 22 actors)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_config_path(args.config), ["model.visual_dim=35"])
    data = Batches(args.steps * 8, 35)
    torch.manual_seed(0)
    module = ATTSFModule(cfg, [str(i) for i in range(8)])
    bare = bare_loop(module, DataLoader(data, batch_size=8), args.warmup)

    torch.manual_seed(0)
    module = ATTSFModule(cfg, [str(i) for i in range(8)])
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    t0 = time.perf_counter()
    trainer.fit(module, DataLoader(data, batch_size=8, shuffle=True))
    wall = time.perf_counter() - t0
    engine = sum(timer.times) / len(timer.times)
    steps = args.train_clips // 8
    print(f"config {args.config}, batch 8, {args.threads} threads, {args.steps} steps ({args.warmup} warm-up)")
    print(f"bare PyTorch loop : {bare * 1000:7.1f} ms/step")
    print(f"attsf engine      : {engine * 1000:7.1f} ms/step  ({(engine / bare - 1) * 100:+.1f} % vs bare; "
          f"whole fit incl. set-up {wall:.1f} s)")
    print(f"one RAVDESS fold epoch ({steps} steps): about {steps * engine:.0f} s of training")


if __name__ == "__main__":
    main()

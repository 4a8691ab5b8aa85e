"""Where the AU network loses to an MLP: the AU-only network and a one-hidden-layer MLP, each
trained with the packaged AU recipe in one bare PyTorch loop over the in-memory AU vectors
(train + val actors, last epoch, 5 folds, one seed); config overrides as ``attsf train``
takes them, for the network's path too (``model.visual_norm=batch``, ``model.auxiliary=pool``,
``train.weight_decay=1e-2``). ``--on val`` trains on the train actors and scores the
validation actors instead, so that settings can be chosen without looking at the test actors.

    python bench/au_path.py [--cache cache/ravdess_au] [--config ravdess_au_only_recipe] [--only net|mlp] [KEY=VALUE ...]

The recipe's batch size, learning rate, weight decay, cosine schedule, warm-up, feature
noise, mixup and label smoothing come from the config; speaker normalisation as
``data.normalize=speaker``. The loop holds no Lightning, no data loader and no evaluation
between epochs, so a variant takes a few minutes of one core; `attsf cv` gives the figures
that count.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from attsf.augment import augment_batch
from attsf.config import load_config, resolve_config_path
from attsf.data import normalize
from attsf.data.cache import ClipCache
from attsf.data.datamodule import load_folds
from attsf.engine import lr_factor
from attsf.losses import total_loss
from attsf.model import build_model


class MLP(nn.Module):
    def __init__(self, d_in: int, n_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, 256), nn.ReLU(), nn.Linear(256, n_classes))

    def forward(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(visual)}


def fit_and_test(model: nn.Module, cfg, x: torch.Tensor, y: torch.Tensor, train: np.ndarray, test: np.ndarray) -> float:
    t = cfg.train
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    for epoch in range(t.max_epochs):
        for group in opt.param_groups:
            group["lr"] = t.lr * lr_factor(epoch, t)
        model.train()
        for idx in torch.from_numpy(train)[torch.randperm(len(train))].split(t.batch_size):
            batch = augment_batch({"visual": x[idx], "label": y[idx]}, cfg.augment, cfg.model.n_classes, fused=False)
            loss = total_loss(model(visual=batch["visual"]), batch["label"], cfg.loss)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return 100 * (model(visual=x[test])["logits"].argmax(-1) == y[test]).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="cache/ravdess_au")
    p.add_argument("--config", default="ravdess_au_only_recipe")
    p.add_argument("--only", choices=("net", "mlp"), help="train only the network or only the MLP (default: both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on", choices=("test", "val"), default="test",
                   help="test: fit train + val actors, score test actors; val: fit train actors, score val actors")
    p.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(resolve_config_path(args.config), args.overrides)
    cache = ClipCache(args.cache)
    stats = normalize.speaker_stats(cache, cache.records)
    x = torch.stack([normalize.apply(cache.load(r), stats[r.speaker])["visual"].float() for r in cache.records])
    y = torch.tensor([cache.label_index(r) for r in cache.records])
    speaker = np.array([r.speaker for r in cache.records])
    names = [args.only] if args.only else ["net", "mlp"]
    fit = ("train", "val") if args.on == "test" else ("train",)
    print(f"{' '.join([args.config, *args.overrides])}, seed {args.seed}: {args.on} accuracy % per fold, "
          f"fitted on the {' + '.join(fit)} actors, last epoch")
    for name in names:
        scores = []
        for fold in load_folds(cfg.data.folds)["folds"]:
            torch.manual_seed(args.seed)
            model = build_model(cfg.model) if name == "net" else MLP(x.shape[-1], cfg.model.n_classes)
            train = np.flatnonzero(np.isin(speaker, [s for part in fit for s in fold[part]]))
            scores.append(fit_and_test(model, cfg, x, y, train, np.flatnonzero(np.isin(speaker, fold[args.on]))))
        print(f"| {name} | " + " | ".join(f"{s:.1f}" for s in scores) + f" | {np.mean(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()

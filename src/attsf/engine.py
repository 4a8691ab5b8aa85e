"""The training engine: ATTSF-Net as a LightningModule, safetensors checkpoints for
Lightning, the callback that makes a resumed run continue the same random stream, and one
line per epoch for logs."""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, TQDMProgressBar
from lightning.pytorch.plugins.io import CheckpointIO
from torch.optim.lr_scheduler import LambdaLR

from attsf.augment import augment_batch
from attsf.branches import frozen_modules, load_branches
from attsf.config import Config, TrainConfig
from attsf.efficientface import load_encoder_weights
from attsf.errors import AttsfError
from attsf.io import load_state, save_state, write_json
from attsf.losses import total_loss
from attsf.model import build_model, visual_encoder

log = logging.getLogger("attsf")


def lr_factor(epoch: int, t: TrainConfig) -> float:
    """The learning-rate multiplier of a (0-based) epoch. ``step``: ×lr_decay at epoch
    ``lr_decay_start`` and every ``lr_decay_every`` epochs after it (paper §IV-B);
    ``cosine``: half a cosine from 1 to 0 over ``max_epochs``. Either after a linear
    warm-up of ``warmup_epochs``."""
    if epoch < t.warmup_epochs:
        return (epoch + 1) / (t.warmup_epochs + 1)
    if t.schedule == "cosine":
        span = max(1, t.max_epochs - t.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - t.warmup_epochs) / span))
    start = t.lr_decay_start
    return 1.0 if epoch < start else t.lr_decay ** (1 + (epoch - start) // t.lr_decay_every)


class ATTSFModule(L.LightningModule):
    """Model logic only: forward, the loss of eq. (18), metrics, the optimiser and schedule."""

    def __init__(self, cfg: Config, labels: list[str], preprocessing: dict | None = None,
                 provenance: dict | None = None) -> None:
        super().__init__()
        self.cfg, self.labels = cfg, list(labels)
        self.preprocessing = preprocessing or {}  # the cache's settings, so raw clips can be prepared alike
        self.provenance = provenance or {}  # commit, cache fingerprint, seed, threads, versions (provenance.py)
        self.model = build_model(cfg.model)
        _load_visual_weights(self.model, cfg)
        self.init_sources = load_branches(self.model, cfg)  # train.init_audio / init_visual, for the provenance
        self._frozen = frozen_modules(self.model, cfg)
        for module in self._frozen:  # Lightning keeps each submodule's mode, so eval() here lasts
            module.requires_grad_(False).eval()
        self.regression = cfg.model.task == "regression"
        self._val: list[torch.Tensor] = []

    def train(self, mode: bool = True) -> ATTSFModule:
        """Frozen branches stay in eval mode: no dropout, and their BatchNorms keep the
        loaded statistics, so their heads answer exactly as the unimodal networks."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model(audio=batch.get("audio"), visual=batch.get("visual"), text=batch.get("text"))

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        if stage == "train" and self.cfg.augment.active:
            batch = augment_batch(batch, self.cfg.augment, self.cfg.model.n_classes, self.cfg.model.modalities == "av",
                                  self.regression)
        out = self(batch)
        terms = total_loss(out, batch["label"], self.cfg.loss, self.regression)
        target = batch["label"].argmax(-1) if batch["label"].dim() == 2 else batch["label"]  # mixup: soft targets
        bs = target.shape[0]
        self.log_dict({f"{stage}_{k}": v.detach() for k, v in terms.items()}, on_step=False, on_epoch=True,
                      batch_size=bs, sync_dist=stage != "train", prog_bar=False)
        if self.regression:
            err = (out["logits"].squeeze(-1) - batch["label"].float()).abs().mean()
            self.log(f"{stage}_mae", err, on_epoch=True, on_step=False, batch_size=bs, sync_dist=stage != "train",
                     prog_bar=True)
        else:
            acc = (out["logits"].argmax(-1) == target).float().mean()
            self.log(f"{stage}_acc", acc, on_epoch=True, on_step=False, batch_size=bs, sync_dist=stage != "train",
                     prog_bar=True)
        return terms["loss"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # stop before a NaN reaches the weights
            raise AttsfError(f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch + 1}, step "
                             f"{self.global_step}: look for NaN or infinite values in the cache with "
                             f"`attsf inspect {self.cfg.data.cache} --verify`")
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.train
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        sched = LambdaLR(opt, lambda e: lr_factor(e, t))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ema = next((cb for cb in self.trainer.callbacks if isinstance(cb, EMA)), None)
        if ema is not None and "current_model_state" not in checkpoint:  # a weights-only checkpoint (best)
            checkpoint["state_dict"] = ema.averaged_state() or checkpoint["state_dict"]
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        checkpoint["attsf"] = {"config": self.cfg.to_dict(), "labels": self.labels, "metrics": metrics,
                               "finished": False, "max_epochs": self.cfg.train.max_epochs,  # train() marks the end
                               "preprocessing": self.preprocessing, "provenance": self.provenance,
                               "versions": self.provenance.get("versions", {})}


def _load_visual_weights(model: torch.nn.Module, cfg: Config) -> None:
    """The AffectNet-pretrained EfficientFace into the trainable front-end (strict), or one
    warning that it starts from random weights."""
    encoder = visual_encoder(model)
    if encoder is None:
        return
    if cfg.model.visual_weights:
        load_encoder_weights(encoder, cfg.model.visual_weights)
        log.info("EfficientFace front-end: pretrained weights from %s", cfg.model.visual_weights)
    else:
        log.warning("model.visual_weights is not set: EfficientFace starts from random weights (the paper fine-tunes "
                    "an AffectNet-pretrained EfficientFace; convert its checkpoint with `attsf convert-weights`)")


class EMA(EMAWeightAveraging):
    """Lightning's EMA of the weights (``train.ema_decay``): validation runs on the average,
    full checkpoints (last) hold it as ``state_dict`` beside the raw weights. Weights-only
    checkpoints (best) skip callback hooks, so the module puts ``averaged_state`` there."""

    def averaged_state(self) -> dict[str, torch.Tensor] | None:
        if self._average_model is None:
            return None
        return {k.removeprefix("module."): v.detach().clone() for k, v in self._average_model.state_dict().items()
                if k.startswith("module.")}


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints as safetensors (tensors) + JSON (everything else), written
    atomically, with a ``.json`` sidecar for people. Nothing is ever unpickled."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        save_state(path, checkpoint)
        side = dict(checkpoint.get("attsf", {}), epoch=checkpoint.get("epoch"), global_step=checkpoint.get("global_step"),
                    weights_only="optimizer_states" not in checkpoint)
        write_json(path.with_suffix(".json"), side)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_state(path)

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)
        Path(path).with_suffix(".json").unlink(missing_ok=True)


class RNGState(L.Callback):
    """Saves and restores the global random generators with the checkpoint, so dropout and
    augmentation after a resume draw what the uninterrupted run would have drawn."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class NoValidationPass(L.Callback):
    """Stands in for the per-epoch validation pass that ``data.train_on=train+val`` skips
    (its actors are trained on). The pass drew one number from torch's global generator
    (its DataLoader's base seed) after each epoch; drawing it here, before the next epoch,
    keeps dropout's random stream, and so every result, what it was with the pass."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            torch.empty((), dtype=torch.int64).random_()


class EpochLines(L.Callback):
    """One line per epoch (that epoch's train and validation metrics, 1-based "epoch k/n"),
    always into the run's ``train.log`` and, when ``console``, on stderr too; a console
    without a progress bar (a pipe, a log file) also gets a line every ``every_s`` seconds
    inside a long epoch."""

    def __init__(self, file: logging.Handler, console: bool, every_s: float = 30.0) -> None:
        self.file, self.console, self.every_s = file, console, every_s
        self.start = self.last = time.time()

    def _say(self, text: str) -> None:
        if self.console:  # the attsf logger: stderr and train.log
            log.info(text)
        else:
            self.file.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, text, None, None))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = self.last = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.console and trainer.is_global_zero and time.time() - self.last >= self.every_s:
            self.last = time.time()
            n = trainer.num_training_batches
            self._say(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: batch {batch_idx + 1}/{n} "
                      f"({100 * (batch_idx + 1) / n:.0f} %), {self.last - self.start:.0f} s")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """After the epoch's validation: its train and validation figures side by side."""
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{k} {float(m[k]):.4f}" for k in ("train_loss", "train_acc", "val_acc", "val_mae") if k in m]
        self._say(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {', '.join(parts)} "
                  f"({time.time() - self.start:.0f} s)")


class EpochBar(TQDMProgressBar):
    """Lightning's bar, with the epoch counted as the log lines count it (1-based, of n)."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

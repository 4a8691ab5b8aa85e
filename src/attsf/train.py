"""A run: one training run in a run directory, and the evaluation of its kept weights.

A run directory holds ``config.yaml`` (resolved), ``checkpoints/{best,last}.safetensors``
with JSON sidecars, ``metrics.csv`` (per epoch) and, once finished, ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from attsf.branches import attach_fallbacks, fallback_sources
from attsf.config import Config, ignored_keys, save_config
from attsf.data.datamodule import SPLITS, ClipDataModule
from attsf.engine import EMA, ATTSFModule, EpochBar, EpochLines, NoValidationPass, RNGState, SafetensorsCheckpointIO
from attsf.errors import AttsfError, Interrupted, interrupts_raise
from attsf.evaluate import CONFIG_FILE, MODEL_FILE, metrics_for, open_run, predict_dataset
from attsf.history import keep_history, merge_history, read_csv
from attsf.io import pid_lock, read_json, write_json
from attsf.progress import interactive
from attsf.provenance import provenance
from attsf.reuse import absolute_paths

log = logging.getLogger("attsf")
LAST = "checkpoints/last.safetensors"
LOCK = ".lock"  # the pid of the process writing the run
METRICS = "metrics.json"


def _check_against_cache(cfg: Config, dm: ClipDataModule) -> Config:
    """Fill what the cache determines (feature width) and refuse what contradicts it."""
    visual = dm.cache.settings.get("visual", {})
    model = cfg.model
    if model.task == "classification" and model.n_classes != len(dm.labels):
        raise AttsfError(f"model.n_classes={model.n_classes} but the cache {dm.cache.root} has "
                         f"{len(dm.labels)} labels ({', '.join(dm.labels)})")
    if model.modalities != "a":
        kind = visual.get("kind", "none")
        if kind == "none":
            raise AttsfError(f"the cache {dm.cache.root} has no visual input; use model.modalities=a")
        if kind == "features" and model.visual_mode != "features":
            raise AttsfError(f"the cache {dm.cache.root} holds visual features; set model.visual_mode=features")
        if kind == "frames" and model.visual_mode != "efficientface":
            raise AttsfError(f"the cache {dm.cache.root} holds face frames; set model.visual_mode=efficientface")
        if kind == "features" and model.visual_dim != visual["dim"]:
            model = replace(model, visual_dim=int(visual["dim"]))
    audio = dm.cache.settings.get("audio", {})
    if audio.get("kind") == "features" and model.n_mfcc != audio["dim"]:
        model = replace(model, n_mfcc=int(audio["dim"]))  # e.g. the 5-d acoustic features of MOSI pickles
    if model.text_dim > 0:
        text = dm.cache.settings.get("text")
        if not text:
            raise AttsfError(f"model.text_dim={model.text_dim} but the cache {dm.cache.root} holds no text features")
        model = replace(model, text_dim=int(text["dim"]))
    return replace(cfg, model=model)


def _precision(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    if torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _devices(spec: str) -> int | str | list[int]:
    if spec == "auto" or spec == "-1":
        return "auto" if spec == "auto" else -1
    if "," in spec:
        return [int(s) for s in spec.split(",") if s]
    return int(spec)


def _file_logging(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("attsf").addHandler(handler)
    logging.getLogger("lightning.pytorch").addHandler(handler)
    return handler


def train(cfg: Config, run_dir: str | Path, resume: bool = False, splits: tuple[str, ...] = SPLITS) -> dict | None:
    """Train (or resume) one run; evaluate its selected weights (``train.select``: the best
    on validation, or the last epoch's) saved as ``checkpoints/best``. Returns metrics on rank 0.
    ``splits``: the splits the run may read; a tuning trial leaves out "test", and then no
    test clip is opened (nor hashed for the provenance)."""
    run_dir = Path(run_dir)
    last = run_dir / LAST
    if (run_dir / METRICS).is_file() and not resume:
        raise AttsfError(f"{run_dir}: this run has finished already (metrics.json exists); choose another --out")
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise AttsfError(f"{run_dir}: nothing to resume ({CONFIG_FILE} missing)")
        if (run_dir / METRICS).is_file():
            return read_json(run_dir / METRICS)
        if not last.is_file() and ((run_dir / MODEL_FILE).is_file() or read_csv(run_dir / "metrics.csv")):
            raise AttsfError(f"{last}: missing, so this run cannot resume where it stopped (restarting would "
                             "overwrite its best weights); train into another --out")
    elif trainer_rank_zero() and run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise AttsfError(f"{run_dir}: directory is not empty; use --resume to continue it or choose another --out")
    for note in ignored_keys(cfg):
        log.warning("%s: %s", run_dir, note)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # attsf logs the device itself
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = ClipDataModule(cfg, splits)
    cfg = _check_against_cache(cfg, dm)
    dm.cfg = cfg
    dm.check_clips()  # every clip file reads back, before anything is written
    training_data = {"dataset": dm.cache.dataset, "clips": len(dm.splits["train"]),
                     "speakers": len({r.speaker for r in dm.splits["train"]})}
    module = ATTSFModule(cfg, dm.labels, dict(dm.cache.settings, normalization=dm.normalization(),
                                              training_data=training_data))
    fallbacks = fallback_sources(cfg)  # checked before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    with pid_lock(run_dir / LOCK, str(run_dir)) if trainer_rank_zero() else nullcontext():
        return _fit(cfg, run_dir, dm, module, fallbacks, resume, splits)


def _fit(cfg: Config, run_dir: Path, dm: ClipDataModule, module: ATTSFModule, fallbacks: dict, resume: bool,
         splits: tuple[str, ...]) -> dict | None:
    """The Trainer's part of ``train``: fit, then evaluate the kept weights (rank 0)."""
    last = run_dir / LAST
    if not resume and trainer_rank_zero():  # paths made absolute: the run works from any folder
        save_config(absolute_paths(cfg), run_dir / CONFIG_FILE)
    handler = _file_logging(run_dir) if trainer_rank_zero() else logging.NullHandler()
    if trainer_rank_zero():
        keep_history(run_dir)
    monitor, mode = ("val_mae", "min") if cfg.model.task == "regression" else ("val_acc", "max")
    select_best = cfg.train.select == "best"
    no_val_pass = not per_epoch_validation(cfg)
    model_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="model", monitor=monitor if select_best else None,
                              mode=mode, save_top_k=1, save_weights_only=True, enable_version_counter=False)
    last_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                              enable_version_counter=False)
    for cb in (model_cb, last_cb):
        cb.FILE_EXTENSION = ".safetensors"
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=cfg.train.max_epochs,
        accelerator=cfg.train.accelerator,
        devices=_devices(cfg.train.devices),
        num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy,
        precision=_precision(cfg),
        callbacks=[model_cb, last_cb, *([EarlyStopping(monitor, patience=cfg.train.patience, mode=mode)] * select_best),
                   RNGState(), *([NoValidationPass()] * no_val_pass),
                   *([EMA(decay=cfg.train.ema_decay)] if cfg.train.ema_decay > 0 else []),
                   EpochLines(handler, console=cfg.train.progress and not interactive()),
                   *([EpochBar()] if cfg.train.progress and interactive() else [])],
        logger=CSVLogger(run_dir, name="", version=""),
        plugins=[SafetensorsCheckpointIO()],
        num_sanity_val_steps=0,
        limit_val_batches=0 if no_val_pass else None,  # no per-epoch pass (NoValidationPass keeps the random stream)
        enable_progress_bar=cfg.train.progress and interactive(),  # logs get EpochLines instead
        enable_model_summary=False,
        log_every_n_steps=1,  # metrics are logged per epoch only
    )
    log.info("%s: %s on %s, %d device(s), precision %s", run_dir, cfg.name, trainer.accelerator.__class__.__name__,
             trainer.num_devices, trainer.precision)
    module.provenance = dict(provenance(cfg.to_dict(), cfg.data.cache, trainer.world_size, content="test" in splits),
                             resumed=resume,
                             **({"init": module.init_sources} if module.init_sources else {}))
    start = time.time()
    try:
        with interrupts_raise():
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume and last.is_file() else None)
    except Interrupted as exc:
        stopped = (f"{run_dir}: {exc} at epoch {trainer.current_epoch + 1} of {cfg.train.max_epochs}; it is "
                   "unfinished (no metrics.json)")
        raise Interrupted(f"{stopped}; continue it with `attsf train --resume {run_dir}`", exc.signum, stopped) from None
    finally:
        logging.getLogger("attsf").removeHandler(handler)
    if trainer.global_rank != 0:
        return None
    merge_history(run_dir)
    if fallbacks:
        module.provenance["fallbacks"] = attach_fallbacks(run_dir, fallbacks)
    metrics = evaluate_run(run_dir, splits=tuple(s for s in ("val", "test") if s in splits), dm=dm)
    metrics.update(epochs=trainer.current_epoch, stopped_early=trainer.current_epoch < cfg.train.max_epochs,
                   train_seconds=round(time.time() - start, 1),
                   selected_epoch=read_json((run_dir / MODEL_FILE).with_suffix(".json")).get("epoch"),
                   provenance=module.provenance)
    write_json(run_dir / METRICS, metrics)
    _mark_finished(run_dir / MODEL_FILE, metrics)
    return metrics


def per_epoch_validation(cfg: Config) -> bool:
    """Whether the validation actors are evaluated after each epoch: not when they are
    trained on (``data.train_on=train+val``, which never selects on them), nor with
    ``train.validate=end`` (scored once, by the evaluation after training)."""
    return cfg.data.train_on != "train+val" and cfg.train.validate == "epoch"


def _mark_finished(weights: Path, metrics: dict) -> None:
    """The kept weights' sidecar says the run finished and carries its test result, for the
    model card of a weights file shared without its run directory."""
    side_path = weights.with_suffix(".json")
    side = read_json(side_path)
    side["finished"] = True
    test = metrics.get("test", {})
    side["test"] = {k: test[k] for k in ("accuracy", "unweighted_accuracy", "mae", "n") if k in test}
    write_json(side_path, side)


def evaluate_run(run_dir: str | Path, splits: tuple[str, ...] = ("test",), dm: ClipDataModule | None = None,
                 cache: str | None = None, new_speakers: bool = False) -> dict:
    """Metrics of the run's best weights on the given splits of its own data (``dm``: the
    training run's DataModule, so the cache is not read a second time; ``cache``: the
    cache's place when it is not the recorded one). ``new_speakers``: a run trained with
    ``data.normalize=speaker`` sees its validation and test speakers as ``attsf predict``
    sees a new one, normalised with the training speakers' pooled statistics instead of
    their own (the ``speaker_train`` setting at test time)."""
    run = open_run(run_dir, cache=cache)
    if new_speakers:
        if run.cfg.data.normalize == "none":
            raise AttsfError(f"{run_dir}: this run does not normalise per speaker (data.normalize=none), "
                             "so every speaker is seen alike already")
        run.cfg = replace(run.cfg, data=replace(run.cfg.data, normalize="speaker_train"))
    dm = dm or ClipDataModule(run.cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {}
    for split in splits:
        pred = predict_dataset(run.model, dm.dataset(split), batch_size=32, device=device)
        result[split] = metrics_for(pred, run.labels, run.cfg.model.task == "regression")
    return result


def trainer_rank_zero() -> bool:
    """True in the process that writes files (before the Trainer exists)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0

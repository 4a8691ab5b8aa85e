"""Runs: one training run in a run directory, its evaluation, and k-fold cross-validation.

A run directory holds ``config.yaml`` (resolved), ``checkpoints/{best,last}.safetensors``
with JSON sidecars, ``metrics.csv`` (per epoch) and, once finished, ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from attsf.branches import attach_fallbacks, fallback_sources
from attsf.config import Config, ignored_keys, load_config, save_config
from attsf.cv_results import summarise_cv, summarise_seeds
from attsf.data.datamodule import SPLITS, ClipDataModule, load_folds
from attsf.engine import EMA, ATTSFModule, EpochLines, RNGState, SafetensorsCheckpointIO
from attsf.errors import AttsfError, Interrupted, quiet_library_warnings, raise_interrupted
from attsf.evaluate import BEST, CONFIG_FILE, metrics_for, open_run, predict_dataset
from attsf.io import atomic_write_text, pid_lock, read_json, stale_temp_files, write_json
from attsf.progress import interactive
from attsf.provenance import provenance

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


def _keep_history(run_dir: Path) -> None:
    """Lightning's CSVLogger starts metrics.csv afresh; move the rows of earlier attempts
    to metrics.prev.csv so that a resumed run keeps its whole history. A process killed
    between saving the last checkpoint and writing that epoch's rows left them out: they
    are rebuilt from the metrics the checkpoint's sidecar holds. Temporary files of killed
    writers are removed."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in stale_temp_files(folder) if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
    cur, prev = run_dir / "metrics.csv", run_dir / "metrics.prev.csv"
    rows = _read_csv(prev) + _read_csv(cur)
    last = (run_dir / LAST).with_suffix(".json")
    if last.is_file():
        side = read_json(last)
        epoch, step = side.get("epoch"), side.get("global_step", 0) - 1
        if epoch is not None and not any(r.get("epoch") == str(epoch) for r in rows):
            metrics = side.get("metrics", {})
            for stage in ("val_", "train_"):
                row = {k: v for k, v in metrics.items() if k.startswith(stage)}
                rows += [dict(row, epoch=epoch, step=step)] if row else []
    if rows:
        _write_csv(prev, rows)
    cur.unlink(missing_ok=True)


def _merge_history(run_dir: Path) -> None:
    cur, prev = run_dir / "metrics.csv", run_dir / "metrics.prev.csv"
    if prev.is_file():
        new = _read_csv(cur)
        first = min((int(r["epoch"]) for r in new if r.get("epoch")), default=None)
        old = [r for r in _read_csv(prev) if first is None or int(r["epoch"]) < first]
        _write_csv(cur, old + new)
        prev.unlink()


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


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
        if not last.is_file() and ((run_dir / BEST).is_file() or _read_csv(run_dir / "metrics.csv")):
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
        save_config(_absolute_paths(cfg), run_dir / CONFIG_FILE)
    handler = _file_logging(run_dir) if trainer_rank_zero() else logging.NullHandler()
    if trainer_rank_zero():
        _keep_history(run_dir)
    monitor, mode = ("val_mae", "min") if cfg.model.task == "regression" else ("val_acc", "max")
    select_best = cfg.train.select == "best"
    best_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor if select_best else None,
                              mode=mode, save_top_k=1, save_weights_only=True, enable_version_counter=False)
    last_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                              enable_version_counter=False)
    for cb in (best_cb, last_cb):
        cb.FILE_EXTENSION = ".safetensors"
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=cfg.train.max_epochs,
        accelerator=cfg.train.accelerator,
        devices=_devices(cfg.train.devices),
        num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy,
        precision=_precision(cfg),
        callbacks=[best_cb, last_cb, *([EarlyStopping(monitor, patience=cfg.train.patience, mode=mode)] * select_best),
                   RNGState(), *([EMA(decay=cfg.train.ema_decay)] if cfg.train.ema_decay > 0 else []),
                   *([EpochLines()] if cfg.train.progress and not interactive() else [])],
        logger=CSVLogger(run_dir, name="", version=""),
        plugins=[SafetensorsCheckpointIO()],
        num_sanity_val_steps=0,
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
        with _interrupts_raise():
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume and last.is_file() else None)
    except Interrupted as exc:
        raise Interrupted(f"{run_dir}: {exc} at epoch {trainer.current_epoch + 1} of {cfg.train.max_epochs}; it is "
                          f"unfinished (no metrics.json); continue it with `attsf train --resume {run_dir}`",
                          exc.exit_code - 128) from None
    finally:
        logging.getLogger("attsf").removeHandler(handler)
    if trainer.global_rank != 0:
        return None
    _merge_history(run_dir)
    if fallbacks:
        module.provenance["fallbacks"] = attach_fallbacks(run_dir, fallbacks)
    metrics = evaluate_run(run_dir, splits=tuple(s for s in ("val", "test") if s in splits), dm=dm)
    metrics.update(epochs=trainer.current_epoch, stopped_early=trainer.current_epoch < cfg.train.max_epochs,
                   train_seconds=round(time.time() - start, 1),
                   best_epoch=read_json((run_dir / BEST).with_suffix(".json")).get("epoch"), provenance=module.provenance)
    write_json(run_dir / METRICS, metrics)
    _mark_finished(run_dir / BEST, metrics)
    return metrics


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM stop training as an :class:`Interrupted` (Lightning tears down and
    re-raises it); the handlers before are restored after. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _absolute(path: str) -> str:
    return str(Path(path).resolve()) if path else path


def _absolute_paths(cfg: Config) -> Config:
    """The cache and the unimodal runs a fused run starts from or carries, as absolute paths."""
    t = cfg.train
    return replace(cfg, data=replace(cfg.data, cache=_absolute(cfg.data.cache)),
                   train=replace(t, init_audio=_absolute(t.init_audio), init_visual=_absolute(t.init_visual),
                                 fallback_audio=_absolute(t.fallback_audio), fallback_visual=_absolute(t.fallback_visual)))


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


# How a run executes, not what it learns, or what the cache fills in (see _check_against_cache).
_NOT_COMPARED = {"name", "train.threads", "train.progress", "train.accelerator", "train.devices", "train.num_nodes",
                 "train.strategy", "data.num_workers", "data.fold", "model.visual_dim", "model.n_mfcc"}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: Config, wanted: Config) -> list[str]:
    """The settings in which a finished run's config differs from the one asked for now
    (``data.cache``, ``train.init_*`` and ``train.fallback_*`` compared as resolved paths; the
    loss of a unimodal model is ignored, as it has no L_sim or auxiliary terms, and so is the
    patience with ``train.select=last``)."""
    a, b = _flat(_absolute_paths(saved).to_dict()), _flat(_absolute_paths(wanted).to_dict())
    for flat in (a, b):
        flat["model.text_dim"] = flat["model.text_dim"] > 0
    skip = _NOT_COMPARED | ({k for k in a if k.startswith("loss.")} if wanted.model.modalities != "av" else set())
    if wanted.train.select == "last":  # no early stopping: the patience plays no part
        skip |= {"train.patience"}
    return [f"{k}={a[k]} there, {b[k]} here" for k in b if k not in skip and a.get(k) != b[k]]


def cross_validate(cfg: Config, out_dir: str | Path, folds: list[int] | None = None,
                   seeds: list[int] | None = None, jobs: int = 1) -> dict:
    """Every fold of ``cfg.data.folds`` in ``out_dir/fold{k}`` (with ``seeds``: every fold
    of every seed in ``out_dir/seed{s}/fold{k}``). Finished runs are reused, interrupted ones
    resumed, both only if their settings match ``cfg``. ``jobs > 1`` trains that many runs
    at once in separate processes, each with ``cores // jobs`` threads unless
    ``train.threads`` is set. Writes ``cv.json`` and ``cv.md`` with mean ± std (over all
    runs, and per seed)."""
    return cross_validate_many([(cfg, Path(out_dir))], folds, seeds, jobs)[0]


def cross_validate_many(studies: list[tuple[Config, Path]], folds: list[int] | None = None,
                        seeds: list[int] | None = None, jobs: int = 1) -> list[dict]:
    """``cross_validate`` of several configs (the rows of an experiment), their runs
    sharing one pool of ``jobs`` processes so that no core waits for a row's last fold."""
    plan, cfgs, results = [], [], []
    for i, (cfg, out_dir) in enumerate(studies):
        n_folds = len(load_folds(cfg.data.folds)["folds"])
        if folds is not None and (bad := [k for k in folds if not 0 <= k < n_folds]):  # before any run starts
            raise AttsfError(f"--folds: fold {bad[0]} is out of range ({cfg.data.folds} has {n_folds} folds)")
        if jobs > 1 and cfg.train.threads == 0:
            cfg = replace(cfg, train=replace(cfg.train, threads=max(1, (os.cpu_count() or 1) // jobs)))
        cfgs.append(cfg)
        base = {s: (replace(cfg, train=replace(cfg.train, seed=s)), out_dir / f"seed{s}") for s in seeds or []}
        base = base or {cfg.train.seed: (cfg, out_dir)}
        plan += [(i, s, k, *_fold_job(c, run_dir, k, n_folds)) for s, (c, run_dir) in base.items()
                 for k in (range(n_folds) if folds is None else folds)]
        results.append({s: {} for s in base})
    if jobs > 1:
        if any(cfg.train.devices not in ("auto", "1") for cfg in cfgs) or not trainer_rank_zero():
            raise AttsfError("--jobs trains several runs at once on CPU; use it without DDP (train.devices)")
        from attsf.pool import run_jobs

        keys = {str(run_dir): (i, s, k) for i, s, k, _, run_dir, _ in plan}
        jobs_ = [(str(run_dir), _train_job, (fold_cfg, run_dir, resume)) for _, _, _, fold_cfg, run_dir, resume in plan]
        for name, metrics in run_jobs(jobs_, jobs):  # the first failure stops the others and names its run
            i, s, k = keys[name]
            results[i][s][k] = metrics
            log.info("%sseed %d fold %d: test accuracy %.2f %%", f"{studies[i][1].name}: " * (len(studies) > 1),
                     s, k, 100 * metrics["test"]["accuracy"])
    else:
        for i, s, k, fold_cfg, run_dir, resume in plan:  # under DDP every rank trains every run; rank 0 writes
            metrics = train(fold_cfg, run_dir, resume=resume)
            if metrics is not None:
                results[i][s][k] = metrics
        if not trainer_rank_zero():
            return [{} for _ in studies]
    return [_summarise(cfg, out_dir, {s: dict(sorted(r.items())) for s, r in res.items()}, seeds)
            for cfg, (_, out_dir), res in zip(cfgs, studies, results)]


def _summarise(cfg: Config, out_dir: Path, results: dict[int, dict[int, dict]], seeds: list[int] | None) -> dict:
    """``cv.json`` and ``cv.md`` of one study (and of each seed folder, with ``seeds``)."""
    prov = provenance(cfg.to_dict(), cfg.data.cache)
    return summarise_seeds(out_dir, results, prov) if seeds else summarise_cv(out_dir, results[cfg.train.seed], prov)


def _fold_job(cfg: Config, out_dir: Path, k: int, n_folds: int) -> tuple[Config, Path, bool]:
    """Fold ``k``'s config, run directory and whether to resume it; refuses a run directory
    whose settings differ."""
    run_dir = out_dir / f"fold{k}"
    fold_cfg = replace(cfg, data=replace(cfg.data, fold=k))
    resume = (run_dir / CONFIG_FILE).is_file()
    if resume and (diff := config_differences(load_config(run_dir / CONFIG_FILE), fold_cfg)):
        raise AttsfError(f"{run_dir}: this run has other settings ({'; '.join(diff)}); "
                         "choose another --out or remove it")
    state = " (finished: reused)" if (run_dir / METRICS).is_file() else " (resuming)" if resume else ""
    log.info("fold %d/%d, seed %d -> %s%s", k, n_folds, cfg.train.seed, run_dir, state)
    return fold_cfg, run_dir, resume


def _train_job(cfg: Config, run_dir: Path, resume: bool) -> dict:
    """One run in a worker process of ``cross_validate(jobs > 1)``: no progress bar (the
    parent logs each finished run); warnings still reach the terminal."""
    quiet_library_warnings()
    logging.getLogger("attsf").setLevel(logging.WARNING)
    return train(replace(cfg, train=replace(cfg.train, progress=False)), run_dir, resume=resume)


def trainer_rank_zero() -> bool:
    """True in the process that writes files (before the Trainer exists)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0

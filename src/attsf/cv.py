"""k-fold cross-validation: every fold (of every seed) of a config as one run each, in
``OUT/fold{k}`` or ``OUT/seed{s}/fold{k}``; finished runs reused and interrupted ones
resumed when their settings match (``reuse.py``), several at once in a pool of worker
processes (``pool.py``), summarised in ``cv.json`` and ``cv.md`` (``cv_results.py``)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path

from attsf.config import Config
from attsf.cv_results import figure_text, figures, headline, summarise_cv, summarise_seeds
from attsf.data.datamodule import check_folds, fold_count
from attsf.errors import AttsfError, Interrupted, interrupts_raise, quiet_library_warnings
from attsf.provenance import provenance
from attsf.reuse import resumable
from attsf.train import METRICS, train, trainer_rank_zero

log = logging.getLogger("attsf")


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
        n_folds = fold_count(cfg.data)
        check_folds(cfg.data, folds or [])  # before any run starts
        if jobs > 1 and cfg.train.threads == 0:
            cfg = replace(cfg, train=replace(cfg.train, threads=max(1, (os.cpu_count() or 1) // jobs)))
        cfgs.append(cfg)
        base = {s: (replace(cfg, train=replace(cfg.train, seed=s)), out_dir / f"seed{s}") for s in seeds or []}
        base = base or {cfg.train.seed: (cfg, out_dir)}
        plan += [(i, s, k, *_fold_job(c, run_dir, k, n_folds)) for s, (c, run_dir) in base.items()
                 for k in (range(n_folds) if folds is None else folds)]
        results.append({s: {} for s in base})
    seconds: list[float] = []

    def finished(i: int, s: int, k: int, metrics: dict) -> None:
        results[i][s][k] = metrics
        seconds.append(metrics.get("train_seconds", 0.0))
        key = headline(metrics["test"])
        log.info("%sseed %d fold %d: test %s (%s)", f"{studies[i][1].name}: " * (len(studies) > 1), s, k,
                 figure_text(key, figures(metrics["test"])[key]), runs_left(seconds, len(plan), jobs))

    if jobs > 1:
        if any(cfg.train.devices not in ("auto", "1") for cfg in cfgs) or not trainer_rank_zero():
            raise AttsfError("--jobs trains several runs at once on CPU; use it without DDP (train.devices)")
        from attsf.pool import run_jobs

        keys = {str(run_dir): (i, s, k) for i, s, k, _, run_dir, _ in plan}
        jobs_ = [(str(run_dir), _train_job, (fold_cfg, run_dir, resume)) for _, _, _, fold_cfg, run_dir, resume in plan]
        try:
            with interrupts_raise():
                for name, metrics in run_jobs(jobs_, jobs):  # the first failure stops the others and names its run
                    finished(*keys[name], metrics)
        except Interrupted as exc:  # the pool has ended its workers; each run resumes from its last epoch
            raise exc.resumed_by("the same command resumes the unfinished runs and reuses the finished ones") from None
    else:
        for i, s, k, fold_cfg, run_dir, resume in plan:  # under DDP every rank trains every run; rank 0 writes
            try:
                metrics = train(fold_cfg, run_dir, resume=resume)
            except Interrupted as exc:
                raise exc.resumed_by("the same command resumes it and reuses the finished runs") from None
            if metrics is not None:
                finished(i, s, k, metrics)
        if not trainer_rank_zero():
            return [{} for _ in studies]
    return [_summarise(cfg, out_dir, {s: dict(sorted(r.items())) for s, r in res.items()}, seeds)
            for cfg, (_, out_dir), res in zip(cfgs, studies, results)]


def runs_left(seconds: list[float], total: int, jobs: int) -> str:
    """"3/15 runs finished, about 2 h 10 min left": the runs not finished yet at the mean
    training time of those that have (a reused run counts its recorded time, a resumed one
    its last attempt's), ``jobs`` at a time."""
    done, left = len(seconds), total - len(seconds)
    text = f"{done}/{total} runs finished"
    if not left or not any(seconds):
        return text
    minutes = round(sum(seconds) / done * math.ceil(left / jobs) / 60)
    return f"{text}, about {minutes // 60} h {minutes % 60} min left" if minutes >= 60 else \
        f"{text}, about {max(1, minutes)} min left"


def _summarise(cfg: Config, out_dir: Path, results: dict[int, dict[int, dict]], seeds: list[int] | None) -> dict:
    """``cv.json`` and ``cv.md`` of one study (and of each seed folder, with ``seeds``)."""
    prov = provenance(cfg.to_dict(), cfg.data.cache)
    return summarise_seeds(out_dir, results, prov) if seeds else summarise_cv(out_dir, results[cfg.train.seed], prov)


def _fold_job(cfg: Config, out_dir: Path, k: int, n_folds: int) -> tuple[Config, Path, bool]:
    """Fold ``k``'s config, run directory and whether to resume it; refuses a run directory
    whose settings differ."""
    run_dir = out_dir / f"fold{k}"
    fold_cfg = replace(cfg, data=replace(cfg.data, fold=k))
    resume = resumable(run_dir, fold_cfg, "choose another --out or remove it")
    state = " (finished: reused)" if (run_dir / METRICS).is_file() else " (resuming)" if resume else ""
    where = "the cache's predefined split" if cfg.data.protocol == "predefined" else f"fold {k}/{n_folds}"
    log.info("%s, seed %d -> %s%s", where, cfg.train.seed, run_dir, state)
    return fold_cfg, run_dir, resume


def _train_job(cfg: Config, run_dir: Path, resume: bool) -> dict:
    """One run in a worker process of ``cross_validate(jobs > 1)``: no progress bar (the
    parent logs each finished run); warnings still reach the terminal."""
    quiet_library_warnings()
    logging.getLogger("attsf").setLevel(logging.WARNING)
    return train(replace(cfg, train=replace(cfg.train, progress=False)), run_dir, resume=resume)

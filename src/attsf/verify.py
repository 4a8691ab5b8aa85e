"""``attsf verify RESULT.json``: re-run one fold of a recorded result with its recorded
settings (config, seed, threads) and print recorded against now, with what differs in the
code and the cache. RESULT.json is a run's ``metrics.json`` or a ``cv.json``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from attsf.config import Config, config_from_dict
from attsf.cv_results import figures, headline
from attsf.errors import AttsfError
from attsf.io import read_json
from attsf.provenance import cache_fingerprint, code_version, devices


def tracked(record: dict) -> tuple[str, ...]:
    """The figures of a recorded run that verify compares: test and validation accuracy (a
    regression's MAE), the kept epoch and the epoch count."""
    key = "mae" if "test_mae" in record else "accuracy"
    return f"test_{key}", f"val_{key}", "selected_epoch", "epochs"


def recorded_runs(result: dict, path: Path) -> dict[str, dict]:
    """``{run key: {test_accuracy, val_accuracy (a regression: test_mae, val_mae),
    selected_epoch, epochs, provenance, commit}}`` of a result file (``provenance``: the
    run's own, where the file records it; ``commit``: the run's commit in files of before
    per-run provenance)."""
    if isinstance(result, dict) and isinstance(result.get("folds"), dict) and result["folds"]:  # cv.json
        return {(f"fold{k}" if k.isdigit() else k): {t: v.get(t) for t in (*tracked(v), "provenance", "commit")}
                for k, v in result["folds"].items() if isinstance(v, dict)}
    if isinstance(result, dict) and _has_figures(result, "test") and _has_figures(result, "val"):
        fold = result.get("provenance", {}).get("config", {}).get("data", {}).get("fold", 0)
        return {f"fold{fold}": {**_now(result), "provenance": result.get("provenance")}}
    raise AttsfError(f"{path}: neither a cv.json nor a finished run's metrics.json (with val and test figures)")


def _has_figures(result: dict, split: str) -> bool:
    scores = result.get(split)
    return isinstance(scores, dict) and any(isinstance(scores.get(k), (int, float)) for k in ("accuracy", "mae"))


def _now(metrics: dict) -> dict:
    """A run's ``metrics.json`` as the tracked figures (accuracies in %)."""
    key = headline(metrics["test"])
    return {f"test_{key}": figures(metrics["test"])[key], f"val_{key}": figures(metrics["val"])[key],
            "selected_epoch": metrics.get("selected_epoch"), "epochs": metrics.get("epochs")}


def _fold_and_seed(key: str, cfg: Config) -> tuple[int, int]:
    """The fold and seed of a run key, ``fold3`` or ``seed1/fold3``."""
    seed, fold = cfg.train.seed, key
    if "/" in key:
        s, fold = key.split("/")
        seed = int(s.removeprefix("seed"))
    return int(fold.removeprefix("fold")), seed


def plan(result_path: str | Path, run: str | None, cache: str | None) -> tuple[Config, str, dict, list[str]]:
    """The config to re-run, the run's key, its recorded figures and notes on what differs."""
    path = Path(result_path)
    result = read_json(path)
    prov = result.get("provenance") if isinstance(result, dict) else None
    if not isinstance(prov, dict) or not isinstance(prov.get("config"), dict):
        raise AttsfError(f"{path}: records no provenance (written by an attsf before provenance was recorded); "
                         "nothing to re-run it from")
    runs = recorded_runs(result, path)
    key = run or next(iter(runs))
    if key not in runs:
        key = f"fold{key}" if f"fold{key}" in runs else key
    if key not in runs:
        raise AttsfError(f"{path}: no run '{run}' (it has {', '.join(runs)})")
    cfg = config_from_dict(prov["config"])
    fold, seed = _fold_and_seed(key, cfg)
    data = replace(cfg.data, fold=fold, cache=cache or cfg.data.cache)
    cfg = replace(cfg, data=data, train=replace(cfg.train, seed=seed, threads=_threads(runs[key], prov, cfg),
                                                progress=False))
    if not (Path(cfg.data.cache) / "index.json").is_file():
        raise AttsfError(f"{cfg.data.cache}: the cache this result was computed on is not there; give its place "
                         "with --cache")
    notes = []
    own = runs[key].get("provenance") or prov  # the run's own record where the file has it
    rec_code, now_code = own.get("code", prov.get("code", {})), code_version()
    if not runs[key].get("provenance") and runs[key].get("commit"):  # older files: the run's commit alone
        rec_code = {"commit": runs[key]["commit"]}
    if rec_code.get("commit") != now_code.get("commit") or rec_code.get("dirty") or now_code.get("dirty"):
        notes.append(f"code: recorded {_code(rec_code)}, now {_code(now_code)}")
    rec_cpu, now_cpu = own.get("devices", prov.get("devices", {})), devices()
    if not rec_cpu.get("cuda") and any(rec_cpu.get(k) != now_cpu[k] for k in ("cpu", "cpu_kernels")):
        notes.append(f"CPU: recorded {_cpu(rec_cpu)}, now {_cpu(now_cpu)}: on another CPU the kernels round "
                     "differently and training drifts, so the figures may differ with the same code")
    if "cache" in own:
        now = cache_fingerprint(cfg.data.cache)
        for field in ("index_sha256", "tensors_sha256"):  # those both hold (older results: the index only)
            if field in own["cache"] and field in now and own["cache"][field] != now[field]:
                notes.append(f"cache {field}: recorded {own['cache'].get(field)}, now {now.get(field)} "
                             f"({cfg.data.cache})")
    return cfg, key, runs[key], notes


def _threads(run: dict, prov: dict, cfg: Config) -> int:
    """The threads the run itself trained with: its own provenance, else the recorded
    config's ``train.threads``, else the threads of the process that wrote the result (a
    cv.json written by ``--jobs`` runs records the parent's, not the runs')."""
    own = (run.get("provenance") or {}).get("devices", {}).get("threads")
    return int(own or cfg.train.threads or prov.get("devices", {}).get("threads", 0))


def _cpu(dev: dict) -> str:
    return f"{dev.get('cpu', '?')} ({dev.get('cpu_kernels') or 'kernels not recorded'})"


def _code(code: dict) -> str:
    commit = code.get("commit")
    return (commit[:10] if commit else f"version {code.get('version')}") + (" (uncommitted changes)" if code.get("dirty")
                                                                              else "")


def compare(recorded: dict, metrics: dict) -> list[tuple[str, object, object, bool]]:
    """``(name, recorded, now, equal)`` rows; accuracies in %, equal to 0.01 points (an MAE
    to 0.0001)."""
    now = _now(metrics)
    rows = []
    for name in tracked(recorded):
        a, b = recorded.get(name), now.get(name)
        tol = 1e-4 if name.endswith("_mae") else 0.01
        same = a is not None and b is not None and (abs(a - b) < tol if isinstance(a, float) else a == b)
        rows.append((name, a, b, same))
    return rows

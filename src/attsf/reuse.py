"""Whether an existing run stands for the one asked for: the settings in which two configs
differ (a finished fold that ``attsf cv`` reuses, an interrupted one it resumes), and the
data settings a unimodal run must share with the fused run that loads or carries it.
Paths (the cache, the runs named by ``train.init_*`` / ``train.fallback_*``) are compared
resolved."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from attsf.config import Config, load_config

# what a unimodal run must share with the fused one, or its weights saw other speakers or features
SAME_DATA = ("cache", "folds", "fold", "normalize", "train_on", "protocol")


def _absolute(path: str) -> str:
    return str(Path(path).resolve()) if path else path


def absolute_paths(cfg: Config) -> Config:
    """The cache and the unimodal runs a fused run starts from or carries, as absolute paths."""
    t = cfg.train
    return replace(cfg, data=replace(cfg.data, cache=_absolute(cfg.data.cache)),
                   train=replace(t, init_audio=_absolute(t.init_audio), init_visual=_absolute(t.init_visual),
                                 fallback_audio=_absolute(t.fallback_audio), fallback_visual=_absolute(t.fallback_visual)))


# How a run executes, not what it learns, or what the cache fills in (see _check_against_cache).
_NOT_COMPARED = {"name", "train.threads", "train.progress", "train.validate", "train.accelerator", "train.devices",
                 "train.num_nodes", "train.strategy", "data.num_workers", "data.fold", "model.visual_dim", "model.n_mfcc"}


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
    a, b = _flat(absolute_paths(saved).to_dict()), _flat(absolute_paths(wanted).to_dict())
    for flat in (a, b):
        flat["model.text_dim"] = flat["model.text_dim"] > 0
    skip = _NOT_COMPARED | ({k for k in a if k.startswith("loss.")} if wanted.model.modalities != "av" else set())
    if wanted.train.select == "last":  # no early stopping: the patience plays no part
        skip |= {"train.patience"}
    return [f"{k}={a[k]} there, {b[k]} here" for k in b if k not in skip and a.get(k) != b[k]]


def resumable(run_dir: Path, cfg: Config, advice: str) -> bool:
    """Whether ``run_dir`` holds a run of ``cfg`` to resume or reuse (False: none there); a
    run of other settings there is refused, naming them, with ``advice``."""
    from attsf.errors import AttsfError
    from attsf.evaluate import CONFIG_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        return False
    if diff := config_differences(load_config(run_dir / CONFIG_FILE), cfg):
        raise AttsfError(f"{run_dir}: this run has other settings ({'; '.join(diff)}); {advice}")
    return True


def data_differences(source: Config, cfg: Config) -> list[tuple[str, object, object]]:
    """``(data key, source's value, cfg's value)`` for each of ``SAME_DATA`` that differs."""
    out = []
    for name in SAME_DATA:
        there, here = getattr(source.data, name), getattr(cfg.data, name)
        if name == "cache":
            there, here = _absolute(there), _absolute(here)
        if there != here:
            out.append((name, there, here))
    return out

"""Finished unimodal runs inside a fused run: the fused model's branches started from them
(``train.init_audio`` / ``train.init_visual``, optionally kept as they are with
``train.freeze_init``), or the unimodal networks carried beside the fused one as the
answer when a modality is missing (``train.fallback_audio`` / ``train.fallback_visual``).

ATTSF-Net's audio branch (stream + audio AVAM + its classifier) has the shape of the
paper's "audio only" network (``UnimodalNet``: stream + AVAM), and likewise for the visual
branch. Loading a unimodal run of the same fold into a branch and freezing it makes that
branch's auxiliary head *be* the unimodal network: the answer with the other modality
missing is the unimodal network's answer, while the CMB, SAB, fusion and head learn the
fused path on top (two-stage training; on the RAVDESS AU data this cost the fused path
5-7 points, docs/results.md). A fallback leaves the fused network as the paper
trains it and copies the unimodal run's weights into the run directory
(``checkpoints/fallback_{audio,visual}.safetensors``); ``evaluate.open_run`` puts them
beside the fused network (``model.WithFallbacks``). Placeholders ``{fold}`` and
``{seed}`` in the path are filled from ``data.fold`` and ``train.seed``, so one config
covers a cross-validation.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

from torch import nn

from attsf.config import Config, load_config
from attsf.errors import AttsfError
from attsf.io import atomic_write_bytes, load_state
from attsf.reuse import data_differences

# fused-model attributes of each branch, and the unimodal modality that fills them
BRANCHES = {"audio": ("a", "audio", "aux_a"), "visual": ("v", "visual", "aux_v")}
FALLBACK = "checkpoints/fallback_{branch}.safetensors"


def init_run_dir(template: str, cfg: Config, key: str) -> Path:
    """The run directory named by ``template``: ``{fold}`` and ``{seed}`` filled in, nothing
    else (no other names, indexing, attributes, conversions or format specs)."""
    bad = AttsfError(f"train.{key}: {template!r}: only {{fold}} and {{seed}} may stand in braces")
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        raise bad from None
    if any(name is not None and (name not in ("fold", "seed") or spec or conv) for _, name, spec, conv in fields):
        raise bad
    return Path(template.format(fold=cfg.data.fold, seed=cfg.train.seed))


def _check_source(run_dir: Path, modality: str, cfg: Config, key: str) -> Config:
    if not (run_dir / "metrics.json").is_file():
        raise AttsfError(f"train.{key}: {run_dir} is not a finished run (metrics.json missing); train the unimodal "
                         "network of this fold and seed first")
    src = load_config(run_dir / "config.yaml")
    if src.model.modalities != modality:
        raise AttsfError(f"train.{key}: {run_dir} is a model.modalities={src.model.modalities} run, not {modality}")
    for name, there, here in data_differences(src, cfg)[:1]:
        raise AttsfError(f"train.{key}: {run_dir} was trained with data.{name}={there}, this run has {here}")
    return src


def load_branches(model: nn.Module, cfg: Config) -> dict[str, dict]:
    """Load each ``train.init_*`` run's stream and AVAM (the stream alone where the model has
    no such auxiliary module) into the fused ``model``; returns
    what was loaded (run, weights file and its SHA-256), for the run's provenance."""
    loaded = {}
    for branch, (modality, stream_attr, aux_attr) in BRANCHES.items():
        key = f"init_{branch}"
        template = getattr(cfg.train, key)
        if not template:
            continue
        run_dir = init_run_dir(template, cfg, key)
        _check_source(run_dir, modality, cfg, key)
        weights = run_dir / "checkpoints" / "model.safetensors"
        state = load_state(weights)["state_dict"]
        for prefix, target in (("model.stream.", stream_attr), ("model.aux.", aux_attr)):
            if getattr(model, target) is None:  # model.use_*_aux=false: the stream alone
                continue
            part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            try:
                getattr(model, target).load_state_dict(part, strict=True)
            except RuntimeError as exc:
                raise AttsfError(f"train.{key}: {weights} does not fit this model's {branch} branch "
                                 f"({str(exc).splitlines()[0]})") from None
        loaded[branch] = _record(run_dir)
    return loaded


def _record(run_dir: Path) -> dict:
    weights = run_dir / "checkpoints" / "model.safetensors"
    return {"run": str(run_dir.resolve()), "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}


def fallback_sources(cfg: Config) -> dict[str, Path]:
    """The finished unimodal runs named by ``train.fallback_*``, checked as the init runs are."""
    sources = {}
    for branch, (modality, *_) in BRANCHES.items():
        if template := getattr(cfg.train, f"fallback_{branch}"):
            sources[branch] = init_run_dir(template, cfg, f"fallback_{branch}")
            _check_source(sources[branch], modality, cfg, f"fallback_{branch}")
    return sources


def attach_fallbacks(run_dir: Path, sources: dict[str, Path]) -> dict[str, dict]:
    """Copy each source run's kept weights and sidecar into ``run_dir`` (atomically);
    returns what was copied, for the run's provenance."""
    for branch, src in sources.items():
        target = run_dir / FALLBACK.format(branch=branch)
        for suffix in (".safetensors", ".json"):
            atomic_write_bytes(target.with_suffix(suffix), (src / "checkpoints" / f"model{suffix}").read_bytes())
    return {branch: _record(src) for branch, src in sources.items()}


def frozen_modules(model: nn.Module, cfg: Config) -> list[nn.Module]:
    """The loaded branches' modules, when ``train.freeze_init`` keeps them as loaded."""
    if not cfg.train.freeze_init:
        return []
    return [getattr(model, attr) for branch, (_, *attrs) in BRANCHES.items() if getattr(cfg.train, f"init_{branch}")
            for attr in attrs if getattr(model, attr) is not None]

"""Experiment configs: YAML files of five sections (model, loss, data, augment, train) plus
``key=value`` overrides, validated against dataclasses so that a typo or a wrong type is
a one-line error naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from attsf.augment import AugmentConfig
from attsf.errors import AttsfError
from attsf.fields import bounded, problems, validate
from attsf.losses import LossConfig
from attsf.model import ATTSFConfig


@dataclass(frozen=True)
class DataConfig:
    cache: str = "cache/ravdess"  # directory written by `attsf preprocess`
    protocol: Literal["folds", "predefined"] = "folds"  # "predefined": the cache's split field
    folds: str = "ravdess_actor_5fold"  # a packaged fold file name, or a path to a JSON fold file
    fold: int = bounded(0, ge=0)  # and below the fold file's count (checked when the folds are read)
    augment: bool = True  # flips, rotation, crop of face frames at training time
    # "speaker": z-score features per speaker with its own statistics (test speakers too);
    # "speaker_train": val/test speakers with the train speakers' pooled statistics (data/normalize.py)
    normalize: Literal["none", "speaker", "speaker_train"] = "none"
    # "train+val": the validation speakers join the training set (a refit for a fixed
    # schedule, with train.select=last); the val split is still evaluated, no longer held out
    train_on: Literal["train", "train+val"] = "train"
    # DataLoader worker processes; null: 0 for feature caches (held in memory), and on CUDA
    # for face-frame caches min(8, cores) so that decoding and augmentation keep the GPU fed
    num_workers: int | None = bounded(None, ge=0)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = bounded(8, ge=1)  # per process (DDP: the global batch is this x processes)
    lr: float = bounded(4e-4, gt=0)
    weight_decay: float = bounded(1e-5, ge=0)
    max_epochs: int = bounded(200, ge=1)
    schedule: Literal["step", "cosine"] = "step"  # "step": the paper's x lr_decay; "cosine": to 0 at max_epochs
    lr_decay: float = bounded(0.9, gt=0)
    lr_decay_every: int = bounded(20, ge=1)
    lr_decay_start: int = bounded(30, ge=0)
    warmup_epochs: int = bounded(0, ge=0)  # linear warm-up before either schedule
    patience: int = bounded(30, ge=0)  # early stopping on validation accuracy (the paper gives none)
    # the weights a run keeps and evaluates: "best" on validation (with early stopping), or
    # "last", the end of a fixed schedule (no early stopping, no selection on held-out data)
    select: Literal["best", "last"] = "best"
    # when the validation actors are scored: after every epoch (curves in metrics.csv, needed
    # by select=best), or only at the end (select=last; one pass instead of one per epoch)
    validate: Literal["epoch", "end"] = "epoch"
    # > 0: an exponential moving average of the weights (decay per optimiser step) is what
    # validation, early stopping and the saved checkpoints see; 0 (the paper): the raw weights
    ema_decay: float = bounded(0.0, ge=0, le=0.9999)
    # a fused model's audio / visual branch (stream + AVAM) starts from this finished
    # unimodal run of the same fold (a run directory; "{fold}" and "{seed}" are filled from
    # data.fold and train.seed); "" (the paper): random initialisation (branches.py)
    init_audio: str = ""
    init_visual: str = ""
    # the branches loaded from init_audio / init_visual stay as loaded (no gradient, eval
    # mode): their auxiliary heads are the unimodal networks, the fallback with a modality missing
    freeze_init: bool = False
    # finished unimodal runs of the same fold (placeholders as above) carried in this run
    # beside the fused network: with the other modality missing, they answer instead of the
    # fused network's AVAM heads (evaluate, robustness, predict); training is unchanged
    fallback_audio: str = ""
    fallback_visual: str = ""
    seed: int = bounded(42, ge=0, le=2**32 - 1)
    accelerator: str = "auto"
    devices: str = "auto"  # "auto", a count ("2") or a list ("0,1")
    num_nodes: int = bounded(1, ge=1)
    strategy: str = "auto"
    precision: str = "auto"  # "auto": 16-mixed on CUDA, 32-true elsewhere
    threads: int = bounded(0, ge=0)  # torch intra-op threads on CPU; 0 leaves PyTorch's default
    progress: bool = True

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class Config:
    name: str = "attsf"
    model: ATTSFConfig = field(default_factory=ATTSFConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.train_on == "train+val" and self.train.select == "best":
            raise ValueError("data.train_on=train+val trains on the validation speakers, so they cannot select "
                             "the weights: set train.select=last")
        if self.train.validate == "end" and self.train.select == "best":
            raise ValueError("train.validate=end scores the validation actors once, after training, so they cannot "
                             "select the weights: set train.select=last")
        inits = self.train.init_audio or self.train.init_visual
        if inits and self.model.modalities != "av":
            raise ValueError("train.init_audio / train.init_visual start a fused model's branches (model.modalities=av)")
        if (self.train.fallback_audio or self.train.fallback_visual) and self.model.modalities != "av":
            raise ValueError("train.fallback_audio / train.fallback_visual go with a fused model (model.modalities=av)")
        if self.train.freeze_init and not inits:
            raise ValueError("train.freeze_init needs train.init_audio or train.init_visual")

    def to_dict(self) -> dict:
        return _to_plain(self)


def ignored_keys(cfg: Config) -> list[str]:
    """Keys set away from their defaults that the other settings make do nothing."""
    t, d = cfg.train, TrainConfig()
    notes = []
    if t.select == "last" and t.patience != d.patience:
        notes.append(f"train.patience={t.patience} does nothing with train.select=last (no early stopping)")
    if t.schedule == "cosine":
        notes += [f"train.{k}={getattr(t, k)} does nothing with train.schedule=cosine"
                  for k in ("lr_decay", "lr_decay_every", "lr_decay_start") if getattr(t, k) != getattr(d, k)]
    return notes


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a field type, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = " | ".join(map(str, typing.get_args(tp)))
            raise AttsfError(f"config key '{key}': {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except AttsfError:
                continue
        raise AttsfError(f"config key '{key}': {value!r} has the wrong type")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise AttsfError(f"config key '{key}': expected a list, got {value!r}")
        return tuple(_coerce(v, typing.get_args(tp)[0], key) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise AttsfError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    if tp is type(None) and value is not None:
        raise AttsfError(f"config key '{key}': expected null, got {value!r}")
    return value


def _build(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise AttsfError(f"unknown config key '{full}'{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise AttsfError(f"config key '{full}': expected a mapping")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    for name, message in problems(cls, kwargs):
        raise AttsfError(f"config key '{prefix}{name}': {message}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise AttsfError(f"config section '{prefix.rstrip('.') or 'root'}': {exc}") from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AttsfError(f"override '{dotted}': '{part}' is not a section")
    node[leaf] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise AttsfError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def _read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping, with its ``base:`` (a packaged name or a path next to the
    file) read first and the file's own keys merged over it, section by section."""
    if not path.is_file():
        raise AttsfError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise AttsfError(f"{path}: not valid YAML{where}") from None
    if not isinstance(loaded, dict):
        raise AttsfError(f"{path}: a config must be a YAML mapping")
    parent = loaded.pop("base", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str) or not parent:
        raise AttsfError(f"{path}: 'base' names one config (a packaged name or a path)")
    local = path.parent / parent
    parent_path = local if local.suffix in (".yaml", ".yml") else resolve_config_path(parent)
    if parent_path.resolve() in seen or parent_path.resolve() == path.resolve():
        raise AttsfError(f"{path}: 'base: {parent}' leads back to itself")
    return _merge(_read_tree(parent_path, (*seen, path.resolve())), loaded)


def _merge(parent: dict, child: dict) -> dict:
    out = dict(parent)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Config:
    """Read a YAML config (or start from ``base`` / the defaults) and apply overrides. A
    file may start from another with ``base: NAME``; the config a run records is the
    resolved one."""
    tree: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        tree = _read_tree(path)
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value)
    try:
        return _build(Config, tree, "")
    except AttsfError as exc:
        if path is not None:
            raise AttsfError(f"{path}: {exc}") from None
        raise


def config_from_dict(tree: dict) -> Config:
    """A config from its ``to_dict()`` form (e.g. the one recorded in a result's provenance)."""
    return _build(Config, tree, "")


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """``cfg`` with dotted keys set to (already parsed) values, validated as a file's are."""
    tree = cfg.to_dict()
    for key, value in values.items():
        _set_dotted(tree, key, value)
    return config_from_dict(tree)


def resolve_config_path(name: str) -> Path:
    """A config path, or the name of a packaged config (``ravdess_au`` -> configs/ravdess_au.yaml)."""
    path = Path(name)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return path
    packaged = resources.files("attsf") / "configs" / f"{name}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    raise AttsfError(f"{name}: config file not found (give a path or a packaged name)")


def save_config(cfg: Config, path: Path) -> None:
    from attsf.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

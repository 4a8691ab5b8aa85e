"""Loading a finished run's weights, inference over a split, and classification metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from attsf.branches import BRANCHES, FALLBACK
from attsf.config import Config, load_config
from attsf.errors import AttsfError
from attsf.io import load_state, read_json
from attsf.model import WithFallbacks, build_model

CONFIG_FILE = "config.yaml"
MODEL_FILE = "checkpoints/model.safetensors"


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors checkpoint's model weights strictly (Lightning's ``model.`` prefix
    is removed)."""
    state = load_state(path)["state_dict"]
    state = {k.removeprefix("model."): v for k, v in state.items()}
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise AttsfError(f"{path}: weights hold non-finite values (NaN or inf, first in {bad}); the run diverged "
                         "and its answers would be garbage")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AttsfError(f"{path}: weights do not fit the model ({str(exc).splitlines()[0]})") from None


@dataclass
class Run:
    """A run directory opened for inference: its config, labels and best model."""

    root: Path
    cfg: Config
    labels: list[str]
    model: nn.Module


def require_run(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, or a clear error where it holds no run."""
    root = Path(run_dir)
    if not (root / CONFIG_FILE).is_file():
        raise AttsfError(f"{root}: not a run directory ({CONFIG_FILE} missing)")
    return root


def cv_runs(folder: str | Path) -> dict[str, Path]:
    """The finished runs of an ``attsf cv`` folder (``foldK`` or ``seedS/foldK``), keyed by
    that path; empty for any other folder."""
    from attsf.cv_results import finished_runs

    root = Path(folder)
    return finished_runs(root) if (root / "cv.json").is_file() else {}


def open_run(run_dir: str | Path, weights: str = MODEL_FILE, cache: str | Path | None = None) -> Run:
    """A run directory's config, labels and weights; ``cache`` replaces the recorded
    ``data.cache`` (a run copied to another machine, or a cache moved)."""
    root = require_run(run_dir)
    cfg = load_config(root / CONFIG_FILE, [f"data.cache={cache}"] if cache else None)
    path = root / weights
    if not path.is_file():
        raise AttsfError(f"{path}: no weights yet (has the run finished an epoch?)")
    side = read_json(path.with_suffix(".json"))
    labels = checked_labels(side, cfg, path)
    model = build_model(cfg.model)
    load_weights(model, path)
    return Run(root, cfg, labels, with_fallbacks(model, root).eval())


def checked_labels(side: dict, cfg: Config, weights: Path) -> list[str]:
    """The sidecar's class names, refused unless they are distinct non-empty strings, one
    per output of the network."""
    labels, where = side.get("labels"), weights.with_suffix(".json")
    if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
        raise AttsfError(f"{where}: 'labels' must be a list of class names (non-empty strings)")
    if len(set(labels)) != len(labels):
        raise AttsfError(f"{where}: 'labels' names a class twice ({', '.join(labels)})")
    if cfg.model.task == "classification" and len(labels) != cfg.model.n_classes:
        raise AttsfError(f"{where}: {len(labels)} labels for a network with {cfg.model.n_classes} outputs")
    return labels


def model_from_weights(path: str | Path) -> tuple[Config, dict, nn.Module]:
    """A safetensors weights file with its ``.json`` sidecar (config, labels): the config,
    the sidecar and the network with the weights loaded."""
    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: weights file not found")
    side = read_json(path.with_suffix(".json"))
    if "config" not in side or "labels" not in side:
        raise AttsfError(f"{path.with_suffix('.json')}: not an attsf checkpoint sidecar (config, labels missing)")
    cfg = load_config(base=side["config"])
    checked_labels(side, cfg, path)
    model = build_model(cfg.model)
    load_weights(model, path)
    return cfg, side, model


def with_fallbacks(model: nn.Module, root: Path) -> nn.Module:
    """The fused ``model`` with the unimodal networks a run carries beside it
    (``train.fallback_*``), or ``model`` itself where it carries none."""
    nets = {branch: model_from_weights(path)[2] for branch in BRANCHES
            if (path := root / FALLBACK.format(branch=branch)).is_file()}
    return WithFallbacks(model, nets.get("audio"), nets.get("visual")) if nets else model


@torch.inference_mode()
def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 32, device: str | torch.device = "cpu",
                    transform: Callable[[dict], dict] | None = None) -> dict[str, np.ndarray]:
    """Logits, labels and head features of every item, in dataset order; ``transform``
    (e.g. a robustness corruption) is applied to each batch before the model sees it."""
    model = model.to(device).eval()
    keep = ("logits", "logits_a_avam", "logits_v_avam", "logits_a_fallback", "logits_v_fallback", "features")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keep + ("label",)}
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = transform(batch) if transform is not None else batch
        res = model(audio=_to(batch.get("audio"), device), visual=_to(batch.get("visual"), device),
                    text=_to(batch.get("text"), device))
        for k in keep:
            if k in res:
                out[k].append(res[k].float().cpu().numpy())
        out["label"].append(batch["label"].numpy())
    return {k: np.concatenate(v) for k, v in out.items() if v}


def _to(x: torch.Tensor | None, device: str | torch.device) -> torch.Tensor | None:
    return None if x is None else x.to(device)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy (IEMOCAP's WA), per-class recall, macro F1, unweighted accuracy (mean
    per-class recall: IEMOCAP's UA), confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score  # here: predict starts faster

    idx = list(range(len(labels)))
    recall = recall_score(y_true, y_pred, labels=idx, average=None, zero_division=0)
    present = np.isin(idx, y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "unweighted_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "per_class_recall": {name: float(r) for name, r, p in zip(labels, recall, present) if p},
        "confusion": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "n": int(len(y_true)),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """CMU-MOSI's metrics of sentiment scores in [-3, 3]:

    * ``acc2_has0`` / ``f1_has0``: negative (< 0) vs non-negative (>= 0), every clip;
    * ``acc2_non0`` / ``f1_non0``: negative vs positive, clips whose true score is 0 left out;
    * ``acc7``: scores rounded and clipped to the 7 integers -3..3;
    * ``mae`` and Pearson ``corr``. F1 is weighted over the two classes (scikit-learn).
    """
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error
    from torchmetrics.functional import pearson_corrcoef

    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    nonzero = y_true != 0
    seven = lambda y: np.clip(np.round(y), -3, 3)  # noqa: E731
    corr = pearson_corrcoef(torch.from_numpy(y_pred), torch.from_numpy(y_true)).item() if len(y_true) > 1 else 0.0
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "corr": float(np.nan_to_num(corr)),
        "acc7": float(accuracy_score(seven(y_true), seven(y_pred))),
        "acc2_has0": float(accuracy_score(y_true >= 0, y_pred >= 0)),
        "f1_has0": float(f1_score(y_true >= 0, y_pred >= 0, average="weighted", zero_division=0)),
        "acc2_non0": float(accuracy_score(y_true[nonzero] > 0, y_pred[nonzero] > 0)) if nonzero.any() else 0.0,
        "f1_non0": (float(f1_score(y_true[nonzero] > 0, y_pred[nonzero] > 0, average="weighted", zero_division=0))
                    if nonzero.any() else 0.0),
        "n": int(len(y_true)),
    }


def metrics_for(pred: dict[str, np.ndarray], labels: list[str], regression: bool) -> dict:
    if regression:
        return regression_metrics(pred["label"], pred["logits"][:, 0])
    from sklearn.metrics import accuracy_score

    result = classification_metrics(pred["label"], pred["logits"].argmax(1), labels)
    for head in ("a_avam", "v_avam", "a_fallback", "v_fallback"):  # the AVAM heads; the fallback networks
        if f"logits_{head}" in pred:
            result[f"accuracy_{head}"] = float(accuracy_score(pred["label"], pred[f"logits_{head}"].argmax(1)))
    return result

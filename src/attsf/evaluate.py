"""Loading a finished run's weights, inference over a split, and classification metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from attsf.config import Config, load_config
from attsf.errors import AttsfError
from attsf.io import load_state, read_json
from attsf.model import build_model

CONFIG_FILE = "config.yaml"
BEST = "checkpoints/best.safetensors"


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors checkpoint's model weights strictly (Lightning's ``model.`` prefix
    is removed)."""
    state = load_state(path)["state_dict"]
    state = {k.removeprefix("model."): v for k, v in state.items()}
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


def open_run(run_dir: str | Path, weights: str = BEST) -> Run:
    root = Path(run_dir)
    if not (root / CONFIG_FILE).is_file():
        raise AttsfError(f"{root}: not a run directory ({CONFIG_FILE} missing)")
    cfg = load_config(root / CONFIG_FILE)
    path = root / weights
    if not path.is_file():
        raise AttsfError(f"{path}: no weights yet (has the run finished an epoch?)")
    side = read_json(path.with_suffix(".json"))
    model = build_model(cfg.model)
    load_weights(model, path)
    return Run(root, cfg, list(side["labels"]), model.eval())


@torch.inference_mode()
def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 32,
                    device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Logits, labels and head features of every item, in dataset order."""
    model = model.to(device).eval()
    keep = ("logits", "logits_a", "logits_v", "features")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keep + ("label",)}
    for batch in DataLoader(dataset, batch_size=batch_size):
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
    """Accuracy, per-class recall, macro F1, unweighted accuracy (mean recall), confusion."""
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
    return {"mae": float(np.abs(y_true - y_pred).mean()), "n": int(len(y_true))}


def metrics_for(pred: dict[str, np.ndarray], labels: list[str], regression: bool) -> dict:
    if regression:
        return regression_metrics(pred["label"], pred["logits"][:, 0])
    result = classification_metrics(pred["label"], pred["logits"].argmax(1), labels)
    for head in ("a", "v"):
        if f"logits_{head}" in pred:
            result[f"accuracy_{head}_head"] = float(accuracy_score(pred["label"], pred[f"logits_{head}"].argmax(1)))
    return result

"""``attsf export RUN --name NAME``: a finished run's kept weights as a model to share.

Writes ``NAME.safetensors`` (the weights, as the run keeps them), ``NAME.md`` (the card as a
page, as on a model hub) and ``NAME.json``: the
run's sidecar (config, labels, preprocessing with the training speakers' statistics) with
a ``card``: what the model is and is for (``--about``, a YAML file: ``title``,
``intended_use``, ``limitations``, ``licence``, ``training_command``, ...) and its
evaluation, measured here on the run's held-out test speakers, normalised with their own
statistics (``own_speaker``, as with several clips of a speaker) and as new speakers
(``new_speaker``, one clip of a stranger). ``attsf predict --run NAME.safetensors`` and
``EmotionRecognizer.from_pretrained`` read it; packaged models live in ``attsf/pretrained``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from attsf.card import card_markdown, model_card
from attsf.errors import AttsfError
from attsf.evaluate import MODEL_FILE
from attsf.io import atomic_write_bytes, atomic_write_text, read_json, write_json

PRETRAINED = "pretrained"  # the package folder of packaged models
ENROLMENT_CLIPS, ENROLMENT_DRAWS = (1, 3, 5, 10, 20), 5  # the card's accuracy against clips of the speaker


def packaged_model(name: str) -> Path | None:
    """The weights of the packaged model ``name`` (e.g. ``ravdess-speech``), or None."""
    path = Path(str(resources.files("attsf") / PRETRAINED / f"{name}.safetensors"))
    return path if path.is_file() else None


def packaged_models() -> list[str]:
    """The names of the packaged models."""
    return sorted(p.stem for p in Path(str(resources.files("attsf") / PRETRAINED)).glob("*.safetensors"))


def _scores(test: dict) -> dict:
    return {"accuracy": round(100 * test["accuracy"], 2),
            "unweighted_accuracy": round(100 * test["unweighted_accuracy"], 2)}


def evaluation(run_dir: Path) -> dict:
    """The run's test figures in % (own-speaker, and new-speaker for a run trained with
    speaker normalisation), with the clips and speakers they were measured on."""
    from attsf.config import load_config
    from attsf.data.datamodule import ClipDataModule
    from attsf.train import evaluate_run

    metrics = read_json(run_dir / "metrics.json")
    cfg = load_config(run_dir / "config.yaml")
    if cfg.model.task == "regression":
        raise AttsfError(f"{run_dir}: a regression run (model.task=regression, e.g. CMU-MOSI sentiment) cannot be "
                         "exported: a card and attsf predict answer with emotion classes")
    splits = ClipDataModule(cfg).splits  # the speakers in the cache (a fold file may list more)
    speakers = {s: sorted({r.speaker for r in records}) for s, records in splits.items()}
    result = {"split": "test", "clips": metrics["test"]["n"], "speakers": speakers["test"],
              "training_speakers": speakers["train"],  # with data.train_on=train+val, val's too
              "normalization": cfg.data.normalize}
    if cfg.data.normalize == "speaker":
        from attsf.enrolment import enrolment_curve

        result["own_speaker"] = _scores(metrics["test"])
        result["new_speaker"] = _scores(evaluate_run(run_dir, ("test",), new_speakers=True)["test"])
        curve = enrolment_curve(run_dir, list(ENROLMENT_CLIPS), ENROLMENT_DRAWS)
        result["enrolment"] = {"draws": ENROLMENT_DRAWS,
                               "accuracy": {str(n): round(float(np.mean(a)), 2) for n, a in curve.items()}}
    else:
        result["new_speaker"] = _scores(metrics["test"])
    return result


def _prior_clips(run_dir: Path) -> dict[str, list[float]]:
    """The enrolment prior of a run's training speakers (``normalize.prior_clips``), as training records it now."""
    from attsf.config import load_config
    from attsf.data.datamodule import ClipDataModule

    dm = ClipDataModule(load_config(run_dir / "config.yaml"))
    return dm.normalization()["prior_clips"]


def export_model(run_dir: str | Path, out_dir: str | Path, name: str, about: str | Path | None = None) -> Path:
    """``out_dir/name.safetensors`` and its sidecar with the card; returns the weights' path."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "metrics.json").is_file():
        raise AttsfError(f"{run_dir}: not a finished run (no metrics.json); only a finished run can be exported")
    info = {}
    if about:
        try:
            info = yaml.safe_load(Path(about).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AttsfError(f"{about}: cannot read the card's text: {exc}") from None
        if not isinstance(info, dict):
            raise AttsfError(f"{about}: expected a mapping of card fields (title, intended_use, ...)")
    weights = run_dir / MODEL_FILE
    side = read_json(weights.with_suffix(".json"))
    if side.get("config", {}).get("model", {}).get("modalities") == "a":  # its cache's visual input is not its own
        side["preprocessing"]["visual"] = {"kind": "none"}
    norm = side["preprocessing"].get("normalization") or {}
    if norm.get("kind") == "speaker" and "prior_clips" not in norm:  # trained before enrolment had a prior
        norm["prior_clips"] = _prior_clips(run_dir)
    side["card"] = {"title": info.pop("title", name), **info, "evaluation": evaluation(run_dir),
                    "commit": read_json(run_dir / "metrics.json").get("provenance", {}).get("code", {}).get("commit")}
    target = out_dir / f"{name}.safetensors"
    atomic_write_bytes(target, weights.read_bytes())
    write_json(target.with_suffix(".json"), side)
    atomic_write_text(target.with_suffix(".md"), card_markdown(model_card(target, side)))
    return target

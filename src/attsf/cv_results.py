"""Summaries of cross-validation runs: mean ± std over folds (and seeds) of their
``metrics.json``, written as ``cv.json`` and ``cv.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attsf.io import atomic_write_text, write_json


def val_trained_on(metrics: dict) -> bool:
    """Whether a run's ``metrics.json`` records ``data.train_on=train+val``: its val actors
    were trained on, not held out."""
    return metrics.get("provenance", {}).get("config", {}).get("data", {}).get("train_on") == "train+val"


def run_provenance(metrics: dict) -> dict:
    """A run's own provenance without its config (the study's, but for fold and seed): the
    code, cache, seed, threads and devices it ran with, which ``attsf verify`` re-runs with."""
    prov = metrics.get("provenance", {})
    fold = prov.get("config", {}).get("data", {}).get("fold")
    return {"fold": fold, **{k: v for k, v in prov.items() if k != "config"}}


def cv_summary(results: dict[int, dict]) -> dict:
    """Test accuracy (per fold, mean, std), UA and mean per-class recall, in %, of finished
    folds' ``metrics.json`` contents keyed by fold number; for a fused model also the mean
    accuracy of each AVAM head alone (``avam_accuracy_mean``) and, with ``train.fallback_*``,
    of each fallback network (``fallback_accuracy_mean``): what the model answers when the
    other modality is missing, as ``attsf predict`` does."""
    acc = np.array([m["test"]["accuracy"] for m in results.values()]) * 100
    uacc = np.array([m["test"]["unweighted_accuracy"] for m in results.values()]) * 100
    labels = list(next(iter(results.values()))["test"]["per_class_recall"])
    recall = {c: float(np.mean([m["test"]["per_class_recall"].get(c, np.nan) for m in results.values()]) * 100)
              for c in labels}
    summary = {
        "folds": {str(k): {"test_accuracy": m["test"]["accuracy"] * 100, "val_accuracy": m["val"]["accuracy"] * 100,
                           "epochs": m["epochs"], "selected_epoch": m["selected_epoch"],
                           "commit": m.get("provenance", {}).get("code", {}).get("commit"),
                           "provenance": run_provenance(m)}
                  for k, m in results.items()},
        "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
        "unweighted_accuracy_mean": float(uacc.mean()), "per_class_recall_mean": recall,
    }
    if any(val_trained_on(m) for m in results.values()):
        summary["val_trained_on"] = True
    for out, suffix in (("avam_accuracy_mean", "avam"), ("fallback_accuracy_mean", "fallback")):
        heads = {name: [m["test"][f"accuracy_{h}_{suffix}"] * 100 for m in results.values()
                        if f"accuracy_{h}_{suffix}" in m["test"]] for name, h in (("audio", "a"), ("visual", "v"))}
        if all(len(v) == len(results) for v in heads.values()):
            summary[out] = {name: float(np.mean(v)) for name, v in heads.items()}
    return summary


def seeds_summary(per_seed: dict[int, dict[int, dict]]) -> dict:
    """``cv_summary`` over every (seed, fold) run, with each seed's own summary under ``seeds``
    and the spread of the per-seed means."""
    runs = {f"seed{s}/fold{k}": m for s, res in per_seed.items() for k, m in res.items()}
    summary = cv_summary(runs)
    summary["seeds"] = {str(s): cv_summary(res) for s, res in per_seed.items()}
    means = np.array([v["accuracy_mean"] for v in summary["seeds"].values()])
    summary["seed_means_std"] = float(means.std())
    return summary


def evaluations_summary(evals: dict[str, dict], split: str, new_speakers: bool) -> dict:
    """Mean ± std (in %) over the runs of a cv folder of ``attsf evaluate``'s figures on one
    split, with each run's: the new-speaker column of a cv's results."""
    per_run = {k: {m: v * 100 for m, v in e[split].items() if m in ("accuracy", "unweighted_accuracy", "macro_f1")}
               for k, e in evals.items()}
    acc = np.array([r["accuracy"] for r in per_run.values()])
    return {"split": split,
            "setting": "new speakers: each speaker normalised with the training speakers' pooled statistics"
            if new_speakers else "the runs' own normalisation",
            "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
            "unweighted_accuracy_mean": float(np.mean([r["unweighted_accuracy"] for r in per_run.values()])),
            "runs": per_run}


def cv_markdown(summary: dict) -> str:
    val = "val acc % (actors trained on)" if summary.get("val_trained_on") else "val acc %"
    lines = [f"| run | test acc % | {val} | epochs | evaluated epoch |", "| --- | --- | --- | --- | --- |"]
    for k, f in summary["folds"].items():
        lines.append(f"| {k} | {f['test_accuracy']:.2f} | {f['val_accuracy']:.2f} | {f['epochs']} | {f['selected_epoch']} |")
    lines.append(f"| mean ± std | {summary['accuracy_mean']:.2f} ± {summary['accuracy_std']:.2f} | | | |")
    if "avam_accuracy_mean" in summary:
        heads = summary["avam_accuracy_mean"]
        lines += ["", f"Each AVAM head alone: audio {heads['audio']:.2f} %, visual {heads['visual']:.2f} %"]
    if "fallback_accuracy_mean" in summary:
        heads = summary["fallback_accuracy_mean"]
        lines += ["", f"The fallback networks (the answer when the other modality is missing): audio "
                      f"{heads['audio']:.2f} %, visual {heads['visual']:.2f} %"]
    if "seeds" in summary:
        lines += ["", "| seed | test acc % (mean ± std over folds) |", "| --- | --- |"]
        lines += [f"| {s} | {v['accuracy_mean']:.2f} ± {v['accuracy_std']:.2f} |" for s, v in summary["seeds"].items()]
    lines += ["", "| class | mean recall % |", "| --- | --- |"]
    lines += [f"| {c} | {r:.1f} |" for c, r in summary["per_class_recall_mean"].items()]
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, summary: dict, prov: dict | None) -> dict:
    if prov is not None:
        summary["provenance"] = prov
    write_json(out_dir / "cv.json", summary)
    atomic_write_text(out_dir / "cv.md", cv_markdown(summary))
    return summary


def summarise_cv(out_dir: Path, results: dict[int, dict], prov: dict | None = None) -> dict:
    """``cv_summary`` (with the provenance of the call) written to ``cv.json`` and ``cv.md``."""
    return _write(out_dir, cv_summary(results), prov)


def summarise_seeds(out_dir: Path, per_seed: dict[int, dict[int, dict]], prov: dict | None = None) -> dict:
    """``seeds_summary`` written to ``out_dir``, and each seed folder summarised as a cv
    folder of its own (``attsf report`` works on it)."""
    for s, res in per_seed.items():
        summarise_cv(out_dir / f"seed{s}", res, prov)
    return _write(out_dir, seeds_summary(per_seed), prov)

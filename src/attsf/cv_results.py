"""Summaries of cross-validation runs: mean ± std over folds (and seeds) of their
``metrics.json``, written as ``cv.json`` and ``cv.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attsf.io import atomic_write_text, write_json


def finished_runs(folder: Path) -> dict[str, Path]:
    """The finished runs of a cross-validation folder, ``foldK`` or ``seedS/foldK`` (``attsf
    cv --seeds``), keyed by that path, in seed and fold order."""
    done = [p.parent for p in [*folder.glob("fold*/metrics.json"), *folder.glob("seed*/fold*/metrics.json")]]

    def numbers(run: Path) -> list[int]:  # fold10 after fold9
        return [int(part.removeprefix("seed").removeprefix("fold")) for part in run.relative_to(folder).parts]

    return {run.relative_to(folder).as_posix(): run for run in sorted(done, key=numbers)}


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


REGRESSION_FIGURES = ("mae", "corr", "acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "acc7")
FIGURE_NAMES = {"accuracy": "accuracy", "mae": "MAE", "corr": "r", "acc2_non0": "Acc-2 (non-0)",
                "f1_non0": "F1 (non-0)", "acc2_has0": "Acc-2 (has-0)", "f1_has0": "F1 (has-0)", "acc7": "Acc-7"}


def headline(split: dict) -> str:
    """The figure a split's metrics are summarised by: accuracy, or a regression's MAE."""
    return "accuracy" if "accuracy" in split else "mae"


def figures(split: dict) -> dict[str, float]:
    """A split's figures as summaries keep them: accuracy in %; for a regression (CMU-MOSI)
    MAE and Pearson r as they are, the binary and 7-class accuracies and F1 in %."""
    if "accuracy" in split:
        return {"accuracy": split["accuracy"] * 100}
    return {k: split[k] * (1 if k in ("mae", "corr") else 100) for k in REGRESSION_FIGURES}


def figure_text(name: str, value: float) -> str:
    """``accuracy 84.17 %``, ``MAE 0.934``."""
    return f"{FIGURE_NAMES[name]} {value:.3f}" if name in ("mae", "corr") else f"{FIGURE_NAMES[name]} {value:.2f} %"


def summary_headline(summary: dict) -> str:
    return "accuracy" if "accuracy_mean" in summary else "mae"


def mean_text(summary: dict) -> str:
    """``accuracy 84.17 ± 2.53 %``, ``MAE 0.934 ± 0.012``: a summary's headline figure."""
    key = summary_headline(summary)
    mean, std = summary[f"{key}_mean"], summary[f"{key}_std"]
    return f"MAE {mean:.3f} ± {std:.3f}" if key == "mae" else f"accuracy {mean:.2f} ± {std:.2f} %"


def cv_summary(results: dict[int, dict]) -> dict:
    """Per fold and as mean and std over the folds' ``metrics.json`` contents (keyed by
    fold): test accuracy, UA and mean per-class recall in % (for a regression: MAE, r,
    Acc-2, F1, Acc-7), and the validation figure; for a fused model also the mean accuracy
    of each AVAM head alone (``avam_accuracy_mean``) and, with ``train.fallback_*``, of each
    fallback network (``fallback_accuracy_mean``): what the model answers when the other
    modality is missing, as ``attsf predict`` does."""
    key = headline(next(iter(results.values()))["test"])
    test = {k: figures(m["test"]) for k, m in results.items()}
    summary: dict = {
        "folds": {str(k): {**{f"test_{n}": v for n, v in test[k].items()}, f"val_{key}": figures(m["val"])[key],
                           "epochs": m["epochs"], "selected_epoch": m["selected_epoch"],
                           "commit": m.get("provenance", {}).get("code", {}).get("commit"),
                           "provenance": run_provenance(m)}
                  for k, m in results.items()},
    }
    for name in next(iter(test.values())):
        values = np.array([t[name] for t in test.values()])
        summary[f"{name}_mean"], summary[f"{name}_std"] = float(values.mean()), float(values.std())
    if key == "accuracy":
        labels = list(next(iter(results.values()))["test"]["per_class_recall"])
        summary["unweighted_accuracy_mean"] = float(np.mean([m["test"]["unweighted_accuracy"]
                                                             for m in results.values()]) * 100)
        summary["per_class_recall_mean"] = {
            c: float(np.mean([m["test"]["per_class_recall"].get(c, np.nan) for m in results.values()]) * 100)
            for c in labels}
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
    and the spread of the per-seed means (of accuracy, or of a regression's MAE)."""
    runs = {f"seed{s}/fold{k}": m for s, res in per_seed.items() for k, m in res.items()}
    summary = cv_summary(runs)
    summary["seeds"] = {str(s): cv_summary(res) for s, res in per_seed.items()}
    key = summary_headline(summary)
    means = np.array([v[f"{key}_mean"] for v in summary["seeds"].values()])
    summary["seed_means_std"] = float(means.std())
    return summary


def evaluations_summary(evals: dict[str, dict], split: str, new_speakers: bool) -> dict:
    """Mean ± std over the runs of a cv folder of ``attsf evaluate``'s figures on one
    split (in %, a regression's MAE and r as they are), with each run's: the new-speaker
    column of a cv's results."""
    if "accuracy" in next(iter(evals.values()))[split]:
        keep = ("accuracy", "unweighted_accuracy", "macro_f1")
        per_run = {k: {m: v * 100 for m, v in e[split].items() if m in keep} for k, e in evals.items()}
        means = ("accuracy",)
    else:
        per_run = {k: figures(e[split]) for k, e in evals.items()}
        means = REGRESSION_FIGURES
    summary: dict = {"split": split,
                     "setting": "new speakers: each speaker normalised with the training speakers' pooled statistics"
                     if new_speakers else "the runs' own normalisation"}
    for name in means:
        values = np.array([r[name] for r in per_run.values()])
        summary[f"{name}_mean"], summary[f"{name}_std"] = float(values.mean()), float(values.std())
    if "accuracy" in means:
        summary["unweighted_accuracy_mean"] = float(np.mean([r["unweighted_accuracy"] for r in per_run.values()]))
    return {**summary, "runs": per_run}


def cv_markdown(summary: dict) -> str:
    key = summary_headline(summary)
    names = [n for n in ("accuracy", *REGRESSION_FIGURES) if f"{n}_mean" in summary]
    short = lambda n: "acc %" if n == "accuracy" else FIGURE_NAMES[n] + ("" if n in ("mae", "corr") else " %")  # noqa: E731
    val = f"val {short(key)}" + (" (actors trained on)" if summary.get("val_trained_on") else "")
    cols = [f"test {short(n)}" for n in names]
    fmt = lambda n, v: f"{v:.3f}" if n in ("mae", "corr") else f"{v:.2f}"  # noqa: E731
    lines = [f"| run | {' | '.join(cols)} | {val} | epochs | evaluated epoch |",
             "| --- |" + " --- |" * (len(cols) + 3)]
    for k, f in summary["folds"].items():
        lines.append(f"| {k} | {' | '.join(fmt(n, f[f'test_{n}']) for n in names)} | {fmt(key, f[f'val_{key}'])} | "
                     f"{f['epochs']} | {f['selected_epoch']} |")
    means = " | ".join(f"{fmt(n, summary[f'{n}_mean'])} ± {fmt(n, summary[f'{n}_std'])}" for n in names)
    lines.append(f"| mean ± std | {means} | | | |")
    if "avam_accuracy_mean" in summary:
        heads = summary["avam_accuracy_mean"]
        lines += ["", f"Each AVAM head alone: audio {heads['audio']:.2f} %, visual {heads['visual']:.2f} %"]
    if "fallback_accuracy_mean" in summary:
        heads = summary["fallback_accuracy_mean"]
        lines += ["", f"The fallback networks (the answer when the other modality is missing): audio "
                      f"{heads['audio']:.2f} %, visual {heads['visual']:.2f} %"]
    if "seeds" in summary:
        lines += ["", f"| seed | test {short(key)} (mean ± std over folds) |", "| --- | --- |"]
        lines += [f"| {s} | {fmt(key, v[f'{key}_mean'])} ± {fmt(key, v[f'{key}_std'])} |"
                  for s, v in summary["seeds"].items()]
    if "per_class_recall_mean" in summary:
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

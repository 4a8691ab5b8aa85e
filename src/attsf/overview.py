"""``attsf report OUT`` on an experiment or cross-validation folder: one offline HTML page.

For an ``attsf experiment`` folder: every experiment table found there (variants,
ablations, replacements) next to the paper's figures, with a bar chart each; the
robustness curves averaged over folds beside the paper's Table V; and per model the
confusion matrix pooled over its folds, the mean per-class recall and the training curves
of every fold. For an ``attsf cv``
folder: its folds, pooled confusion matrix, per-class recall and mean robustness. The
per-model parts use every finished fold in the model's folder; each table uses the folds
its experiment ran.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from attsf.cv_results import cv_summary, finished_runs, val_trained_on
from attsf.errors import AttsfError
from attsf.experiments import EXPERIMENTS, PAPER_FRACTIONS, Row
from attsf.io import read_json
from attsf.report import confusion_figure, epoch_series, html_img, html_table, provenance_section, save_figure, write_page
from attsf.robustness import mean_robustness

log = logging.getLogger("attsf")


def _folds(cv_dir: Path) -> list[Path]:
    """The finished runs of a model's folder (``foldK``, or ``seedS/foldK`` of ``attsf cv
    --seeds``), by seed and fold number."""
    return list(finished_runs(cv_dir).values())


def _run_name(run: Path) -> str:
    return f"{run.parent.name}/{run.name}" if run.parent.name.startswith("seed") else run.name


def fold_summary(cv_dir: Path) -> dict:
    """``cv_summary`` of the finished folds of a model's folder."""
    return cv_summary({(int(k[4:]) if "/" not in k else k): read_json(f / "metrics.json")
                       for k, f in finished_runs(cv_dir).items()})


def pooled_confusion(cv_dir: Path) -> tuple[list[list[int]], list[str]]:
    """The test confusion matrices of every finished fold, summed."""
    metrics = [read_json(f / "metrics.json")["test"] for f in _folds(cv_dir)]
    return np.sum([m["confusion"] for m in metrics], axis=0).tolist(), list(metrics[0]["per_class_recall"])


def fold_robustness(cv_dir: Path) -> dict | None:
    """The mean robustness over the folds, when every fold has one with the same settings."""
    paths = [f / "robustness.json" for f in _folds(cv_dir)]
    if not all(p.is_file() for p in paths):
        return None
    results = [read_json(p) for p in paths]
    keys = ("fractions", "snr_db", "seed")
    if any(r.get(k) != results[0].get(k) for r in results for k in keys):
        return None
    return mean_robustness(results)


def accuracy_figure(title: str, rows: list[Row], summaries: dict[str, dict]) -> Figure:
    names = [r.name for r in rows][::-1]
    ours = [summaries[r.slug]["accuracy_mean"] for r in rows][::-1]
    std = [summaries[r.slug]["accuracy_std"] for r in rows][::-1]
    paper = [r.paper or np.nan for r in rows][::-1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.55 * len(rows)))
    ax.barh(y + 0.2, ours, 0.4, xerr=std, label="ours (mean ± std over folds)", color="tab:blue")
    ax.barh(y - 0.2, paper, 0.4, label="paper (RAVDESS)", color="tab:gray")
    ax.set_yticks(y, names)
    ax.set_xlabel("test accuracy %")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return fig


def robustness_comparison_figure(means: list[tuple[Row, dict]]) -> Figure:
    """Masked-audio and masked-visual curves of each model (solid) beside Table V (dashed),
    and the noisy-audio curve where it was measured."""
    noise = any("noise" in m for _, m in means)
    fig, axes = plt.subplots(1, 3 if noise else 2, figsize=(14 if noise else 10, 4), sharey=True)
    cmap = plt.get_cmap("tab10")
    for i, (row, mean) in enumerate(means):
        clean = 100 * mean["clean"]
        for ax, m in zip(axes, ("audio", "visual")):
            if m in mean["masked"]:
                ax.plot([0.0, *mean["fractions"]], [clean, *(100 * np.array(mean["masked"][m]))], marker="o",
                        color=cmap(i), label=row.name)
            if m in row.paper_masked:
                ax.plot([0.0, *PAPER_FRACTIONS], [row.paper, *row.paper_masked[m]], ls="--", color=cmap(i),
                        label=f"paper {row.name}")
        if "noise" in mean:
            snrs = ["clean", *(f"{s:g} dB" for s in mean["snr_db"])]
            axes[2].plot(snrs, [clean, *(100 * np.array(mean["noise"]["audio"]))], marker="o", color=cmap(i),
                         label=row.name)
    for ax, m in zip(axes, ("audio", "visual")):
        ax.set_title(f"{m} masked")
        ax.set_xlabel("fraction r replaced by noise (0: clean)")
    if noise:
        axes[2].set_title("white noise on the audio (not in the paper)")
        axes[2].set_xlabel("signal-to-noise ratio")
    axes[0].set_ylabel("test accuracy % (mean over folds)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fold_curves_figure(models: list[tuple[str, list[Path]]]) -> Figure:
    """Train and validation accuracy per epoch of every fold, one panel per model, with each
    fold's evaluated epoch (best on validation, or the last with ``train.select=last``)
    marked and chance drawn; a model whose folds trained on their val actors says so."""
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (name, folds) in zip(axes.flat, models):
        n_classes, refit = None, False
        for i, fold in enumerate(folds):
            series = epoch_series(fold / "metrics.csv") if (fold / "metrics.csv").is_file() else {}
            for key, style in (("val_acc", "-"), ("train_acc", ":")):
                if key in series:
                    ax.plot(list(series[key]), 100 * np.array(list(series[key].values())), style, color=cmap(i),
                            label=f"{_run_name(fold)} {key.split('_')[0]}" if key == "val_acc" or i == 0 else None)
            metrics = read_json(fold / "metrics.json") if (fold / "metrics.json").is_file() else {}
            best = metrics["selected_epoch"] + 1 if metrics.get("selected_epoch") is not None else None  # counted from 1
            if best in series.get("val_acc", {}):
                ax.plot([best], [100 * series["val_acc"][best]], "o", color=cmap(i), mfc="none",
                        label="evaluated epoch" if i == 0 else None)
            refit |= val_trained_on(metrics)
            n_classes = n_classes or len(metrics.get("test", {}).get("per_class_recall", {})) or None
        if n_classes:
            ax.axhline(100 / n_classes, color="grey", ls="--", lw=1, label=f"chance ({100 / n_classes:.1f} %)")
        ax.set_title(f"{name} (val actors trained on)" if refit else name, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy % (solid: val, dotted: train)")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def _accuracy_rows(rows: list[Row], summaries: dict[str, dict]) -> list[list]:
    return [[r.name, f"{summaries[r.slug]['accuracy_mean']:.2f} ± {summaries[r.slug]['accuracy_std']:.2f}",
             ", ".join(f"{f['test_accuracy']:.1f}" for f in summaries[r.slug]["folds"].values()),
             f"{r.paper:.2f}" if r.paper else "—"] for r in rows]


def _robustness_rows(means: list[tuple[Row, dict]]) -> tuple[list[str], list[list]]:
    fractions = means[0][1]["fractions"]
    head = ["model (masked)", "folds", "clean", *(f"r={r:.1f}" for r in fractions), "missing",
            "missing, the other head answers"]
    rows = []
    for row, mean in means:
        for m, values in mean["masked"].items():
            fallback = mean.get("fallback", {}).get(m)
            rows.append([f"{row.name} ({m})", mean["n_folds"], f"{100 * mean['clean']:.2f}",
                         *(f"{100 * v:.2f}" for v in values), f"{100 * mean['missing'][m]:.2f}",
                         "—" if fallback is None else f"{100 * fallback:.2f}"])
            if m in row.paper_masked:
                rows.append([f"paper {row.name} ({m})", "", f"{row.paper:.2f}",
                             *(f"{row.paper_masked[m][PAPER_FRACTIONS.index(r)]:.2f}" if r in PAPER_FRACTIONS
                               else "—" for r in fractions), "—", "—"])
    return head, rows


def build_overview(out_dir: str | Path) -> Path:
    """``OUT/report.html`` (and its figures under ``OUT/figures/``) for an experiment or CV folder."""
    root = Path(out_dir)
    rows: dict[str, Row] = {}
    for exp_rows in EXPERIMENTS.values():  # the first definition of a row carries its Table V figures
        for r in exp_rows:
            rows.setdefault(r.slug, r)
    if _folds(root):  # a plain `attsf cv` folder: one model
        models = {(row := Row(root.name)).slug: (row, root)}
    else:
        models = {slug: (row, root / slug) for slug, row in rows.items() if _folds(root / slug)}
    if not models:
        raise AttsfError(f"{root}: no finished fold here or in its model folders; run `attsf cv` or "
                         "`attsf experiment` first")
    folds = {slug: fold_summary(d) for slug, (_, d) in models.items()}
    log.info("report of %s: %d model(s), %d finished run(s)", root, len(models),
             sum(len(f["folds"]) for f in folds.values()))
    folder = root / "figures"
    figures: dict[str, bytes] = {}
    parts = [f"<h1>attsf report: {html.escape(root.name)}</h1>", f"<p>Folder <code>{html.escape(str(root))}</code>; "
             "test accuracy of each fold's evaluated weights (its best validation epoch, or its last epoch "
             "with <code>train.select=last</code>).</p>"]
    head = ["model", "ours % (mean ± std)", "per fold", "paper % (RAVDESS)"]
    for name, exp_rows in EXPERIMENTS.items():
        if name == "robustness" or not (root / f"{name}.json").is_file():
            continue
        summaries = read_json(root / f"{name}.json")  # the folds this experiment ran
        present = [r for r in exp_rows if r.slug in summaries]
        figures[name] = save_figure(accuracy_figure(name, present, summaries), folder, name)
        parts.append(f"<h2>{name}</h2>" + html_table(head, _accuracy_rows(present, summaries))
                     + html_img(figures[name], name))
    if len(models) == 1:
        row = next(iter(models.values()))[0]
        parts.append("<h2>Cross-validation</h2>" + html_table(head, _accuracy_rows([row], folds)))
    means = [(row, mean) for row, d in models.values() if (mean := fold_robustness(d))]
    if means:
        figures["robustness"] = save_figure(robustness_comparison_figure(means), folder, "robustness")
        rhead, rrows = _robustness_rows(means)
        parts.append("<h2>Robustness: test accuracy % with a fraction r of one modality replaced by noise "
                     "(mean over folds)</h2>" + html_table(rhead, rrows) + html_img(figures["robustness"], "robustness"))
    labels = list(next(iter(folds.values()))["per_class_recall_mean"])
    parts.append("<h2>Per-class recall % (mean over each model's finished folds)</h2>" + html_table(
        ["model", "folds", *labels], [[row.name, len(folds[slug]["folds"]),
                                       *(f"{folds[slug]['per_class_recall_mean'][c]:.1f}" for c in labels)]
                                      for slug, (row, _) in models.items()]))
    figures["curves"] = save_figure(fold_curves_figure([(row.name, _folds(d)) for row, d in models.values()]), folder,
                                    "curves")
    parts.append("<h2>Training curves of every fold</h2>" + html_img(figures["curves"], "training curves"))
    parts.append("<h2>Confusion matrices pooled over each model's finished folds</h2>")
    for slug, (row, d) in models.items():
        confusion, names = pooled_confusion(d)
        figures[f"confusion_{slug}"] = save_figure(confusion_figure(confusion, names), folder, f"confusion_{slug}")
        parts.append(f"<h3>{html.escape(row.name)}</h3>" + html_img(figures[f"confusion_{slug}"], row.name))
    if len(models) == 1:
        parts.append(provenance_section(next(iter(models.values()))[1] / "cv.json"))
    log.info("report: %d figures -> %s/ (PNG, SVG, PDF)", len(figures), folder)
    return write_page(root / "report.html", parts)

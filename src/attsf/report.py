"""``attsf report RUN_DIR``: the figures a paper would show for one run, and one
self-contained HTML page (images embedded) that opens offline.

Figures (PNG in the page; PNG, SVG and PDF under ``figures/``): normalised confusion
matrix, t-SNE of the features the classifier reads, coloured by class, training curves,
robustness curves (when ``attsf robustness`` has run), and for a fused network the paper's
Fig. 4 kind of table: test clips where both unimodal heads are wrong and the fusion is
right, and the reverse. The page also shows the run's settings that differ from the
defaults, its whole config, and its provenance; a demo run carries the demo's warning.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from attsf.io import atomic_write_bytes, atomic_write_text  # noqa: E402

log = logging.getLogger("attsf")
DPI = 150  # print quality
# the page embeds the PNG; SVG and PDF are for papers. No dates inside: a file changes with its content only
FORMATS = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_figure(fig: Figure, folder: Path, name: str) -> bytes:
    """``fig`` as ``folder/name.{png,svg,pdf}`` (each written atomically); returns the PNG."""
    out = {}
    for fmt, metadata in FORMATS.items():
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        out[fmt] = buf.getvalue()
        atomic_write_bytes(folder / f"{name}.{fmt}", out[fmt])
    plt.close(fig)
    return out["png"]


def confusion_figure(confusion: list[list[int]], labels: list[str]) -> Figure:
    """Counts and row-normalised values (the recall of each true class) in every cell,
    coloured by the normalised value."""
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 0.9 + 0.7 * len(labels)))
    disp = ConfusionMatrixDisplay(norm, display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False,
                                                                  values_format=".2f")
    for (i, j), text in np.ndenumerate(disp.text_):
        text.set_text(f"{int(cm[i, j])}\n{norm[i, j]:.2f}")
        text.set_fontsize(7 if len(labels) > 6 else 9)
    ax.set_title("Confusion matrix\n(count and share of the true class per cell)", fontsize=10)
    ax.set_ylabel("true class")
    ax.set_xlabel("predicted class")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    return fig


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the fused features; deterministic for a seed."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def tsne_figure(points: np.ndarray, y: np.ndarray, labels: list[str], what: str = "fused features") -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(labels):
        sel = y == c
        if sel.any():
            ax.scatter(points[sel, 0], points[sel, 1], s=14, color=cmap(c % 10), label=name)
    ax.set_title(f"t-SNE of the {what} (test clips)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=1.5, loc="best")
    return fig


def epoch_series(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """Each logged metric of a run's ``metrics.csv`` as {epoch: value}, epochs counted from 1
    as the training log counts them (the CSV's own column starts at 0)."""
    with metrics_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        for key, value in row.items():
            if value and key not in ("epoch", "step"):
                series.setdefault(key, {})[int(row["epoch"]) + 1] = float(value)
    return series


# losses a run logs, by panel: the classification losses, then L_sim (larger, on its own axis)
CLASS_LOSSES = {"loss_av": "fused head", "loss_a": "audio head", "loss_v": "visual head", "loss": "total"}
# what the network is, by config modalities: its own head's loss is "loss_av" in either case
NETWORK = {"av": "fused head", "a": "audio network", "v": "visual network"}


def curves_figure(metrics_csv: Path, selected_epoch: int | None = None, n_classes: int | None = None,
                  val_trained_on: bool = False, modalities: str = "av") -> Figure | None:
    """Accuracy (or MAE) with chance and the evaluated epoch marked (the best on validation,
    or the last with ``train.select=last``), the classification losses, and L_sim apart (its
    scale would flatten the others; on a log scale). ``val_trained_on``
    (``data.train_on=train+val``): the val curves, if any, are labelled as actors the run
    trained on. Epochs are counted from 1, on whole-number ticks."""
    if not metrics_csv.is_file():
        return None
    series = epoch_series(metrics_csv)
    has_sim = "train_loss_sim" in series
    fig, axes = plt.subplots(1, 3 if has_sim else 2, figsize=(13 if has_sim else 9, 3.6))
    plot = lambda ax, key, label, **kw: ax.plot(list(series[key]), list(series[key].values()), label=label, **kw)  # noqa: E731
    acc = axes[0]
    val = "val actors (trained on)" if val_trained_on else "validation"
    for key, label in (("train_acc", "train"), ("val_acc", val), ("train_mae", "train"), ("val_mae", val)):
        if key in series:
            plot(acc, key, label, marker=".")
    if "train_acc" in series or "val_acc" in series:  # a refit logs no validation pass
        acc.set_title("Accuracy per epoch")
        acc.set_ylabel("accuracy")
        if n_classes:
            acc.axhline(1 / n_classes, color="grey", ls=":", label=f"chance ({100 / n_classes:.1f} %)")
    else:
        acc.set_title("MAE per epoch")
    cls = axes[1]
    parts = [k for k in CLASS_LOSSES if f"train_{k}" in series]
    parts = [k for k in parts if k != "loss"] or parts  # the total only when there are no parts
    names = CLASS_LOSSES | {"loss_av": NETWORK.get(modalities, "fused head")}
    for i, key in enumerate(parts):
        color = plt.get_cmap("tab10")(i)
        plot(cls, f"train_{key}", f"train, {names[key]}", color=color)
        if f"val_{key}" in series:
            plot(cls, f"val_{key}", f"{val}, {names[key]}", color=color, ls="--")
    cls.set_title("Classification losses" if parts != ["loss"] else "Loss")
    if has_sim:
        plot(axes[2], "train_loss_sim", "train")
        if "val_loss_sim" in series:
            plot(axes[2], "val_loss_sim", val, ls="--")
        axes[2].set_title("L_sim (similarity loss, eq. 17)")
        if min(series["train_loss_sim"].values()) > 0:
            axes[2].set_yscale("log")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if selected_epoch is not None:
            ax.axvline(selected_epoch + 1, color="#d62728", lw=1, alpha=.7, label=f"evaluated epoch ({selected_epoch + 1})")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def robustness_figure(result: dict) -> Figure:
    """Accuracy with a fraction r of one modality replaced by noise (from r = 0, clean), and
    with noisy audio at the measured SNRs."""
    noise = "noise" in result
    fig, axes = plt.subplots(1, 2 if noise else 1, figsize=(10 if noise else 6, 4), squeeze=False)
    scale = 1 if result["metric"] == "mae" else 100
    ylabel = f"test {result['metric']}" + (" %" if scale == 100 else "")
    ax = axes[0, 0]
    fractions = [0.0, *result["fractions"]]
    for m, values in result["masked"].items():
        ax.plot(fractions, np.array([result["clean"], *values]) * scale, marker="o", label=f"{m} masked")
    ax.set_xticks(fractions)
    ax.set_title("A fraction r of one modality replaced by noise")
    ax.set_xlabel("fraction r (0: clean)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if noise:
        ax = axes[0, 1]
        ax.plot(result["snr_db"], np.array(result["noise"]["audio"]) * scale, marker="o", label="noisy audio")
        ax.axhline(result["clean"] * scale, color="grey", ls="--", label="clean audio")
        ax.set_xticks(result["snr_db"])
        ax.invert_xaxis()
        ax.set_title("White noise added to the audio")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fusion_cases(pred: dict[str, np.ndarray], ids: list[str], labels: list[str], limit: int = 10) -> dict[str, list]:
    """Fig. 4 of the paper: clips where both unimodal heads are wrong and the fused head is
    right ("fusion helps"), and the reverse ("fusion hurts")."""
    if "logits_a_avam" not in pred or "logits_v_avam" not in pred:
        return {}
    y = pred["label"].astype(int)
    f, a, v = (pred[k].argmax(1) for k in ("logits", "logits_a_avam", "logits_v_avam"))
    row = lambda i: [ids[i], labels[y[i]], labels[a[i]], labels[v[i]], labels[f[i]]]  # noqa: E731
    helps = [row(i) for i in np.flatnonzero((f == y) & (a != y) & (v != y))]
    hurts = [row(i) for i in np.flatnonzero((f != y) & ((a == y) | (v == y)))]
    return {"helps": helps[:limit], "hurts": hurts[:limit], "n_helps": len(helps), "n_hurts": len(hurts)}


METRIC_NAMES = {
    "accuracy": "Accuracy (weighted accuracy, WA)", "unweighted_accuracy": "Unweighted accuracy (UA: mean class recall)",
    "macro_f1": "Macro F1", "accuracy_a_avam": "Accuracy of the audio AVAM head alone",
    "accuracy_v_avam": "Accuracy of the visual AVAM head alone",
    "accuracy_a_fallback": "Accuracy of the audio fallback network (audio alone)",
    "accuracy_v_fallback": "Accuracy of the visual fallback network (visual alone)", "n": "Test clips",
    "mae": "Mean absolute error", "corr": "Pearson correlation", "acc7": "7-class accuracy",
    "acc2_has0": "Binary accuracy (negative / non-negative)", "f1_has0": "Binary F1 (negative / non-negative)",
    "acc2_non0": "Binary accuracy (zeros left out)", "f1_non0": "Binary F1 (zeros left out)",
    "chance": "Chance (one class in n)",
}
PERCENT = {"accuracy", "unweighted_accuracy", "macro_f1", "accuracy_a_avam", "accuracy_v_avam", "accuracy_a_fallback",
           "accuracy_v_fallback", "acc7", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "chance"}


def fusion_section(cases: dict) -> list[str]:
    """The Fig. 4 tables of ``fusion_cases`` ("none" where no clip qualifies)."""
    if not cases:
        return []
    head = ["clip", "true", "audio head", "visual head", "fused"]
    whats = {"helps": "both unimodal heads wrong, fused right", "hurts": "a unimodal head right, fused wrong"}
    parts = []
    for key, what in whats.items():
        shown = f", the first {len(cases[key])}" if 0 < len(cases[key]) < cases[f"n_{key}"] else ""
        parts.append(f"<h2>Where fusion {key} ({cases[f'n_{key}']} clips: {what}{shown})</h2>"
                     + (html_table(head, cases[key]) if cases[key] else "<p>none</p>"))
    return parts


def metric_rows(metrics: dict) -> list[list[str]]:
    """[readable name, value] of every scalar metric; shares as %."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            shown = f"{100 * value:.2f} %" if key in PERCENT else str(value) if key == "n" else f"{value:.4f}"
            rows.append([METRIC_NAMES.get(key, key.replace("_", " ")), shown])
    return rows


def html_table(head: list[str], rows: list[list]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def html_img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def provenance_section(doc_path: Path) -> str:
    """"Provenance" table of a ``metrics.json`` or ``cv.json`` (empty if it records none); a
    cv.json's runs by their own records (what they share, then what differs run by run), not
    by the process that wrote the summary."""
    from attsf.provenance import describe, describe_runs

    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {}
    runs = {k: f["provenance"] for k, f in (doc.get("folds") or {}).items() if isinstance(f, dict) and f.get("provenance")}
    if runs:
        shared, headers, rows = describe_runs(runs)
        return ("<h2>Provenance</h2><p>Shared by every run:</p>"
                + html_table(["what", "recorded"], [list(r) for r in shared])
                + (f"<p>Run by run:</p>{html_table(headers, rows)}" if len(headers) > 1 else ""))
    if not doc.get("provenance"):
        return ""
    return "<h2>Provenance</h2>" + html_table(["what", "recorded"], [list(r) for r in describe(doc["provenance"])])


def write_page(path: Path, parts: list[str]) -> Path:
    """One self-contained HTML page of ``parts`` (images are embedded data URIs)."""
    style = ("body{font:14px/1.4 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "img{max-width:100%}.banner{background:#fff3cd;border:1px solid #e0b000;padding:.5rem .8rem;"
             "font-weight:600}pre{background:#f6f6f6;padding:.5rem;overflow:auto}")
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>attsf report</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_text(path, page)
    return path


def config_section(cfg) -> str:
    """The run's settings that differ from attsf's defaults (the paper's), then its whole
    config folded away."""
    import yaml

    from attsf.config import Config

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in tree.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    mine, default = flat(cfg.to_dict()), flat(Config().to_dict())
    rows = [[k, v, default.get(k, "-")] for k, v in mine.items() if k != "name" and v != default.get(k)]
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return ("<h2>Settings</h2><p>Where this run differs from the defaults (the paper's settings):</p>"
            + html_table(["key", "this run", "default"], rows)
            + f"<details><summary>The whole config (config.yaml)</summary><pre>{html.escape(text)}</pre></details>")


def build_report(run_dir: str | Path, seed: int = 0, cache: str | None = None) -> Path:
    """Figures under ``RUN_DIR/figures/`` and ``RUN_DIR/report.html``; says each step."""
    from attsf.card import model_card
    from attsf.data.datamodule import ClipDataModule
    from attsf.evaluate import MODEL_FILE, metrics_for, open_run, predict_dataset

    root = Path(run_dir)
    run = open_run(root, cache=cache)
    dataset = ClipDataModule(run.cfg).dataset("test")
    log.info("report of %s: predicting its %d test clips", root, len(dataset))
    pred = predict_dataset(run.model, dataset, batch_size=32)
    regression = run.cfg.model.task == "regression"
    modalities = run.cfg.model.modalities
    metrics = metrics_for(pred, run.labels, regression)
    folder = root / "figures"
    figures: dict[str, bytes] = {}
    if not regression:
        figures["confusion"] = save_figure(confusion_figure(metrics["confusion"], run.labels), folder, "confusion")
        if "features" in pred and len(pred["features"]) > 5:
            log.info("report: t-SNE of %d feature vectors", len(pred["features"]))
            what = "fused features" if modalities == "av" else f"{NETWORK[modalities]}'s features"
            points = tsne_embedding(pred["features"], seed)
            figures["tsne"] = save_figure(tsne_figure(points, pred["label"].astype(int), run.labels, what), folder, "tsne")
    side = root / "checkpoints" / "model.json"
    curves = curves_figure(root / "metrics.csv", json.loads(side.read_text()).get("epoch") if side.is_file() else None,
                           None if regression else len(run.labels), run.cfg.data.train_on == "train+val", modalities)
    if curves:
        figures["curves"] = save_figure(curves, folder, "curves")
    robust_path = root / "robustness.json"
    robust = json.loads(robust_path.read_text()) if robust_path.is_file() else None
    if robust:
        figures["robustness"] = save_figure(robustness_figure(robust), folder, "robustness")
    log.info("report: %d figures -> %s/ (PNG, SVG, PDF)", len(figures), folder)

    card = model_card(root / MODEL_FILE, json.loads(side.read_text()) if side.is_file() else {})
    parts = [f"<h1>attsf report: {html.escape(run.cfg.name)}</h1>"]
    if card.get("warning"):
        parts.append(f'<p class="banner">{html.escape(card["warning"])}</p>')
    parts.append(f"<p>Run <code>{html.escape(str(root))}</code> ({' + '.join(card['modalities'])}), test split, "
                 f"{metrics['n']} clips.</p>")
    if not regression:
        metrics["chance"] = 1 / len(run.labels)
    parts.append("<h2>Metrics</h2>" + html_table(["metric", "value"], metric_rows(metrics)))
    if "per_class_recall" in metrics:
        parts.append("<h2>Per-class recall</h2>" + html_table(
            ["class", "recall"], [[k, f"{v * 100:.1f} %"] for k, v in metrics["per_class_recall"].items()]))
    titles = {"confusion": "Confusion matrix", "tsne": "t-SNE of the features the classifier reads",
              "curves": "Training curves", "robustness": "Robustness"}
    for name, png in figures.items():
        parts.append(f"<h2>{titles[name]}</h2>{html_img(png, titles[name])}")
    cases = fusion_cases(pred, [r.id for r in dataset.records], run.labels) if not regression else {}
    parts += fusion_section(cases)
    parts.append(config_section(run.cfg))
    parts.append(provenance_section(root / "metrics.json"))
    return write_page(root / "report.html", parts)

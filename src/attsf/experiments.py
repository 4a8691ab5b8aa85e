"""The paper's experiments, each one command over all folds: ``attsf experiment NAME CONFIG``.

An experiment is a list of rows; a row is the base config with a few overrides, run with
``cross_validate_many`` into ``OUT/<row>/`` (finished folds are reused, interrupted ones
resumed; a fold run with other settings is an error, not silently reused). The result
is ``OUT/<NAME>.md``: our mean ± std next to the paper's figure.
``robustness`` runs the variants, then masks each modality of every fold's test split
(a fold's ``robustness.json`` with the same fractions, SNRs and seed is reused).
Rows shared by experiments (ATTSF-Net is in all of them) live in the same folder, so with
one ``--out`` they are trained once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from attsf.config import load_config
from attsf.errors import AttsfError
from attsf.io import atomic_write_text, write_json
from attsf.robustness import SNRS_DB, mean_robustness, robustness


@dataclass(frozen=True)
class Row:
    name: str
    overrides: tuple[str, ...] = ()
    paper: float | None = None  # RAVDESS accuracy %, paper Tables IV, VI, VII, VIII
    paper_masked: dict = field(default_factory=dict)  # Table V: modality -> accuracies at r = 0.1 .. 0.9

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


TABLE_V = {
    "ATTSF-Net": {"audio": [87.75, 86.25, 85.27, 84.26, 83.40, 82.53, 82.48, 80.92, 79.33],
                  "visual": [86.58, 84.33, 80.73, 79.20, 76.61, 74.90, 73.53, 70.75, 68.13]},
    "ATTSF-L2": {"audio": [86.98, 85.55, 85.25, 83.30, 82.45, 81.26, 80.68, 79.18, 78.68],
                 "visual": [86.10, 84.08, 80.01, 78.50, 75.90, 73.38, 70.98, 67.28, 65.65]},
    "ATTSF-Gat": {"audio": [85.38, 84.15, 82.71, 81.73, 80.55, 79.85, 78.72, 77.33, 76.91],
                  "visual": [84.35, 83.05, 80.55, 77.96, 74.33, 73.18, 71.61, 69.18, 67.11]},
}
PAPER_FRACTIONS = [round(0.1 * i, 1) for i in range(1, 10)]  # the r of Table V
FUSED = (Row("ATTSF-Net", (), 88.67, TABLE_V["ATTSF-Net"]),
         Row("ATTSF-L2", ("model.fusion=l2",), 87.87, TABLE_V["ATTSF-L2"]),
         Row("ATTSF-Gat", ("model.fusion=gate",), 85.50, TABLE_V["ATTSF-Gat"]))
# a unimodal row leaves out what only a fused model has: fallback networks, branches started from other runs
UNIMODAL = ("train.fallback_audio=", "train.fallback_visual=", "train.init_audio=", "train.init_visual=",
            "train.freeze_init=false")
EXPERIMENTS: dict[str, tuple[Row, ...]] = {
    "variants": FUSED + (Row("audio only", ("model.modalities=a", *UNIMODAL), 66.43),
                         Row("visual only", ("model.modalities=v", *UNIMODAL), 78.50)),
    "ablations": (Row("ATTSF-Net", (), 88.67),
                  Row("w/o L_sim", ("loss.lambda_sim=0",), 87.43),
                  Row("w/o audio auxiliary", ("model.use_audio_aux=false",), 85.65),
                  Row("w/o visual auxiliary", ("model.use_visual_aux=false",), 88.46),
                  Row("w/o SAB", ("model.use_sab=false",), 86.86)),
    "replacements": (Row("ATTSF-Net", (), 88.67),
                     Row("AVAM -> temporal pooling", ("model.auxiliary=pool",), 85.81),
                     Row("LSTM -> Linear", ("model.temporal=linear",), 87.25),
                     Row("CMB -> similarity-aware enhancement block", ("model.cross_block=seb",), 86.67)),
    "robustness": FUSED,
}


def run_experiment(name: str, config: str | Path, overrides: list[str], out: str | Path,
                   folds: list[int] | None = None, fractions: tuple[float, ...] | None = None,
                   snrs: tuple[float, ...] | None = None, jobs: int = 1) -> str:
    """Run (or reuse) every row over the folds (``jobs`` runs at once, of any row, as
    ``attsf cv --jobs``); write and return the Markdown table."""
    from attsf.cv import cross_validate_many
    from attsf.train import trainer_rank_zero

    out = Path(out)
    rows = EXPERIMENTS[name]
    studies = [(load_config(config, [*overrides, *row.overrides]), out / row.slug) for row in rows]
    if studies[0][0].model.task == "regression":
        raise AttsfError(f"{studies[0][0].name}: the paper's experiments compare classification accuracy (its "
                         "RAVDESS tables); a regression config (CMU-MOSI) has none: use attsf cv with overrides")
    results = dict(zip((row.slug for row in rows), cross_validate_many(studies, folds, jobs=jobs)))
    if not trainer_rank_zero():  # under torchrun the other ranks only train; rank 0 writes the tables
        return ""
    doc = {r.slug: results[r.slug] for r in rows}
    if name == "robustness":
        table, figures = _robustness(rows, out, results, fractions or tuple(PAPER_FRACTIONS),
                                     SNRS_DB if snrs is None else snrs)
        doc = {slug: dict(cv, robustness=figures[slug]) for slug, cv in doc.items()}
    else:
        table = _accuracy_table(name, rows, results)
    write_json(out / f"{name}.json", doc)
    atomic_write_text(out / f"{name}.md", table)
    return table


def _accuracy_table(name: str, rows: tuple[Row, ...], results: dict) -> str:
    lines = [f"## {name}: test accuracy % over {len(next(iter(results.values()))['folds'])} fold(s)", "",
             "| model | ours (mean ± std) | per fold | paper (RAVDESS) |", "| --- | --- | --- | --- |"]
    for row in rows:
        r = results[row.slug]
        per_fold = ", ".join(f"{f['test_accuracy']:.1f}" for f in r["folds"].values())
        paper = f"{row.paper:.2f}" if row.paper is not None else "—"
        lines.append(f"| {row.name} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} | {per_fold} | {paper} |")
    return "\n".join(lines) + "\n"


def _robustness(rows: tuple[Row, ...], out: Path, results: dict, fractions: tuple[float, ...],
                snrs: tuple[float, ...]) -> tuple[str, dict]:
    """The Markdown tables, and per row the figures of every fold and their mean (in %:
    masked, missing, fallback, noise) for the experiment's JSON."""
    head = ("| model (masked) | clean | " + " | ".join(f"r={r:.1f}" for r in fractions)
            + " | missing | missing, the other head answers |")
    lines = ["## robustness: test accuracy % with a fraction r of one modality replaced by noise (mean over folds)",
             "", head, "|" + " --- |" * (len(fractions) + 4)]
    noisy: dict[str, list[float]] = {}
    figures = {}
    for row in rows:
        per_fold = {k: robustness(out / row.slug / f"fold{k}", fractions, snrs=snrs) for k in results[row.slug]["folds"]}
        mean = mean_robustness(list(per_fold.values()))
        figures[row.slug] = {"unit": "%", "mean": _percent(mean),
                             "folds": {k: _percent(r) for k, r in per_fold.items()}}
        for m, masked in mean["masked"].items():
            lines.append(f"| {row.name} ({m}) | {100 * mean['clean']:.2f} | "
                         + " | ".join(f"{100 * v:.2f}" for v in masked) + f" | {100 * mean['missing'][m]:.2f} | "
                         + (f"{100 * mean['fallback'][m]:.2f} |" if m in mean.get("fallback", {}) else "— |"))
            paper = row.paper_masked.get(m)
            if paper:
                cells = [f"{paper[PAPER_FRACTIONS.index(r)]:.2f}" if r in PAPER_FRACTIONS else "—" for r in fractions]
                lines.append(f"| paper {row.name} ({m}) | {row.paper:.2f} | " + " | ".join(cells) + " | — | — |")
        if "noise" in mean:
            noisy[row.name] = mean["noise"]["audio"]
    if noisy:
        lines += ["", "## white noise added to the audio waveform: test accuracy % (mean over folds; "
                  "not in the paper)", "", "| model | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
                  "|" + " --- |" * (len(snrs) + 1)]
        lines += [f"| {name} | " + " | ".join(f"{100 * v:.2f}" for v in values) + " |" for name, values in noisy.items()]
    return "\n".join(lines) + "\n", figures


def _percent(result: dict) -> dict:
    """A ``robustness`` result's accuracies (fractions of 1) in %, settings unchanged."""
    pct = lambda v: round(100 * v, 4) if isinstance(v, float) else [round(100 * x, 4) for x in v]  # noqa: E731
    out = {k: result[k] for k in ("fractions", "snr_db", "seed") if k in result}
    out["clean"] = pct(result["clean"])
    for key in ("masked", "missing", "fallback", "noise"):
        if result.get(key):
            out[key] = {m: pct(v) for m, v in result[key].items()}
    return out

"""The model card of a trained run: what the model is, what it was trained on, how well it
does and what chance is. ``attsf predict``, ``attsf serve`` (page, ``/health``, API) show it."""

from __future__ import annotations

from pathlib import Path

from attsf.io import read_json

SYNTHETIC = {"demo"}  # datasets of generated clips
WARNING = "demo model trained on generated clips — its predictions on real media mean nothing"
MODALITIES = {"av": ["audio", "video"], "a": ["audio"], "v": ["video"]}


def model_card(weights: Path, side: dict) -> dict:
    """The card of the weights file ``weights`` (``checkpoints/model.safetensors`` of a run,
    or a file shared with its ``.json`` sidecar ``side``)."""
    cfg, prep = side.get("config", {}), side.get("preprocessing", {})
    model = cfg.get("model", {})
    data = prep.get("training_data", {})
    visual = prep.get("visual", {})
    modalities = list(MODALITIES.get(model.get("modalities", "av"), []))
    if "video" in modalities and visual.get("kind") == "features" and "backbone" not in visual:
        modalities[modalities.index("video")] = "visual features"  # e.g. an AU table: no raw video
    run = weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent
    card = {"name": cfg.get("name", "?"), "run": str(run), "dataset": data.get("dataset", "unknown"),
            "train_clips": data.get("clips"), "train_speakers": data.get("speakers"), "modalities": modalities,
            "labels": side.get("labels", []), "chance": round(100 / (len(side.get("labels", [])) or 1), 2),
            "test_accuracy": None, "cv": None, "warning": None}
    test = side.get("test") or (read_json(run / "metrics.json").get("test", {}) if (run / "metrics.json").is_file()
                                else {})
    if "accuracy" in test:
        card["test_accuracy"] = round(100 * test["accuracy"], 2)
    cv = run.parent / "cv.json"
    summary = read_json(cv) if cv.is_file() else {}
    if "accuracy_mean" in summary:  # a classification's (a regression's cv.json has its MAE)
        card["cv"] = {"accuracy_mean": round(summary["accuracy_mean"], 2), "accuracy_std": round(summary["accuracy_std"], 2),
                      "runs": len(summary.get("folds", {}))}
    about = side.get("card") or {}  # an exported model's card (attsf export): what it is for, how it was measured
    if about:
        card["config"], card["name"] = card["name"], about.get("title", card["name"])
        card.update({k: v for k, v in about.items() if k != "title"})
    if card["dataset"] in SYNTHETIC or visual.get("source") == "demo":
        card["warning"] = WARNING
    card["unfinished"] = None
    if not (side.get("finished", "test" in side) or (run / "metrics.json").is_file()):
        total = side.get("max_epochs") or cfg.get("train", {}).get("max_epochs", "?")
        card["unfinished"] = f"unfinished, epoch {int(side.get('epoch') or 0) + 1} of {total}"
        note = f"{card['unfinished']}: a snapshot of a run that was stopped before its end"
        card["warning"] = f"{card['warning']}; {note}" if card["warning"] else note
    return card


def card_markdown(card: dict) -> str:
    """An exported model's card as a page, in the manner of a model hub's."""
    ev = card.get("evaluation") or {}
    lines = [f"# {card['name']}", "", card.get("intended_use", ""), "",
             f"- **Input**: {' + '.join(card['modalities'])}; **classes** ({len(card['labels'])}, chance "
             f"{card['chance']:.1f} %): {', '.join(card['labels'])}",
             f"- **Config**: `{card.get('config', card['name'])}`; trained with `{card.get('training_command', '?')}`"]
    if card.get("commit"):
        lines.append(f"- **Code**: attsf commit {card['commit'][:10]}")
    lines += ["", "## Training data", "", card.get("training_data", f"{card['dataset']}, {card['train_clips']} clips of "
                                                   f"{card['train_speakers']} speakers"), ""]
    if ev:
        lines += ["## Evaluation", "",
                  f"{ev['clips']} clips of speakers {', '.join(ev['speakers'])}, none of them heard in training.", "",
                  "| setting | accuracy % | unweighted accuracy % |", "| --- | --- | --- |"]
        names = {"new_speaker": "a new speaker's clip (the training speakers' pooled statistics)",
                 "own_speaker": "several clips of the speaker (--same-speaker: their own statistics)"}
        lines += [f"| {names[k]} | {ev[k]['accuracy']:.2f} | {ev[k]['unweighted_accuracy']:.2f} |"
                  for k in ("new_speaker", "own_speaker") if k in ev]
        lines.append("")
        if "enrolment" in ev:
            acc = ev["enrolment"]["accuracy"]
            lines += [f"With n clips of the speaker to normalise by (mean of {ev['enrolment']['draws']} random draws):", "",
                      "| n | " + " | ".join(acc) + " |", "| --- |" + " --- |" * len(acc),
                      "| accuracy % | " + " | ".join(f"{v:.1f}" for v in acc.values()) + " |", ""]
    if card.get("how_settings_were_chosen"):
        lines += ["How the settings were chosen: " + card["how_settings_were_chosen"], ""]
    if card.get("limitations"):
        limits = card["limitations"]
        lines += ["## Limitations", "", *[f"- {x}" for x in ([limits] if isinstance(limits, str) else limits)], ""]
    if card.get("licence"):
        lines += ["## Licence", "", card["licence"], ""]
    if card.get("report"):
        lines += [f"More figures: {card['report']}.", ""]
    return "\n".join(lines)


def card_line(card: dict) -> str:
    """One line for a terminal."""
    acc = "test accuracy not recorded"
    held_out = (card.get("evaluation") or {})
    if "new_speaker" in held_out:
        acc = f"on {len(held_out['speakers'])} held-out speakers {held_out['new_speaker']['accuracy']:.1f} % as new speakers"
        if "own_speaker" in held_out:
            acc += f", {held_out['own_speaker']['accuracy']:.1f} % with each speaker's own statistics (--same-speaker)"
    elif card["cv"]:
        acc = f"test accuracy {card['cv']['accuracy_mean']:.2f} ± {card['cv']['accuracy_std']:.2f} % over " \
              f"{card['cv']['runs']} runs"
    elif card["test_accuracy"] is not None:
        acc = f"test accuracy {card['test_accuracy']:.2f} % (one run)"
    data = card["dataset"] + (f", {card['train_clips']} clips of {card['train_speakers']} speakers"
                              if card["train_clips"] else "")
    return (f"model {card['name']} ({card['run']}): trained on {data}; {' + '.join(card['modalities'])}; {acc}; "
            f"chance {card['chance']:.1f} %")

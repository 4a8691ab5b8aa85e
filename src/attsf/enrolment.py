"""Accuracy on held-out speakers against the number of enrolment clips.

A run trained with speaker normalisation (``data.normalize=speaker``) is scored on its test
speakers, each normalised with the statistics of ``n`` of its own clips drawn at random (what
``attsf predict CLIPS... --same-speaker`` does with a user's clips of one person); every test
clip is then scored. ``n = 0`` is the new-speaker setting (the training speakers' pooled
statistics, one clip of a stranger); ``n`` at or above a speaker's clip count is all of them,
the own-speaker setting. ``bench/enrolment.py`` prints the curve; ``attsf export`` puts it
on a model's card.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from attsf.data import normalize
from attsf.data.datamodule import ClipDataModule, ClipDataset
from attsf.errors import AttsfError
from attsf.evaluate import metrics_for, open_run, predict_dataset


def enrolment_curve(run_dir: str | Path, clips: list[int], draws: int = 10, shrink: bool = True,
                    split: str = "test") -> dict[int, list[float]]:
    """``n -> [accuracy % of each draw]`` on the run's ``split`` speakers (one draw where the
    choice is not random: n = 0 and n = all); ``shrink``: the speaker's statistics moved
    towards the pooled ones as ``attsf predict`` does (``normalize.shrink``), else its own alone."""
    if not (Path(run_dir) / "metrics.json").is_file():
        raise AttsfError(f"{run_dir}: not a finished run (no metrics.json); its weights are a snapshot of training")
    run = open_run(run_dir)
    if run.cfg.data.normalize != "speaker":
        raise AttsfError(f"{run_dir}: trained without speaker normalisation (data.normalize=speaker); "
                         "enrolment does not apply")
    dm = ClipDataModule(run.cfg)
    if split not in dm.splits or split == "train":
        raise AttsfError(f"{run_dir}: no held-out {split} speakers (it has {', '.join(dm.splits)}; train was fitted)")
    records = dm.splits[split]
    pooled = normalize.pooled(normalize.speaker_stats(dm.cache, dm.splits["train"]).values())
    prior = normalize.prior_clips(dm.cache, dm.splits["train"]) if shrink else {}
    by_speaker = defaultdict(list)
    for r in records:
        by_speaker[r.speaker].append(r)
    largest = max(len(rs) for rs in by_speaker.values())
    curve: dict[int, list[float]] = {}
    for n in clips:
        accs = []
        for draw in range(draws if 0 < n < largest else 1):
            rng = np.random.default_rng(draw)
            if n == 0:
                stats = {s: pooled for s in by_speaker}
            else:
                chosen = [rs[i] for rs in by_speaker.values() for i in rng.choice(len(rs), min(n, len(rs)), replace=False)]
                stats = {s: normalize.shrink(st, min(n, len(by_speaker[s])), pooled, prior)
                         for s, st in normalize.speaker_stats(dm.cache, chosen).items()}
            ds = ClipDataset(dm.cache, records, speaker_stats=stats)  # normalises as it loads
            accs.append(100 * metrics_for(predict_dataset(run.model, ds), run.labels, False)["accuracy"])
        curve[n] = accs
    return curve

"""Accuracy on held-out speakers against the number of enrolment clips.

A run trained with speaker normalisation (``data.normalize=speaker``) is scored on its test
speakers, each normalised with the statistics of ``n`` of its own clips drawn at random (what
``attsf predict CLIPS... --same-speaker`` does with a user's clips of one person); every test
clip is then scored. ``n = 0`` is the new-speaker setting (the training speakers' pooled
statistics, one clip of a stranger); the largest ``n`` is all of a speaker's clips, the
own-speaker figure of the results page. Reads the runs' caches; trains nothing.

    python bench/enrolment.py RUN_DIR [RUN_DIR ...] [--clips 0,1,3,5,10,20,60] [--draws 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from attsf.data import normalize
from attsf.data.datamodule import ClipDataModule
from attsf.evaluate import metrics_for, open_run, predict_dataset


def enrolment_curve(run_dir: str, clips: list[int], draws: int) -> dict[int, list[float]]:
    """``n -> [accuracy % of each draw]`` on the run's test speakers."""
    run = open_run(run_dir)
    if run.cfg.data.normalize != "speaker":
        raise SystemExit(f"{run_dir}: trained without speaker normalisation; enrolment does not apply")
    dm = ClipDataModule(run.cfg)
    ds = dm.dataset("test")
    pooled = normalize.pooled(normalize.speaker_stats(dm.cache, dm.splits["train"]).values())
    by_speaker = defaultdict(list)
    for r in ds.records:
        by_speaker[r.speaker].append(r)
    curve: dict[int, list[float]] = {}
    for n in clips:
        accs = []
        for draw in range(draws if 0 < n < max(map(len, by_speaker.values())) else 1):
            rng = np.random.default_rng(draw)
            if n == 0:
                ds.speaker_stats = {s: pooled for s in by_speaker}
            else:
                chosen = [rs[i] for rs in by_speaker.values() for i in rng.choice(len(rs), min(n, len(rs)), replace=False)]
                ds.speaker_stats = normalize.speaker_stats(dm.cache, chosen)
            pred = predict_dataset(run.model, ds)
            accs.append(100 * metrics_for(pred, run.labels, False)["accuracy"])
        curve[n] = accs
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--clips", default="0,1,3,5,10,20,60", help="enrolment clips per speaker (0: as a new speaker)")
    ap.add_argument("--draws", type=int, default=10, help="random draws of the enrolment clips per n")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    clips = [int(c) for c in args.clips.split(",")]
    out = {}
    for run_dir in args.runs:
        curve = enrolment_curve(run_dir, clips, args.draws)
        out[run_dir] = {str(n): {"mean": float(np.mean(a)), "std": float(np.std(a)), "draws": len(a)}
                        for n, a in curve.items()}
        print(run_dir)
        for n, a in curve.items():
            print(f"  {n:>3} clips: {np.mean(a):6.2f} ± {np.std(a):5.2f} % ({len(a)} draws)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"clips": clips, "draws": args.draws, "runs": out}, fh, indent=2)


if __name__ == "__main__":
    main()

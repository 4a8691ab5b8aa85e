"""Simple baselines per fold on a RAVDESS audio + AU cache: standardise + logistic
regression on utterance statistics (MFCC mean and std over time) and the AU vector.
A network that scores below these on the same fold has a problem to find.

    python bench/baselines.py [--cache cache/ravdess_au] [--folds ravdess_actor_5fold] [--normalize speaker]

``--normalize speaker`` first z-scores each speaker's MFCC frames and AU vectors with that
speaker's own statistics, as ``data.normalize=speaker`` does for the networks.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from attsf.data import normalize
from attsf.data.cache import ClipCache
from attsf.data.datamodule import load_folds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="cache/ravdess_au")
    p.add_argument("--folds", default="ravdess_actor_5fold")
    p.add_argument("--normalize", choices=["none", "speaker"], default="none")
    args = p.parse_args()
    cache = ClipCache(args.cache)
    stats = normalize.speaker_stats(cache, cache.records) if args.normalize == "speaker" else None
    rows = []
    for r in cache.records:
        arrays = cache.load(r)
        if stats is not None:
            arrays = normalize.apply(arrays, stats[r.speaker])
        mfcc = arrays["audio"].numpy()
        rows.append((np.concatenate([mfcc.mean(1), mfcc.std(1)]), arrays["visual"].numpy().reshape(-1),
                     cache.label_index(r), r.speaker))
    audio, visual = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    y, speaker = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    inputs = {"MFCC": audio, "AU": visual, "MFCC + AU": np.concatenate([audio, visual], 1)}
    print("| input | trained on | " + " | ".join(f"fold {k}" for k in range(5)) + " | mean |")
    print("| --- | --- |" + " --- |" * 6)
    for name, x in inputs.items():
        for train_splits in (("train",), ("train", "val")):
            scores = []
            for fold in load_folds(args.folds)["folds"]:
                tr = np.isin(speaker, [s for split in train_splits for s in fold[split]])
                te = np.isin(speaker, fold["test"])
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[tr], y[tr])
                scores.append(100 * clf.score(x[te], y[te]))
            print(f"| {name} | {' + '.join(train_splits)} | " + " | ".join(f"{s:.1f}" for s in scores)
                  + f" | {np.mean(scores):.1f} |")


if __name__ == "__main__":
    main()

"""Simple baselines per fold on a RAVDESS audio + AU cache: standardise + logistic
regression, and standardise + a one-hidden-layer MLP with strong L2 (scikit-learn), on
utterance statistics (MFCC mean and std over time) and the AU vector.
A network that scores below these on the same fold has a problem to find.

    python bench/baselines.py [--cache cache/ravdess_au] [--folds ravdess_actor_5fold] [--normalize speaker]

``--normalize speaker`` first z-scores each speaker's MFCC frames and AU vectors with that
speaker's own statistics, as ``data.normalize=speaker`` does for the networks;
``--normalize speaker_train`` uses the speakers' own statistics for the speakers the
regression is trained on, and their pooled statistics for the test speakers, as
``data.normalize=speaker_train`` (and ``attsf predict`` on a new speaker's clip) does.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from attsf.data import normalize
from attsf.data.cache import ClipCache
from attsf.data.datamodule import load_folds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="cache/ravdess_au")
    p.add_argument("--folds", default="ravdess_actor_5fold")
    p.add_argument("--normalize", choices=["none", "speaker", "speaker_train"], default="none")
    args = p.parse_args()
    cache = ClipCache(args.cache)
    clips = [cache.load(r) for r in cache.records]
    y = np.array([cache.label_index(r) for r in cache.records])
    speaker = np.array([r.speaker for r in cache.records])
    own = normalize.speaker_stats(cache, cache.records) if args.normalize != "none" else {}

    def inputs(fit_speakers: list[str]) -> dict[str, np.ndarray]:
        """Utterance statistics of every clip, normalised as ``--normalize`` says for a
        regression fitted on ``fit_speakers``."""
        pool = normalize.pooled(own[s] for s in fit_speakers) if args.normalize == "speaker_train" else None
        audio, visual = [], []
        for r, arrays in zip(cache.records, clips):
            if args.normalize == "speaker" or (pool is not None and r.speaker in fit_speakers):
                arrays = normalize.apply(arrays, own[r.speaker])
            elif pool is not None:
                arrays = normalize.apply(arrays, pool)
            mfcc = arrays["audio"].numpy()
            audio.append(np.concatenate([mfcc.mean(1), mfcc.std(1)]))
            visual.append(arrays["visual"].numpy().reshape(-1))
        a, v = np.stack(audio), np.stack(visual)
        return {"MFCC": a, "AU": v, "MFCC + AU": np.concatenate([a, v], 1)}

    models = {
        "logistic regression": lambda: LogisticRegression(max_iter=2000),
        # 256 ReLU units, strong L2 (alpha=0.01 scored 72.7 % on the AUs, alpha=3 75.6 %)
        "MLP": lambda: MLPClassifier((256,), alpha=3.0, max_iter=500, random_state=0),
    }
    scores: dict[tuple[str, str, str], list[float]] = {}
    for fold in load_folds(args.folds)["folds"]:
        for train_splits in (("train",), ("train", "val")):
            fit = [s for split in train_splits for s in fold[split] if s in set(speaker)]
            tr, te = np.isin(speaker, fit), np.isin(speaker, fold["test"])
            for name, x in inputs(fit).items():
                for model, make in models.items():
                    clf = make_pipeline(StandardScaler(), make()).fit(x[tr], y[tr])
                    key = (name, model, " + ".join(train_splits))
                    scores.setdefault(key, []).append(100 * clf.score(x[te], y[te]))
    print(f"normalisation: {args.normalize}")
    print("| input | model | trained on | " + " | ".join(f"fold {k}" for k in range(5)) + " | mean |")
    print("| --- | --- | --- |" + " --- |" * 6)
    for (name, model, splits), values in sorted(scores.items()):
        print(f"| {name} | {model} | {splits} | " + " | ".join(f"{s:.1f}" for s in values) + f" | {np.mean(values):.1f} |")


if __name__ == "__main__":
    main()

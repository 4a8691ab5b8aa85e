"""Simple baselines per fold on a RAVDESS audio + AU cache: standardise + logistic
regression, and standardise + a one-hidden-layer MLP with strong L2 (scikit-learn), on
utterance statistics (MFCC mean and std over time) and the AU vector.
A network that scores below these on the same fold has a problem to find. Each model's
regularisation (C, alpha) is chosen per fold on that fold's validation actors only; the
test actors are scored once, after a refit on train + val (as the refitted networks are).

    python bench/baselines.py [--cache cache/ravdess_au] [--folds ravdess_actor_5fold] [--normalize speaker]

``--normalize speaker`` first z-scores each speaker's MFCC frames and AU vectors with that
speaker's own statistics, as ``data.normalize=speaker`` does for the networks;
``--normalize speaker_train`` uses the speakers' own statistics for the speakers the
regression is trained on, and their pooled statistics for the test speakers, as
``data.normalize=speaker_train`` (and ``attsf predict`` on a new speaker's clip) does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    p.add_argument("--json", help="also write the table to this JSON file")
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

    # regularisation strength of each model: chosen per fold on that fold's validation
    # actors (fitted on its train actors), then refitted on train + val and scored once on test
    models = {
        "logistic regression": ("C", [0.01, 0.1, 1.0, 10.0], lambda v: LogisticRegression(C=v, max_iter=2000)),
        "MLP": ("alpha", [0.01, 0.3, 3.0, 10.0],  # 256 ReLU units
                lambda v: MLPClassifier((256,), alpha=v, max_iter=500, random_state=0)),
    }
    scores: dict[tuple[str, str], list[float]] = {}
    chosen: dict[tuple[str, str], list[float]] = {}
    for fold in load_folds(args.folds)["folds"]:
        train = [s for s in fold["train"] if s in set(speaker)]
        refit = train + [s for s in fold["val"] if s in set(speaker)]
        tr, va, te = (np.isin(speaker, fold[k]) for k in ("train", "val", "test"))
        select, final = inputs(train), inputs(refit)
        for name in select:
            for model, (_, grid, make) in models.items():
                val = [make_pipeline(StandardScaler(), make(v)).fit(select[name][tr], y[tr]).score(select[name][va], y[va])
                       for v in grid]
                best = grid[int(np.argmax(val))]  # ties: the first
                clf = make_pipeline(StandardScaler(), make(best)).fit(final[name][tr | va], y[tr | va])
                scores.setdefault((name, model), []).append(100 * clf.score(final[name][te], y[te]))
                chosen.setdefault((name, model), []).append(best)
    print(f"normalisation: {args.normalize}; regularisation chosen per fold on the validation actors, "
          "then refitted on train + val; test actors scored once")
    print("| input | model | chosen per fold | " + " | ".join(f"fold {k}" for k in range(len(next(iter(scores.values())))))
          + " | mean |")
    print("| --- | --- | --- |" + " --- |" * (len(next(iter(scores.values()))) + 1))
    rows = []
    for (name, model), values in sorted(scores.items()):
        param = models[model][0]
        picks = ", ".join(f"{v:g}" for v in chosen[(name, model)])
        print(f"| {name} | {model} | {param} = {picks} | " + " | ".join(f"{s:.1f}" for s in values)
              + f" | {np.mean(values):.1f} |")
        rows.append({"input": name, "model": model, param: chosen[(name, model)], "test_accuracy": values,
                     "mean": float(np.mean(values))})
    if args.json:
        Path(args.json).write_text(json.dumps({"normalize": args.normalize, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

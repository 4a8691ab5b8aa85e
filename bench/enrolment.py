"""Accuracy on held-out speakers against the number of enrolment clips (``attsf.enrolment``):
each test speaker normalised with the statistics of n of its own clips drawn at random, as
``attsf predict CLIPS... --same-speaker`` does; 0 is a new speaker, 60 all of an actor's clips.

    python bench/enrolment.py RUN_DIR [RUN_DIR ...] [--clips 0,1,3,5,10,20,60] [--draws 10] [--json OUT]
                              [--split val] [--no-shrink]

--no-shrink: each speaker's own statistics alone (as before predict shrank them towards the
training speakers' pooled ones); --split val: the run's validation speakers (a run trained
on train alone, e.g. an `attsf tune` trial), to judge a choice without the test speakers.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from attsf.enrolment import enrolment_curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--clips", default="0,1,3,5,10,20,60", help="enrolment clips per speaker (0: as a new speaker)")
    ap.add_argument("--draws", type=int, default=10, help="random draws of the enrolment clips per n")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--split", default="test", choices=["test", "val"], help="held-out speakers to score")
    ap.add_argument("--no-shrink", action="store_true", help="each speaker's own statistics alone")
    args = ap.parse_args()
    clips = [int(c) for c in args.clips.split(",")]
    out = {}
    for run_dir in args.runs:
        curve = enrolment_curve(run_dir, clips, args.draws, shrink=not args.no_shrink, split=args.split)
        out[run_dir] = {str(n): {"mean": float(np.mean(a)), "std": float(np.std(a)), "draws": len(a)}
                        for n, a in curve.items()}
        print(run_dir, flush=True)
        for n, a in curve.items():
            print(f"  {n:>3} clips: {np.mean(a):6.2f} ± {np.std(a):5.2f} % ({len(a)} draws)", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"clips": clips, "draws": args.draws, "split": args.split, "shrink": not args.no_shrink,
                       "runs": out}, fh, indent=2)


if __name__ == "__main__":
    main()

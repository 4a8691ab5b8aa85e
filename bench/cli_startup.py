"""Seconds from typing a command to its answer when an argument is wrong: what a person
waits for a one-line error (median of --repeats runs each, fresh processes); with --clip,
also a cold `attsf predict CLIP` with the packaged model (the answer a new user waits for).

    python bench/cli_startup.py [--repeats 3] [--clip my_clip.wav]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "attsf --help": ["--help"],
    "train, unknown config": ["train", "no_such_config"],
    "cv, unknown config": ["cv", "no_such_config"],
    "experiment, unknown config": ["experiment", "ablations", "no_such_config"],
    "evaluate, no run": ["evaluate", "{tmp}/no_run"],
    "robustness, no run": ["robustness", "{tmp}/no_run"],
    "preprocess, no folder": ["preprocess", "ravdess", "--root", "{tmp}/no_folder", "--out", "{tmp}/cache"],
    "report, no runs": ["report", "{tmp}"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clip", help="a speech clip: also time `attsf predict CLIP` (packaged model, fresh process)")
    args = ap.parse_args()
    commands = COMMANDS | ({"predict CLIP (packaged model)": ["predict", args.clip]} if args.clip else {})
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'command':30} {'seconds':>8}  exit")
        for name, argv in commands.items():
            times, code = [], 0
            for _ in range(args.repeats):
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "attsf", *(a.format(tmp=tmp) for a in argv)],
                                      capture_output=True)
                times.append(time.perf_counter() - start)
                code = proc.returncode
            print(f"{name:30} {statistics.median(times):8.2f}  {code}")


if __name__ == "__main__":
    main()

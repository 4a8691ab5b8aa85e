"""``attsf robustness``, ``report`` and ``summary``: looking at a trained run or a config."""

from __future__ import annotations

import argparse
from pathlib import Path

from attsf.commands.args import CACHE_HELP, config_of, floats, seed
from attsf.errors import AttsfError


def cmd_robustness(args: argparse.Namespace) -> None:
    fractions = floats("--fractions", args.fractions)
    if not all(0 <= f <= 1 for f in fractions):
        raise AttsfError(f"--fractions {args.fractions}: each must be in [0, 1]")
    snrs = floats("--snr", args.snr)
    from attsf.robustness import robustness, robustness_table

    result = robustness(args.run_dir, fractions, args.seed, snrs, cache=args.cache)
    print(robustness_table(result), end="")


def cmd_report(args: argparse.Namespace) -> None:
    from attsf.overview import build_overview
    from attsf.report import build_report

    run = (Path(args.run_dir) / "config.yaml").is_file()
    print(f"report -> {build_report(args.run_dir, args.seed, args.cache) if run else build_overview(args.run_dir)}")


def cmd_summary(args: argparse.Namespace) -> None:
    from attsf.config import ignored_keys
    from attsf.summary import summary_text

    cfg = config_of(args)
    print(summary_text(cfg.model))
    for note in ignored_keys(cfg):
        print(f"note: {note}")


def register(sub: argparse._SubParsersAction) -> None:
    rb = sub.add_parser("robustness", help="test accuracy with a fraction of one modality's time steps replaced by noise")
    rb.add_argument("run_dir")
    rb.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    rb.add_argument("--seed", type=seed, default=0)
    rb.add_argument("--snr", default="20,10,5,0", help="audio noise SNRs in dB, or 'none' (needs the source audio)")
    rb.add_argument("--cache", help=CACHE_HELP)
    rb.set_defaults(func=cmd_robustness)

    rp = sub.add_parser("report", help="one self-contained HTML page of a run's, a cv's or an experiment's "
                        "tables and figures")
    rp.add_argument("run_dir", help="a run folder, an `attsf cv` --out or an `attsf experiment` --out")
    rp.add_argument("--seed", type=seed, default=0, help="t-SNE seed")
    rp.add_argument("--cache", help=CACHE_HELP + " (a run folder)")
    rp.set_defaults(func=cmd_report)

    s = sub.add_parser("summary", help="print the model's layers and parameter counts")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(func=cmd_summary)

"""``attsf cv``, ``tune`` and ``experiment``: many runs of one config."""

from __future__ import annotations

import argparse
from pathlib import Path

from attsf.commands.args import config_of, count, floats, ints, seed


def cmd_cv(args: argparse.Namespace) -> None:
    cfg = config_of(args)
    out = args.out or f"runs/{cfg.name}"
    folds = ints("--folds", args.folds) if args.folds else None
    seeds = ints("--seeds", args.seeds) if args.seeds else None
    jobs = args.jobs
    from attsf.cv import cross_validate

    summary = cross_validate(cfg, out, folds, seeds, jobs)
    if summary:
        from attsf.cv_results import mean_text

        print(Path(out, "cv.md").read_text())
        print(f"{cfg.name}: {mean_text(summary)} over {len(summary['folds'])} runs -> {out}/cv.json")


def cmd_tune(args: argparse.Namespace) -> None:
    cfg = config_of(args)
    out = args.out or f"runs/tune/{args.study or cfg.name}"
    folds = ints("--folds", args.folds) if args.folds else None
    jobs = args.jobs
    from attsf.tune import overrides_text, tune

    summary = tune(cfg, args.space, args.trials, out, folds, jobs, args.storage, args.study, args.sampler_seed,
                   args.record)
    print(Path(out, "study.md").read_text())
    if summary["best"]:
        print(f"best overrides (validation speakers only): {overrides_text(summary['best']['overrides'])}")
        print(f"as a config: {out}/best.yaml (attsf cv {out}/best.yaml --seeds 0,1,2 trains it on every fold)")
    print(f"-> {out}/study.json")


def cmd_experiment(args: argparse.Namespace) -> None:
    from attsf.config import resolve_config_path

    path = resolve_config_path(args.config)
    out = args.out or f"runs/experiments/{path.stem}"
    folds = ints("--folds", args.folds) if args.folds else None
    fractions = floats("--fractions", args.fractions) if args.fractions else None
    snrs = floats("--snr", args.snr) if args.snr else None
    jobs = args.jobs
    from attsf.experiments import run_experiment

    table = run_experiment(args.name, path, args.overrides, out, folds, fractions, snrs, jobs)
    if table:  # rank 0
        print(table, end="")
        print(f"-> {out}/{args.name}.md")


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cv", help="k-fold cross-validation (finished folds are reused)")
    c.add_argument("config")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--out", help="output directory (default runs/NAME)")
    c.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    c.add_argument("--seeds", help="comma-separated seeds: every fold once per seed, in OUT/seed{S}/fold{K} "
                   "(default: the config's train.seed, in OUT/fold{K})")
    c.add_argument("--jobs", type=count, default=1, help="runs trained at once, in separate processes with "
                   "cores/JOBS threads each (CPU; 2 on 2 cores trains ~1.5x more per hour than 1 with 2 threads)")
    c.set_defaults(func=cmd_cv)

    tu = sub.add_parser("tune", help="choose settings on the validation speakers only (Optuna study; the test "
                        "split is never loaded)")
    tu.add_argument("config")
    tu.add_argument("overrides", nargs="*")
    tu.add_argument("--space", required=True, help="search space YAML: dotted key -> [choices] or {low, high, log, step}")
    tu.add_argument("--trials", type=count, default=20, help="finished or pruned trials the study ends with (default 20; "
                    "with --jobs up to JOBS-1 more, started before the last one finished); a space of choices with "
                    "no more combinations than this is tried whole, each combination once")
    tu.add_argument("--folds", help="comma-separated folds whose validation accuracy is averaged (default: all)")
    tu.add_argument("--jobs", type=count, default=1, help="trials trained at once, in separate processes")
    tu.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user@host/db for several machines "
                    "(pip install 'attsf[postgres]'; default: sqlite OUT/study.db)")
    tu.add_argument("--study", help="study name (default: the config's name)")
    tu.add_argument("--out", help="output folder: runs, study.json, study.md (default runs/tune/STUDY)")
    tu.add_argument("--sampler-seed", type=seed, default=0, help="seed of the TPE sampler")
    tu.add_argument("--from", dest="record", metavar="STUDY_JSON", help="start a new study from the record of one "
                    "with the same settings (its study.json), e.g. on another machine or after its database was lost: "
                    "its finished and pruned trials join as they were scored, not trained again")
    tu.set_defaults(func=cmd_tune)

    ex = sub.add_parser("experiment", help="a paper experiment over all folds, with the paper's numbers beside ours")
    ex.add_argument("name", choices=["variants", "ablations", "replacements", "robustness"])
    ex.add_argument("config", help="base config, e.g. ravdess_au")
    ex.add_argument("overrides", nargs="*")
    ex.add_argument("--out", help="output folder, shared by all experiments (default runs/experiments/CONFIG)")
    ex.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    ex.add_argument("--fractions", help="robustness: masking fractions (default 0.1,...,0.9)")
    ex.add_argument("--snr", help="robustness: audio noise SNRs in dB, or 'none' (default 20,10,5,0)")
    ex.add_argument("--jobs", type=count, default=1, help="train this many runs at once, from every row's folds (CPU)")
    ex.set_defaults(func=cmd_experiment)

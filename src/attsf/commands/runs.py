"""``attsf train``, ``evaluate`` and ``verify``: one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attsf.commands.args import CACHE_HELP, config_of
from attsf.errors import AttsfError


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume:
        from attsf.config import load_config

        if args.config is not None or args.overrides:
            given = " ".join(x for x in (args.config, *args.overrides) if x)
            raise AttsfError(f"--resume {args.resume} continues the run with its recorded settings; '{given}' "
                             "would change them: start a new run with --out instead")
        cfg = load_config(Path(args.resume) / "config.yaml")
    elif args.config is None:
        raise AttsfError("train needs a CONFIG (or --resume RUN_DIR)")
    else:
        cfg = config_of(args)
    from attsf.train import train  # Lightning: imported once the arguments have been checked

    out = args.resume or args.out or f"runs/{cfg.name}/fold{cfg.data.fold}"
    metrics = train(cfg, out, resume=bool(args.resume))
    if metrics:
        _print_metrics(metrics)


def _print_metrics(metrics: dict) -> None:
    for split in ("val", "test"):
        if split in metrics and "accuracy" in metrics[split]:
            m = metrics[split]
            print(f"{split}: accuracy {m['accuracy'] * 100:.2f} %  UA {m['unweighted_accuracy'] * 100:.2f} %  "
                  f"macro-F1 {m['macro_f1'] * 100:.2f} %  (n={m['n']})")
        elif split in metrics:  # a regression (CMU-MOSI)
            from attsf.cv_results import figure_text, figures

            print(f"{split}: " + "  ".join(figure_text(k, v) for k, v in figures(metrics[split]).items())
                  + f"  (n={metrics[split]['n']})")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from attsf.evaluate import cv_runs, require_run

    runs = cv_runs(args.run_dir)
    if not runs:
        require_run(args.run_dir)
    from attsf.io import write_json
    from attsf.train import evaluate_run

    name = f"eval_{args.split}{'_new_speakers' * args.new_speakers}.json"
    evals = {}
    for key, run in (runs or {"": Path(args.run_dir)}).items():
        evals[key] = evaluate_run(run, splits=(args.split,), cache=args.cache, new_speakers=args.new_speakers)
        write_json(run / name, evals[key])
        if runs and not args.json:
            print(f"{key}: ", end="")
            _print_metrics(evals[key])
    if not runs:
        if args.json:
            print(json.dumps(evals[""], indent=2))
        else:
            _print_metrics(evals[""])
        return
    from attsf.cv_results import evaluations_summary, mean_text

    summary = evaluations_summary(evals, args.split, args.new_speakers)
    write_json(Path(args.run_dir) / name, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(runs)} runs, {summary['setting']}: {args.split} {mean_text(summary)} -> "
              f"{Path(args.run_dir) / name}")


def cmd_verify(args: argparse.Namespace) -> int:
    from attsf.train import train
    from attsf.verify import compare, plan

    cfg, key, recorded, notes = plan(args.result, args.run, args.cache)
    out = Path(args.out or Path("runs/verify") / f"{Path(args.result).stem}-{key.replace('/', '-')}")
    print(f"{args.result}: re-running {key} (seed {cfg.train.seed}, {cfg.train.threads} thread(s)) in {out}")
    for note in notes:
        print(f"differs: {note}")
    metrics = train(cfg, out, resume=(out / "config.yaml").is_file())
    if metrics is None:
        return 0
    rows = compare(recorded, metrics)
    fmt = lambda n, v: (f"{v:.4f}" if n.endswith("_mae") else f"{v:.2f}") if isinstance(v, float) else str(v)  # noqa: E731
    print(f"{'':14} {'recorded':>9} {'now':>9}")
    for name, a, b, same in rows:
        print(f"{name:14} {fmt(name, a):>9} {fmt(name, b):>9}  {'same' if same else 'DIFFERENT'}")
    return 0 if all(r[3] for r in rows) else 1


def cmd_export(args: argparse.Namespace) -> None:
    from attsf.export import export_model
    from attsf.io import read_json

    target = export_model(args.run_dir, args.out, args.name, args.about)
    card = read_json(target.with_suffix(".json"))["card"]
    ev = card["evaluation"]
    scores = ", ".join(f"{k.replace('_', '-')} {v['accuracy']:.2f} %" for k, v in ev.items() if k.endswith("_speaker"))
    print(f"{target} (+ .json): {card['title']}; held-out speakers {' '.join(ev['speakers'])}: {scores}")


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train one run (one fold) from a config")
    t.add_argument("config", nargs="?", help="YAML config path or packaged name (e.g. ravdess_au)")
    t.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_epochs=50 model.fusion=l2")
    t.add_argument("--out", help="run directory (default runs/NAME/foldK)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a run's best weights on a split (of every run of a cv folder)")
    e.add_argument("run_dir", help="a run, or an attsf cv folder: each of its runs, and mean ± std over them")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--cache", help=CACHE_HELP)
    e.add_argument("--new-speakers", action="store_true",
                   help="normalise the split's speakers with the training speakers' pooled statistics, as predict "
                        "does for a new speaker (runs trained with data.normalize=speaker)")
    e.set_defaults(func=cmd_evaluate)

    vf = sub.add_parser("verify", help="re-run one fold of a recorded result (cv.json or metrics.json) with its "
                        "recorded settings; print recorded vs now (exit 1 if they differ)")
    vf.add_argument("result", help="a cv.json or a run's metrics.json")
    vf.add_argument("--run", help="which run: fold number, foldK or seedS/foldK (default: the first)")
    vf.add_argument("--cache", help="the cache, where it is not at the recorded path")
    vf.add_argument("--out", help="run directory (default runs/verify/NAME-RUN; resumed if it exists)")
    vf.set_defaults(func=cmd_verify)

    ex = sub.add_parser("export", help="a finished run's weights as a model to share: NAME.safetensors + NAME.json "
                        "(config, statistics, and a card with its held-out accuracy as new and own speakers)")
    ex.add_argument("run_dir")
    ex.add_argument("--name", required=True, help="file name of the model, e.g. ravdess-speech")
    ex.add_argument("--out", default=".", help="folder to write to (default: here)")
    ex.add_argument("--about", help="YAML with the card's text: title, intended_use, limitations, licence, ...")
    ex.set_defaults(func=cmd_export)

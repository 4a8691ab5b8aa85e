"""The ``attsf`` command line. Each command is a thin layer over a module of the package."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from attsf.errors import AttsfError, quiet_library_warnings

log = logging.getLogger("attsf")


def _config(args: argparse.Namespace):
    from attsf.config import load_config, resolve_config_path

    return load_config(resolve_config_path(args.config), args.overrides)


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
        cfg = _config(args)
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
        elif split in metrics:
            print(f"{split}: {metrics[split]}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from attsf.evaluate import require_run

    require_run(args.run_dir)
    from attsf.io import write_json
    from attsf.train import evaluate_run

    metrics = evaluate_run(args.run_dir, splits=(args.split,), cache=args.cache, new_speakers=args.new_speakers)
    write_json(Path(args.run_dir) / f"eval_{args.split}{'_new_speakers' * args.new_speakers}.json", metrics)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics)


def cmd_cv(args: argparse.Namespace) -> None:
    cfg = _config(args)
    out = args.out or f"runs/{cfg.name}"
    folds = _ints("--folds", args.folds) if args.folds else None
    seeds = _ints("--seeds", args.seeds) if args.seeds else None
    jobs = args.jobs
    from attsf.cv import cross_validate

    summary = cross_validate(cfg, out, folds, seeds, jobs)
    if summary:
        print(Path(out, "cv.md").read_text())
        print(f"{cfg.name}: accuracy {summary['accuracy_mean']:.2f} ± {summary['accuracy_std']:.2f} % "
              f"over {len(summary['folds'])} runs -> {out}/cv.json")


def cmd_tune(args: argparse.Namespace) -> None:
    cfg = _config(args)
    out = args.out or f"runs/tune/{args.study or cfg.name}"
    folds = _ints("--folds", args.folds) if args.folds else None
    jobs = args.jobs
    from attsf.tune import overrides_text, tune

    summary = tune(cfg, args.space, args.trials, out, folds, jobs, args.storage, args.study, args.sampler_seed)
    print(Path(out, "study.md").read_text())
    if summary["best"]:
        print(f"best overrides (validation speakers only): {overrides_text(summary['best']['overrides'])}")
    print(f"-> {out}/study.json")


def _ints(flag: str, text: str) -> list[int]:
    """A comma-separated list of whole numbers from 0 to 2^32-1, each once (in order)."""
    try:
        values = [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise AttsfError(f"{flag} {text}: expected comma-separated whole numbers, e.g. 0,1,2") from None
    if not values or not all(0 <= v <= 2**32 - 1 for v in values):
        raise AttsfError(f"{flag} {text}: expected whole numbers from 0 to 2^32-1, e.g. 0,1,2")
    return list(dict.fromkeys(values))


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
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"{'':14} {'recorded':>9} {'now':>9}")
    for name, a, b, same in rows:
        print(f"{name:14} {fmt(a):>9} {fmt(b):>9}  {'same' if same else 'DIFFERENT'}")
    return 0 if all(r[3] for r in rows) else 1


def cmd_robustness(args: argparse.Namespace) -> None:
    fractions = _floats("--fractions", args.fractions)
    if not all(0 <= f <= 1 for f in fractions):
        raise AttsfError(f"--fractions {args.fractions}: each must be in [0, 1]")
    snrs = _floats("--snr", args.snr)
    from attsf.robustness import robustness, robustness_table

    result = robustness(args.run_dir, fractions, args.seed, snrs, cache=args.cache)
    print(robustness_table(result), end="")


def _floats(flag: str, text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers; "none" is the empty list."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(f) for f in text.split(","))
    except ValueError:
        raise AttsfError(f"{flag} {text}: expected comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise AttsfError(f"{flag} {text}: expected finite numbers")
    return values


def cmd_experiment(args: argparse.Namespace) -> None:
    from attsf.config import resolve_config_path

    path = resolve_config_path(args.config)
    out = args.out or f"runs/experiments/{path.stem}"
    folds = _ints("--folds", args.folds) if args.folds else None
    fractions = _floats("--fractions", args.fractions) if args.fractions else None
    snrs = _floats("--snr", args.snr) if args.snr else None
    jobs = args.jobs
    from attsf.experiments import run_experiment

    table = run_experiment(args.name, path, args.overrides, out, folds, fractions, snrs, jobs)
    if table:  # rank 0
        print(table, end="")
        print(f"-> {out}/{args.name}.md")


def cmd_report(args: argparse.Namespace) -> None:
    from attsf.overview import build_overview
    from attsf.report import build_report

    run = (Path(args.run_dir) / "config.yaml").is_file()
    print(f"report -> {build_report(args.run_dir, args.seed, args.cache) if run else build_overview(args.run_dir)}")


def cmd_summary(args: argparse.Namespace) -> None:
    from attsf.config import ignored_keys
    from attsf.summary import summary_text

    cfg = _config(args)
    print(summary_text(cfg.model))
    for note in ignored_keys(cfg):
        print(f"note: {note}")


def cmd_preprocess(args: argparse.Namespace) -> int:
    from attsf.data.build import BuildOptions, build_cache

    opts = BuildOptions(workers=args.workers, shard=_parse_shard(args.shard), pad=args.pad,
                        visual_features=args.visual_features, weights=args.weights, text=args.text,
                        audio_only=args.audio_only, au_csv=args.au_csv, allow_no_face=args.allow_no_face,
                        detect_height=args.detect_height, min_face=args.min_face, progress=not args.quiet,
                        device=args.device)
    labels = args.labels.split(",") if args.labels else None
    summary = build_cache(args.dataset, args.root, args.out, opts, labels)
    print("\n".join(summary.lines()))
    if summary.failures and not args.allow_failures:
        print(f"attsf: error: {len(summary.failures)} clip(s) failed (listed above); the others are cached. "
              "--allow-failures exits 0 all the same", file=sys.stderr)
        return 1
    return 0


def cmd_convert_weights(args: argparse.Namespace) -> None:
    from attsf.efficientface import convert_checkpoint

    info = convert_checkpoint(args.src, args.dst)
    print(f"{args.dst}: {info['tensors']} tensors, {info['parameters']:,} parameters "
          f"(left out: {', '.join(info['dropped']) or 'nothing'}); loads strictly into EfficientFace")


def cmd_inspect(args: argparse.Namespace) -> int:
    from attsf.data.cache import ClipCache
    from attsf.data.qa import inspect_cache

    bad = []
    if args.verify:  # first, so that the contact sheet never reads a broken clip
        cache = ClipCache(args.cache)
        bad = cache.unreadable(cache.records, full=True)
    sheet = None if args.no_sheet or bad else (args.sheet or str(Path(args.cache) / "contact_sheet.png"))
    print("\n".join(inspect_cache(args.cache, sheet, max_fallback=args.max_fallback, n_sheet=args.clips)))
    if args.verify:
        print(f"verified every clip file: {len(bad)} of {len(cache.records)} do not read back"
              + ("; preprocess again to redo them (finished clips are kept)" if bad else ""))
        for path, reason in bad:
            print(f"  {path}: {reason}")
    return 1 if bad else 0


CACHE_HELP = "the clip cache, where it is not at the run's recorded data.cache (a copied or moved run)"


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    from attsf.data.media import MEDIA_SUFFIXES
    from attsf.predict import EmotionRecognizer

    paths: list[Path] = []
    for item in map(Path, args.clips):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
        else:
            paths.append(item)
    if not paths:
        raise AttsfError("no clips given (or no media files in the folder)")
    from attsf.card import card_line

    rec = EmotionRecognizer.from_pretrained(args.run, allow_unfinished=args.allow_unfinished)
    results = rec.predict_many(paths)
    as_csv = args.csv or (len(args.clips) == 1 and Path(args.clips[0]).is_dir() and not args.json)
    if not args.json:  # the card on stderr keeps the table and CSV clean for pipes
        print(card_line(rec.card), file=sys.stderr)
        if rec.card.get("warning"):
            print(f"WARNING: {rec.card['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": rec.card, "clips": [r.to_json() for r in results]}, indent=2))
    elif as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "label", *[f"{k} %" for k in rec.labels], "fallback_frames", "speech_seconds", "ms",
                    "note", "error"])
        for r in results:
            probs = [f"{100 * r.probabilities[k]:.2f}" if r.probabilities else "" for k in rec.labels]
            w.writerow([r.path, r.label or "", *probs, r.fallback_frames, "" if r.speech_seconds is None else
                        r.speech_seconds, round(1000 * r.timings.get("total", 0)), r.note or "", r.error or ""])
        print(buf.getvalue(), end="")
    elif any(not r.error for r in results):
        from rich.console import Console
        from rich.table import Table

        notes = any(r.note for r in results)
        table = Table("clip", "emotion", "confidence", "audio head", "visual head", "frames without a face", "ms",
                      *["note"] * notes)
        for r in results:
            if r.error:
                continue
            top = lambda d: f"{max(d, key=d.get)} {100 * max(d.values()):.1f} %" if d else "-"  # noqa: E731
            table.add_row(Path(r.path).name, r.label or "-", f"{100 * r.probabilities[r.label]:.1f} %" if r.label
                          else "-", top(r.audio_probabilities), top(r.visual_probabilities), str(r.fallback_frames),
                          str(round(1000 * r.timings.get("total", 0))), *[r.note or ""] * notes)
        Console(width=None if sys.stdout.isatty() else 1000).print(table)  # piped: whole names, no folding
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"attsf: error: {r.error}", file=sys.stderr)
    if failed and len(failed) == len(results):
        print(f"attsf: error: none of the {len(results)} clip(s) could be recognised (reasons above)", file=sys.stderr)
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> None:
    from attsf.serve import ServeLimits, serve

    limits = ServeLimits(max_bytes=int(args.max_mb * 2**20), max_seconds=args.max_seconds, max_pending=args.max_pending)
    serve(args.run, args.host, args.port, limits, args.examples, args.allow_unfinished)


def _parse_shard(spec: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise AttsfError(f"--shard {spec}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise AttsfError(f"--shard {spec}: I must be in 0..N-1")
    return index, count


def cmd_demo(args: argparse.Namespace) -> None:
    from attsf.demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs)


class Parser(argparse.ArgumentParser):
    """argparse with attsf's one-line errors (exit 2)."""

    def error(self, message: str):
        print(f"attsf: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind: type, low: float | None, high: float | None, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


_count = _number(int, 1, None, "a whole number of at least 1")
_seed = _number(int, 0, 2**32 - 1, "a seed (a whole number from 0 to 2^32-1)")
_port = _number(int, 1, 65535, "a port number (1-65535)")
_positive = _number(float, 1e-9, None, "a positive number")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="attsf", description="ATTSF-Net audio-visual emotion recognition")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one run (one fold) from a config")
    t.add_argument("config", nargs="?", help="YAML config path or packaged name (e.g. ravdess_au)")
    t.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_epochs=50 model.fusion=l2")
    t.add_argument("--out", help="run directory (default runs/NAME/foldK)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a run's best weights on a split")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--cache", help=CACHE_HELP)
    e.add_argument("--new-speakers", action="store_true",
                   help="normalise the split's speakers with the training speakers' pooled statistics, as predict "
                        "does for a new speaker (runs trained with data.normalize=speaker)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("cv", help="k-fold cross-validation (finished folds are reused)")
    c.add_argument("config")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--out", help="output directory (default runs/NAME)")
    c.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    c.add_argument("--seeds", help="comma-separated seeds: every fold once per seed, in OUT/seed{S}/fold{K} "
                   "(default: the config's train.seed, in OUT/fold{K})")
    c.add_argument("--jobs", type=_count, default=1, help="runs trained at once, in separate processes with "
                   "cores/JOBS threads each (CPU; 2 on 2 cores trains ~1.5x more per hour than 1 with 2 threads)")
    c.set_defaults(func=cmd_cv)

    tu = sub.add_parser("tune", help="choose settings on the validation speakers only (Optuna study; the test "
                        "split is never loaded)")
    tu.add_argument("config")
    tu.add_argument("overrides", nargs="*")
    tu.add_argument("--space", required=True, help="search space YAML: dotted key -> [choices] or {low, high, log, step}")
    tu.add_argument("--trials", type=_count, default=20, help="finished or pruned trials the study ends with (default 20; "
                    "with --jobs up to JOBS-1 more, started before the last one finished)")
    tu.add_argument("--folds", help="comma-separated folds whose validation accuracy is averaged (default: all)")
    tu.add_argument("--jobs", type=_count, default=1, help="trials trained at once, in separate processes")
    tu.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://host/db for several machines "
                    "(default: sqlite OUT/study.db)")
    tu.add_argument("--study", help="study name (default: the config's name)")
    tu.add_argument("--out", help="output folder: runs, study.json, study.md (default runs/tune/STUDY)")
    tu.add_argument("--sampler-seed", type=_seed, default=0, help="seed of the TPE sampler")
    tu.set_defaults(func=cmd_tune)

    vf = sub.add_parser("verify", help="re-run one fold of a recorded result (cv.json or metrics.json) with its "
                        "recorded settings; print recorded vs now (exit 1 if they differ)")
    vf.add_argument("result", help="a cv.json or a run's metrics.json")
    vf.add_argument("--run", help="which run: fold number, foldK or seedS/foldK (default: the first)")
    vf.add_argument("--cache", help="the cache, where it is not at the recorded path")
    vf.add_argument("--out", help="run directory (default runs/verify/NAME-RUN; resumed if it exists)")
    vf.set_defaults(func=cmd_verify)

    rb = sub.add_parser("robustness", help="test accuracy with a fraction of one modality's time steps replaced by noise")
    rb.add_argument("run_dir")
    rb.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    rb.add_argument("--seed", type=_seed, default=0)
    rb.add_argument("--snr", default="20,10,5,0", help="audio noise SNRs in dB, or 'none' (needs the source audio)")
    rb.add_argument("--cache", help=CACHE_HELP)
    rb.set_defaults(func=cmd_robustness)

    ex = sub.add_parser("experiment", help="a paper experiment over all folds, with the paper's numbers beside ours")
    ex.add_argument("name", choices=["variants", "ablations", "replacements", "robustness"])
    ex.add_argument("config", help="base config, e.g. ravdess_au")
    ex.add_argument("overrides", nargs="*")
    ex.add_argument("--out", help="output folder, shared by all experiments (default runs/experiments/CONFIG)")
    ex.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    ex.add_argument("--fractions", help="robustness: masking fractions (default 0.1,...,0.9)")
    ex.add_argument("--snr", help="robustness: audio noise SNRs in dB, or 'none' (default 20,10,5,0)")
    ex.add_argument("--jobs", type=_count, default=1, help="train this many runs at once, from every row's folds (CPU)")
    ex.set_defaults(func=cmd_experiment)

    rp = sub.add_parser("report", help="one self-contained HTML page of a run's, a cv's or an experiment's "
                        "tables and figures")
    rp.add_argument("run_dir", help="a run folder, an `attsf cv` --out or an `attsf experiment` --out")
    rp.add_argument("--seed", type=_seed, default=0, help="t-SNE seed")
    rp.add_argument("--cache", help=CACHE_HELP + " (a run folder)")
    rp.set_defaults(func=cmd_report)

    s = sub.add_parser("summary", help="print the model's layers and parameter counts")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(func=cmd_summary)

    pp = sub.add_parser("preprocess", help="build the clip cache from raw files")
    pp.add_argument("dataset", choices=["ravdess", "iemocap", "mosi", "manifest"])
    pp.add_argument("--root", required=True,
                    help="dataset folder (RAVDESS: Actor_XX/; IEMOCAP: Session1..5/; MOSI: label.csv + Raw/, "
                         "or a feature .pkl); manifest: the CSV")
    pp.add_argument("--out", required=True, help="cache directory")
    pp.add_argument("--workers", type=_count, default=1, help="worker processes")
    pp.add_argument("--shard", default="0/1", help="I/N: process every N-th clip starting at I (cluster arrays)")
    pp.add_argument("--visual-features", default="frames", choices=["frames", "efficientface"],
                    help="store 224x224 face crops, or per-frame 1024-d features of a frozen EfficientFace")
    pp.add_argument("--weights", help="EfficientFace safetensors (from convert-weights) for --visual-features efficientface")
    pp.add_argument("--text", help="sentence features: 'minilm' (bundled) or a folder with BERT weights")
    pp.add_argument("--audio-only", action="store_true", help="no visual input (RAVDESS: use the 03-* files)")
    pp.add_argument("--au-csv", help="RAVDESS: OpenFace AU table joined by clip id as the visual input")
    pp.add_argument("--labels", help="manifest: label names in class order (default: order of appearance)")
    pp.add_argument("--device", default="auto", help="where MTCNN runs: auto (CUDA when there is one), cpu, cuda, "
                    "cuda:N")
    pp.add_argument("--allow-failures", action="store_true", help="exit 0 even when some clips failed (they are "
                    "listed either way)")
    pp.add_argument("--allow-no-face", action="store_true", help="centre crops for clips where no face is found")
    pp.add_argument("--detect-height", type=_count, default=288, help="frame height MTCNN runs at")
    pp.add_argument("--min-face", type=_count, default=40,
                    help="smallest face looked for, in pixels at --detect-height (lower it for small faces)")
    pp.add_argument("--pad", default="centre", choices=["centre", "right"], help="padding of clips under 3.6 s")
    pp.add_argument("--quiet", action="store_true")
    pp.set_defaults(func=cmd_preprocess)

    cw = sub.add_parser("convert-weights", help="EfficientFace authors' .pth.tar -> safetensors (no unpickling of code)")
    cw.add_argument("src")
    cw.add_argument("dst")
    cw.set_defaults(func=cmd_convert_weights)

    ins = sub.add_parser("inspect", help="counts, suspicious clips and a contact sheet of face crops of a cache")
    ins.add_argument("cache")
    ins.add_argument("--sheet", help="contact sheet PNG (default CACHE/contact_sheet.png)")
    ins.add_argument("--no-sheet", action="store_true")
    ins.add_argument("--clips", type=_count, default=12, help="clips on the contact sheet")
    ins.add_argument("--verify", action="store_true", help="read every clip file and list those that do not read "
                     "back (exit 1 if any)")
    ins.add_argument("--max-fallback", type=_count, default=5, help="flag clips with at least this many fallback frames")
    ins.set_defaults(func=cmd_inspect)

    pr = sub.add_parser("predict", help="emotion of your own clips (table, --json, or CSV for a folder)")
    pr.add_argument("clips", nargs="+", help="video or audio files, or folders of them")
    pr.add_argument("--run", required=True, help="run directory or weights .safetensors (with its .json sidecar)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--csv", action="store_true", help="print CSV (the default for a folder)")
    pr.add_argument("--allow-unfinished", action="store_true", help="use the weights of a run stopped before its end")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="web page and JSON API for predictions")
    sv.add_argument("--run", required=True, help="run directory or weights .safetensors")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_port, default=8000)
    sv.add_argument("--max-mb", type=_positive, default=50, help="upload size limit in MB")
    sv.add_argument("--max-seconds", type=_positive, default=60, help="clip duration limit")
    sv.add_argument("--max-pending", type=_count, default=4, help="requests in flight before 503")
    sv.add_argument("--allow-unfinished", action="store_true", help="serve the weights of a run stopped before its end")
    sv.add_argument("--examples", help="folder of clips the page offers as examples (default: three generated ones)")
    sv.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="build a small sample set, train and evaluate (about 1 minute on 2 CPU cores)")
    d.add_argument("--out", default="runs/demo", help="where the demo data and run go")
    d.add_argument("--epochs", type=_count, default=10)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    for old in [h for h in log.handlers if getattr(h, "attsf_cli", False)]:  # main() called again in one process
        log.removeHandler(old)
    handler = logging.StreamHandler()
    handler.attsf_cli = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    quiet_library_warnings()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may also follow options such as --out
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        code = args.func(args)
    except AttsfError as exc:
        print(f"attsf: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("attsf: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path too long, a folder that is a file, a place that cannot be written
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"attsf: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback on request
        if args.debug:
            raise
        text = str(exc).splitlines()[0] if str(exc) else ""
        print(f"attsf: error: unexpected {type(exc).__name__}{': ' + text if text else ''} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

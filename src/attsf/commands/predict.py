"""``attsf predict``, ``serve`` and ``demo``: recognising emotions in clips."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attsf.commands.args import count, port, positive
from attsf.errors import AttsfError

DEFAULT_MODEL = "ravdess-speech"  # packaged in attsf/pretrained (attsf export)


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    from attsf.data.media import MEDIA_SUFFIXES
    from attsf.predict import MIN_ENROL_CLIPS, EmotionRecognizer

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
    results = rec.predict_many(paths, same_speaker=args.same_speaker)
    enrolled = next((r.speaker_clips for r in results if r.speaker_clips), None)
    if enrolled is not None and enrolled < MIN_ENROL_CLIPS and not rec.prior_clips:  # runs of before the prior
        print(f"note: --same-speaker with {enrolled} clip(s) of speech: statistics of fewer than {MIN_ENROL_CLIPS} "
              "clips are noisier than the training speakers' pooled ones and usually cost accuracy", file=sys.stderr)
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
        video = rec.visual_kind != "none"  # an audio network's table has no heads or faces to show
        table = Table("clip", "emotion", "confidence", *["audio head", "visual head", "frames without a face"] * video,
                      "speech s", "ms", *["note"] * notes)
        for r in results:
            if r.error:
                continue
            top = lambda d: f"{max(d, key=d.get)} {100 * max(d.values()):.1f} %" if d else "-"  # noqa: E731
            heads = [top(r.audio_probabilities), top(r.visual_probabilities), str(r.fallback_frames)] * video
            table.add_row(Path(r.path).name, r.label or "-", f"{100 * r.probabilities[r.label]:.1f} %" if r.label
                          else "-", *heads, "-" if r.speech_seconds is None else f"{r.speech_seconds:.1f}",
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


def cmd_demo(args: argparse.Namespace) -> None:
    from attsf.demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs)


def register(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="emotion of your own clips (table, --json, or CSV for a folder)")
    pr.add_argument("clips", nargs="+", help="video or audio files, or folders of them")
    pr.add_argument("--run", default=DEFAULT_MODEL, help="run directory, weights .safetensors (with its .json "
                    f"sidecar) or a packaged model's name (default {DEFAULT_MODEL}: RAVDESS speech, audio only)")
    pr.add_argument("--same-speaker", action="store_true", help="the clips are of one person: normalise them with "
                    "their own statistics, as the model was trained (more accurate than as a stranger; several clips)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--csv", action="store_true", help="print CSV (the default for a folder)")
    pr.add_argument("--allow-unfinished", action="store_true", help="use the weights of a run stopped before its end")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="web page and JSON API for predictions")
    sv.add_argument("--run", default=DEFAULT_MODEL, help="run directory, weights .safetensors or a packaged model's "
                    f"name (default {DEFAULT_MODEL})")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=port, default=8000)
    sv.add_argument("--max-mb", type=positive, default=50, help="upload size limit in MB")
    sv.add_argument("--max-seconds", type=positive, default=60, help="clip duration limit")
    sv.add_argument("--max-pending", type=count, default=4, help="requests in flight before 503")
    sv.add_argument("--allow-unfinished", action="store_true", help="serve the weights of a run stopped before its end")
    sv.add_argument("--examples", help="folder of clips the page offers as examples (default: three generated ones)")
    sv.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="build a small sample set, train and evaluate (about 1 minute on 2 CPU cores)")
    d.add_argument("--out", default="runs/demo", help="where the demo data and run go")
    d.add_argument("--epochs", type=count, default=10)
    d.set_defaults(func=cmd_demo)

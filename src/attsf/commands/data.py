"""``attsf preprocess``, ``convert-weights`` and ``inspect``: clip caches and weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attsf.commands.args import count
from attsf.errors import AttsfError


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


def _parse_shard(spec: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise AttsfError(f"--shard {spec}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise AttsfError(f"--shard {spec}: I must be in 0..N-1")
    return index, count


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


def register(sub: argparse._SubParsersAction) -> None:
    pp = sub.add_parser("preprocess", help="build the clip cache from raw files")
    pp.add_argument("dataset", choices=["ravdess", "iemocap", "mosi", "manifest"])
    pp.add_argument("--root", required=True,
                    help="dataset folder (RAVDESS: Actor_XX/; IEMOCAP: Session1..5/; MOSI: label.csv + Raw/, "
                         "or a feature .pkl); manifest: the CSV")
    pp.add_argument("--out", required=True, help="cache directory")
    pp.add_argument("--workers", type=count, default=1, help="worker processes")
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
    pp.add_argument("--detect-height", type=count, default=288, help="frame height MTCNN runs at")
    pp.add_argument("--min-face", type=count, default=40,
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
    ins.add_argument("--clips", type=count, default=12, help="clips on the contact sheet")
    ins.add_argument("--verify", action="store_true", help="read every clip file and list those that do not read "
                     "back (exit 1 if any)")
    ins.add_argument("--max-fallback", type=count, default=5, help="flag clips with at least this many fallback frames")
    ins.set_defaults(func=cmd_inspect)

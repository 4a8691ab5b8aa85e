"""The ``attsf`` command line: the parser and the error handling around every command.
Each command's arguments and handler live in ``attsf.commands``, beside the code they call."""

from __future__ import annotations

import argparse
import logging
import sys

from attsf.commands import analysis, data, predict, runs, studies
from attsf.errors import AttsfError, quiet_library_warnings

log = logging.getLogger("attsf")


class Parser(argparse.ArgumentParser):
    """argparse with attsf's one-line errors (exit 2)."""

    def error(self, message: str):
        print(f"attsf: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="attsf", description="ATTSF-Net audio-visual emotion recognition")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (runs, studies, analysis, data, predict):
        group.register(sub)
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

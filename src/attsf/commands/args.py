"""Argument types and helpers shared by the commands."""

from __future__ import annotations

import argparse
import math

from attsf.errors import AttsfError

CACHE_HELP = "the clip cache, where it is not at the run's recorded data.cache (a copied or moved run)"


def config_of(args: argparse.Namespace):
    """The command's CONFIG (a path or a packaged name) with its key=value overrides."""
    from attsf.config import load_config, resolve_config_path

    return load_config(resolve_config_path(args.config), args.overrides)


def ints(flag: str, text: str) -> list[int]:
    """A comma-separated list of whole numbers from 0 to 2^32-1, each once (in order)."""
    try:
        values = [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise AttsfError(f"{flag} {text}: expected comma-separated whole numbers, e.g. 0,1,2") from None
    if not values or not all(0 <= v <= 2**32 - 1 for v in values):
        raise AttsfError(f"{flag} {text}: expected whole numbers from 0 to 2^32-1, e.g. 0,1,2")
    return list(dict.fromkeys(values))


def floats(flag: str, text: str) -> tuple[float, ...]:
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

count = _number(int, 1, None, "a whole number of at least 1")
seed = _number(int, 0, 2**32 - 1, "a seed (a whole number from 0 to 2^32-1)")
port = _number(int, 1, 65535, "a port number (1-65535)")
positive = _number(float, 1e-9, None, "a positive number")

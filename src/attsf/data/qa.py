"""``attsf inspect``: what is in a cache, which clips look wrong, and a contact sheet of
face crops so a person can see that the crops are faces."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np

from attsf.data.cache import ClipCache


def _table(title: str, counts: Counter) -> list[str]:
    items = sorted(counts.items(), key=lambda kv: str(kv[0]))
    return [f"{title}: " + ", ".join(f"{k or '-'} {v}" for k, v in items)]


def inspect_cache(cache_dir: str | Path, sheet: str | Path | None = None, max_fallback: int = 5,
                  n_sheet: int = 12, seed: int = 0) -> list[str]:
    cache = ClipCache(cache_dir)
    records = cache.records
    lines = [f"{cache.root}: dataset {cache.dataset}, {len(records)} clips, labels {', '.join(cache.labels)}",
             f"visual input: {cache.settings.get('visual', {})}"]
    lines += _table("per class", Counter(r.label for r in records))
    lines += _table("per speaker", Counter(r.speaker for r in records))
    lines += _table("per split", Counter(r.split for r in records))
    fallback = sum(r.fallback_frames for r in records)
    flagged = [r for r in records if r.fallback_frames >= max_fallback]
    lines.append(f"fallback face frames: {fallback} in {sum(r.fallback_frames > 0 for r in records)} clips; "
                 f"{len(flagged)} clips with >= {max_fallback}")
    lines += [f"  check: {r.id} ({r.source}): {r.fallback_frames} fallback frames" for r in flagged[:50]]
    if sheet is not None:
        if cache.settings.get("visual", {}).get("kind") != "frames":
            lines.append("no contact sheet: this cache holds no face frames")
        else:
            rng = np.random.default_rng(seed)
            worst = sorted(flagged, key=lambda r: -r.fallback_frames)[: n_sheet // 2]
            taken = {r.id for r in worst}
            rest = [r for r in records if r.id not in taken]
            picks = worst + [rest[i] for i in rng.permutation(len(rest))[: n_sheet - len(worst)]]
            contact_sheet(cache, picks, Path(sheet))
            lines.append(f"contact sheet of {len(picks)} clips -> {sheet}")
    return lines


def contact_sheet(cache: ClipCache, records: list, path: Path, thumb: int = 96) -> None:
    """One row per clip: its label and id, then every face frame (fallback frames framed red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attsf.io import atomic_write_bytes

    rows = []
    for r in records:
        frames = cache.load(r)["visual"].numpy()
        detected = r.extra.get("face_detected", [True] * len(frames))
        tiles = []
        for frame, ok in zip(frames, detected):
            tile = np.asarray(_resize(frame, thumb))
            if not ok:
                tile = tile.copy()
                tile[:4], tile[-4:], tile[:, :4], tile[:, -4:] = (255, 0, 0)
            tiles.append(tile)
        rows.append((r, np.concatenate(tiles, axis=1)))
    fig, axes = plt.subplots(len(rows), 1, figsize=(len(rows[0][1][0]) / 80, 1.45 * len(rows)), squeeze=False)
    for ax, (r, strip) in zip(axes[:, 0], rows):
        ax.imshow(strip)
        ax.set_axis_off()
        ax.set_title(f"{r.label} | {r.id} | speaker {r.speaker} | fallback {r.fallback_frames}", fontsize=8, loc="left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _resize(frame: np.ndarray, size: int):
    from PIL import Image

    return Image.fromarray(frame).resize((size, size), Image.BILINEAR)

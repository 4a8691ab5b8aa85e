"""Speaker-level normalisation of feature inputs (``data.normalize=speaker``).

Each speaker's float features are z-scored with the mean and standard deviation of that
speaker's own clips: per MFCC coefficient over all frames (audio ``(n_mfcc, T)``), per
feature dimension over all steps (visual features ``(T_v, D)``). The statistics use no
labels, so test speakers are normalised with their own clips too (the usual speaker
normalisation of speech emotion recognition). Face frames (uint8) are left alone.

A single clip of an unknown speaker (``attsf predict``) falls back to the statistics
pooled over the training speakers, which travel in the checkpoint sidecar. A speaker known
from a few clips (enrolment, ``--same-speaker``) gets statistics between the two: its own,
shrunk towards the pooled ones with the weight ``n / (n + k)`` of ``n`` clips, where ``k``
(per feature, in clips; ``prior_clips``) is the spread of single clips' means within a
training speaker over the spread of the training speakers' means (empirical Bayes: one
clip's mean says as much about its speaker as 1/k of the population does). It needs no
setting; the sidecar carries ``k``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch

from attsf.data.cache import ClipCache, ClipRecord

EPS = 1e-5
# tensor name -> the axis that holds the features (statistics are taken over the others)
FEATURE_AXIS = {"audio": 0, "visual": -1}

Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (mean, std), each of shape (features,)


def _rows(name: str, x: torch.Tensor) -> torch.Tensor:
    """(steps, features) view of one clip's tensor."""
    return x.reshape(x.shape[0], -1).T if FEATURE_AXIS[name] == 0 else x.reshape(-1, x.shape[-1])


def clip_stats(items: Iterable[dict[str, torch.Tensor]]) -> Stats:
    """Mean and std per feature over every step of the given clips (float tensors only)."""
    rows: dict[str, list[torch.Tensor]] = defaultdict(list)
    for item in items:
        for name in FEATURE_AXIS:
            x = item.get(name)
            if x is not None and x.is_floating_point():
                rows[name].append(_rows(name, x).double())
    stats = {}
    for name, parts in rows.items():
        cat = torch.cat(parts)
        stats[name] = (cat.mean(0).float(), cat.std(0, unbiased=False).float().clamp_min(EPS))
    return stats


def speaker_stats(cache: ClipCache, records: Iterable[ClipRecord]) -> dict[str, Stats]:
    """``speaker -> stats`` over each speaker's cached clips."""
    by_speaker: dict[str, list[ClipRecord]] = defaultdict(list)
    for r in records:
        by_speaker[r.speaker].append(r)
    # read only the float inputs: face frames (uint8) are never normalised
    keys = [k for k in FEATURE_AXIS if k == "audio" or cache.settings.get(k, {}).get("kind") == "features"]
    return {s: clip_stats(cache.load(r, keys) for r in rs) for s, rs in sorted(by_speaker.items())}


def pooled(per_speaker: Iterable[Stats]) -> Stats:
    """The average of several speakers' means and stds: the fallback for an unknown speaker."""
    per_speaker = list(per_speaker)
    return {name: (torch.stack([s[name][0] for s in per_speaker]).mean(0),
                   torch.stack([s[name][1] for s in per_speaker]).mean(0))
            for name in per_speaker[0]} if per_speaker else {}


def apply(item: dict[str, torch.Tensor], stats: Stats) -> dict[str, torch.Tensor]:
    """``item`` with its feature tensors z-scored by ``stats``."""
    out = dict(item)
    for name, (mean, std) in stats.items():
        x = item.get(name)
        if x is None or not x.is_floating_point():
            continue
        shape = (-1,) + (1,) * (x.dim() - 1) if FEATURE_AXIS[name] == 0 else (mean.shape[0],)
        out[name] = (x - mean.reshape(shape)) / std.reshape(shape)
    return out


def to_json(stats: Stats) -> dict:
    return {name: {"mean": m.tolist(), "std": s.tolist()} for name, (m, s) in stats.items()}


def prior_clips(cache: ClipCache, records: Iterable[ClipRecord]) -> dict[str, torch.Tensor]:
    """``name -> k`` per feature: the within-speaker variance of clip means over the
    between-speaker variance of speaker means (less what their own clips' spread adds)."""
    means: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
    keys = [k for k in FEATURE_AXIS if k == "audio" or cache.settings.get(k, {}).get("kind") == "features"]
    for r in records:
        item = cache.load(r, keys)
        for name in keys:
            means[name][r.speaker].append(_rows(name, item[name].float()).double().mean(0))
    prior = {}
    for name, by_speaker in means.items():
        spoken = [torch.stack(m) for m in by_speaker.values() if len(m) > 1]
        if len(spoken) < 2:
            continue
        within = torch.stack([m.var(0) for m in spoken]).mean(0)
        clips = sum(len(m) for m in spoken) / len(spoken)
        between = (torch.stack([m.mean(0) for m in spoken]).var(0) - within / clips).clamp_min(EPS)
        prior[name] = (within / between).float()
    return prior


def shrink(stats: Stats, clips: int, pooled: Stats, prior: dict[str, torch.Tensor]) -> Stats:
    """A speaker's statistics from ``clips`` clips, moved towards ``pooled`` by ``prior``
    (means and variances mixed with the weight ``clips / (clips + k)``); names without a
    prior are kept as they are."""
    out = dict(stats)
    for name, k in prior.items():
        if name in stats and name in pooled:
            (mean, std), (p_mean, p_std), w = stats[name], pooled[name], clips / (clips + k)
            out[name] = (w * mean + (1 - w) * p_mean, (w * std**2 + (1 - w) * p_std**2).sqrt())
    return out


def from_json(doc: dict) -> Stats:
    return {name: (torch.tensor(v["mean"]), torch.tensor(v["std"])) for name, v in doc.items()}

"""Where a number came from: the code (git commit, uncommitted changes), the cache (a
fingerprint of its clips and settings), the seed, threads and devices, and the library
versions. Recorded in every run's ``metrics.json``, checkpoint sidecar and ``cv.json``."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

# clip files of a cache smaller than this are hashed byte for byte; larger caches (face
# frames) are fingerprinted by their index alone, which names every clip and setting
CONTENT_HASH_LIMIT = 256 * 2**20


@lru_cache(maxsize=1)
def code_version() -> dict:
    """The attsf version, and when it runs from a git checkout its commit and whether
    tracked files had uncommitted changes."""
    import attsf

    out: dict = {"version": attsf.__version__}
    root = Path(attsf.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return out
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    out.update(commit=commit, dirty=bool(status.strip()))
    return out


def library_versions() -> dict[str, str]:
    import lightning
    import numpy
    import scipy
    import soxr

    return {"torch": torch.__version__, "lightning": lightning.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "soxr": soxr.__version__, "python": platform.python_version()}


def _clip_identity(record: dict) -> dict:
    """A record without the fields that name where the raw files were (paths)."""
    return {k: v for k, v in record.items() if k not in ("source", "audio_source")}


def _tensor_bytes(path: Path) -> bytes:
    """A safetensors file without its metadata (which names the raw file's path): the
    tensors' names, dtypes and shapes, then their data."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    return json.dumps(header, sort_keys=True).encode() + raw[8 + n :]


def cache_fingerprint(cache_dir: str | Path, content: bool = True) -> dict:
    """Hashes of a cache that do not depend on where it or its raw data lie: ``index``
    over the labels, settings and clip records (paths left out), and (``content``)
    ``tensors`` over the clip files' tensors when they total under 256 MB."""
    root = Path(cache_dir)
    index = json.loads((root / "index.json").read_text())
    settings = index.get("settings", {})
    records = [_clip_identity(r) for r in index.get("clips", [])]
    doc = json.dumps({"labels": index.get("labels"), "settings": settings, "clips": records}, sort_keys=True)
    out = {"path": str(root), "clips": len(records), "index_sha256": hashlib.sha256(doc.encode()).hexdigest()[:16]}
    if not content:
        return out
    files = [root / "clips" / f"{r['id']}.safetensors" for r in records]
    sizes = [f.stat().st_size for f in files if f.is_file()]
    if len(sizes) == len(files) and sum(sizes) <= CONTENT_HASH_LIMIT:
        h = hashlib.sha256()
        for f in files:
            h.update(_tensor_bytes(f))
        out["tensors_sha256"] = h.hexdigest()[:16]
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the architecture."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def devices(trainer_devices: int | None = None) -> dict:
    """Threads and devices the run computes on; ``cpu_kernels``: the instruction set torch's
    CPU kernels use (AVX2, AVX512, ...): runs on CPUs whose kernels differ give other digits."""
    out = {"threads": torch.get_num_threads(), "cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        out["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if trainer_devices is not None:
        out["processes"] = trainer_devices
    return out


def provenance(cfg_dict: dict, cache_dir: str | Path | None = None, trainer_devices: int | None = None,
               content: bool = True) -> dict:
    """Everything needed to trace and re-run a result (``content``: hash the clip files' bytes too)."""
    out = {"code": code_version(), "versions": library_versions(), "seed": cfg_dict.get("train", {}).get("seed"),
           "devices": devices(trainer_devices), "config": cfg_dict}
    if cache_dir is not None and (Path(cache_dir) / "index.json").is_file():
        out["cache"] = cache_fingerprint(cache_dir, content)
    return out


def describe(prov: dict) -> list[tuple[str, str]]:
    """Rows for people (``attsf report``, ``attsf verify``)."""
    code = prov.get("code", {})
    commit = code.get("commit")
    rows = [("attsf", f"{code.get('version', '?')}" + (f", commit {commit[:10]}" if commit else ", not a git checkout")
             + (" with uncommitted changes" if code.get("dirty") else ""))]
    if "cache" in prov:
        c = prov["cache"]
        rows.append(("cache", f"{c['path']}: {c['clips']} clips, index {c['index_sha256']}"
                     + "".join(f", {k.split('_')[0]} {c[k]}" for k in ("tensors_sha256", "content_sha256") if k in c)))
    dev = prov.get("devices", {})
    rows.append(("seed, threads", f"{prov.get('seed')}, {dev.get('threads')}"))
    cpu = dev.get("cpu", "?") + (f", {dev['cpu_kernels']} kernels" if dev.get("cpu_kernels") else "")
    rows.append(("devices", ", ".join(dev.get("cuda", [])) or f"CPU ({cpu})"))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())))
    return rows


def describe_runs(runs: dict[str, dict]) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """The provenance of a cv.json's runs (``{run: its own provenance}``): the rows every run
    shares, then the headers and rows of a per-run table of what differs (seed, resumed, ...)."""
    rows = {run: dict(describe(p)) | {"resumed": "yes" if p.get("resumed") else "no"} for run, p in runs.items()}
    fields = list(next(iter(rows.values())))
    same = [f for f in fields if len({r.get(f) for r in rows.values()}) == 1]
    differ = [f for f in fields if f not in same]
    return ([(f, next(iter(rows.values()))[f]) for f in same], ["run", *differ],
            [[run, *(r.get(f, "") for f in differ)] for run, r in rows.items()])

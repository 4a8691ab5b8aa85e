"""Files that are never half-written and never unpickled.

Checkpoints are safetensors files: every tensor of the (nested) state under a path-like
key, and the rest of the state (ints, floats, strings, lists, dicts with int or str keys)
as JSON in the safetensors header. A JSON sidecar beside each checkpoint holds the
resolved config, label names, metrics and library versions for people and tools.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from attsf.errors import AttsfError

STATE_KEY = "attsf_state"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: a cleanup deletes only the temp files of dead writers
    # the name shortened so that a name near the file system's limit (255) still gets a temporary file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a written file follows the umask as open() does
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files of ``atomic_write_bytes`` in ``folder`` whose writing process is gone
    (left by a killed run); those of live writers, such as a concurrent shard, are not."""
    stale = []
    for tmp in folder.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 3)[-3] if tmp.name.count(".") >= 4 else ""
        if not pid.isdigit() or not _alive(int(pid)):
            stale.append(tmp)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def pid_lock(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` (a file with this process's pid) while writing ``what``; a live
    process's lock is a one-line error, a dead one's is taken over."""
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise AttsfError(f"{what}: being written by process {pid}; wait for it or stop it "
                                 f"(remove {path} if that process is not attsf)") from None
            path.unlink(missing_ok=True)  # left by a process that died
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AttsfError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None


# --------------------------------------------------------------------------- state codec
def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store {type(obj).__name__} at {where} in a safetensors checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def state_to_bytes(state: dict) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "state")
    return st_save(tensors, metadata={STATE_KEY: json.dumps(tree)})


def save_state(path: str | Path, state: dict) -> None:
    """Store a nested training state (model, optimiser, loops, callbacks) atomically."""
    atomic_write_bytes(path, state_to_bytes(state))


def load_state(path: str | Path) -> dict:
    """Inverse of :func:`save_state`. Reads only tensors and JSON: nothing is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError):
        raise AttsfError(f"{path}: not a safetensors file") from None
    if STATE_KEY not in meta:
        return {"state_dict": tensors}  # a plain weights file
    return _decode(json.loads(meta[STATE_KEY]), tensors)

"""Atomic file output: write to a temporary file beside the target, then rename.

The temporary file is named `.<target>.<pid>.<random><suffix>`: it is removed when the block
fails or is interrupted, and one left by a killed process (its pid no longer running) is removed
by the next write of the same target."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=suffix or path.suffix, dir=path.parent
    )
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _remove_stale(path: Path) -> None:
    """Remove the temporary files of `path` that a process no longer running left behind."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write an object as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to an NPZ file atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load an NPZ file without ever unpickling objects; anything else (a missing, damaged or
    non-NPZ file, object arrays) raises CircuitnnError."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":
                raise ValueError("not an NPZ (zip) archive")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CircuitnnError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = "object arrays, never unpickled" if "pickle" in str(exc) else \
            " ".join(str(exc).split())[:120] or type(exc).__name__
        raise CircuitnnError(f"{path}: not a readable NPZ file ({reason})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)

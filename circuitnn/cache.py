"""The user cache folder (calibrated surrogate cards and their work files) and a lock for it.

`CIRCUITNN_CACHE` names the folder; otherwise `$XDG_CACHE_HOME/circuitnn`, else
`~/.cache/circuitnn`. Nothing here ever writes into the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from circuitnn.errors import CircuitnnError

ENV_VAR = "CIRCUITNN_CACHE"


def cache_dir(sub: str = "", create: bool = True) -> Path:
    """The cache folder (or its sub-folder `sub`), created if missing unless `create` is False."""
    root = os.environ.get(ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "circuitnn"
    folder = base / sub if sub else base
    if not create:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CircuitnnError(f"cannot create the cache folder {folder} ({exc.strerror}); set "
                             f"{ENV_VAR} to a writable folder") from None
    return folder


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file, created if missing) for the block: a second
    process asking for the same lock waits until the first is done."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

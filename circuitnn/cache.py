"""The user cache: its folder, and content-addressed entries in it.

`CIRCUITNN_CACHE` names the folder; otherwise `$XDG_CACHE_HOME/circuitnn`, else
`~/.cache/circuitnn`. Nothing here ever writes into the repository.

Every cached result (compiled numba modules, derived pulse laws, automatic surrogate cards, the
standard MNIST files) lives in a sub-folder, and each computed one is an `entry`: named by the
content key of everything it depends on (`content_key`), made under a lock of its own (a second
process asking for the same entry waits, then finds it) and written atomically
(`circuitnn.io`). A folder that another user could write is never used: before any use the cache
folder and the sub-folder must belong to the current user and not be writable by group or
others (`check_private`), else the request is refused, since the compiled integrators are
executed and numba unpickles its cache from there. A cache that exists but cannot be written
raises `CacheReadOnly` (the integrator then compiles in memory, `circuitnn.devices.transient`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_text

ENV_VAR = "CIRCUITNN_CACHE"
KEY_LENGTH = 20  # hex digits of an entry's content key


class CacheReadOnly(CircuitnnError):
    """The cache folder cannot be created or written."""


def cache_root() -> Path:
    """The cache folder (not created)."""
    root = os.environ.get(ENV_VAR)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "circuitnn"


def check_private(folder: Path) -> None:
    """Refuse a folder (followed through symlinks) that belongs to another user or that group
    or others may write."""
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise CircuitnnError(f"the cache folder {folder} belongs to another user (uid "
                             f"{st.st_uid}); set {ENV_VAR} to a folder of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CircuitnnError(f"the cache folder {folder} is writable by other users (mode "
                             f"{stat.S_IMODE(st.st_mode):o}); run `chmod go-w {folder}` or set "
                             f"{ENV_VAR} to a private folder")


def cache_dir(sub: str = "", create: bool = True) -> Path:
    """The cache folder (or its sub-folder `sub`), checked by `check_private` where it exists;
    created (mode 0700) if missing unless `create` is False."""
    root = cache_root()
    folder = root / sub if sub else root
    if create:
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CacheReadOnly(f"cannot create the cache folder {folder} ({exc.strerror}); "
                                f"set {ENV_VAR} to a writable folder") from None
    for f in dict.fromkeys((root, folder)):
        if f.exists():
            check_private(f)
    return folder


def content_key(identity: Any) -> str:
    """The key of an entry: sha256 of `identity` as canonical JSON, KEY_LENGTH hex digits."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file, created if missing) for the block: a second
    process asking for the same lock waits until the first is done."""
    try:
        handle = open(path, "a")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise CacheReadOnly(f"cannot write the cache folder {Path(path).parent} "
                            f"({exc.strerror}); set {ENV_VAR} to a writable folder") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Entry:
    """A cache entry: its folder, content key and file (which may not exist yet)."""

    folder: Path
    key: str
    path: Path


@contextlib.contextmanager
def entry(sub: str, identity: Any, name: str) -> Iterator[Entry]:
    """The entry of `identity` in cache sub-folder `sub`, its file named `name` with "{key}"
    replaced by the content key; its lock is held for the block, in which the caller loads the
    file or makes it (written atomically, `circuitnn.io`)."""
    folder = cache_dir(sub)
    key = content_key(identity)
    with locked(folder / f".{key}.lock"):
        yield Entry(folder, key, folder / name.format(key=key))


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Print `circuitnn: warning: message` on stderr, once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"circuitnn: warning: {message}", file=sys.stderr)


def compiled_module(text: str, name: str, compile_: Callable[[ModuleType], None],
                    in_memory: str) -> ModuleType:
    """A numba module's text (one line `CACHE = True`, its functions jitted with cache=CACHE),
    imported from an entry of sub-folder `compiled` named by the text's content key, so numba's
    cache beside it serves every later process, and compiled by `compile_(module)` under the
    entry's lock. A read-only cache gives a compile in memory (CACHE = False), with one warning
    line ending in `in_memory` (what is compiled in memory, at what cost)."""
    try:
        with entry("compiled", text, f"{name}_{{key}}.py") as e:
            if not (e.path.is_file() and e.path.read_text() == text):  # new, or changed since
                try:
                    write_text(e.path, text)
                except OSError as exc:
                    raise CacheReadOnly(f"cannot write the cache folder {e.folder} "
                                        f"({exc.strerror})") from None
            spec = importlib.util.spec_from_file_location(f"circuitnn_{name}_{e.key}", e.path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            compile_(module)
    except CacheReadOnly as exc:
        warn_once(f"{exc}; {in_memory}")
        module = ModuleType(f"circuitnn_{name}_in_memory")
        code = text.replace("\nCACHE = True\n", "\nCACHE = False\n", 1)
        exec(compile(code, f"<circuitnn {name}>", "exec"), module.__dict__)  # noqa: S102
        compile_(module)
    return module

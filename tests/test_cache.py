"""The user cache: private folders only, content-addressed entries under a lock; the compiled
integrator is never executed from a folder others can write, is compiled once under its lock
by concurrent first runs, and a read-only cache compiles in memory with one warning line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from circuitnn.cache import cache_dir, check_private, content_key, entry, locked
from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, load_device
from circuitnn.devices.transient import integrator_source
from circuitnn.errors import CircuitnnError

#: a transient of the built-in device: compiles its integrator in a fresh cache
SIMULATE = ("import numpy as np; from circuitnn.devices import load_device; "
            "t = np.linspace(0, 1e-6, 50); "
            "print(repr(float(load_device().simulate(t, 1.5 * np.sin(2e6 * np.pi * t)).i[-1])))")


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "CIRCUITNN_CACHE": str(cache)}


def _card_without_operating_record(folder: Path) -> Path:
    """A copy of the built-in card whose operating point (a transient) must be computed."""
    obj = json.loads((DEVICE_MODELS_DIR / BUILTIN_CARD).read_text())
    obj.pop("operating", None)
    path = folder / "hfox.json"
    path.write_text(json.dumps(obj))
    return path


def test_private_folders_only(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    check_private(mine)
    for mode in (0o777, 0o770, 0o702):
        shared = tmp_path / f"shared{mode:o}"
        shared.mkdir()
        shared.chmod(mode)
        with pytest.raises(CircuitnnError, match=r"writable by other users \(mode 7.*chmod go-w"):
            check_private(shared)
    if os.getuid() == 0:  # only root can give a folder to another user
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        with pytest.raises(CircuitnnError, match="belongs to another user"):
            check_private(other)


def test_entries_are_content_addressed_and_locked(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITNN_CACHE", str(tmp_path / "cache"))
    folder = cache_dir("things")
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert content_key({"a": 1, "b": [2, 3]}) == content_key({"b": [2, 3], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})
    with entry("things", {"a": 1}, "thing-{key}.json") as e:
        assert e.path == folder / f"thing-{content_key({'a': 1})}.json"
        assert (folder / f".{e.key}.lock").is_file() and not e.path.exists()
    (tmp_path / "cache").chmod(0o777)  # the cache itself opened to everyone: refused
    with pytest.raises(CircuitnnError, match="writable by other users"):
        cache_dir("things")


def test_compile_refuses_a_folder_others_can_write(tmp_path):
    compiled = tmp_path / "cache" / "compiled"
    compiled.mkdir(parents=True, mode=0o700)
    compiled.chmod(0o777)
    card = _card_without_operating_record(tmp_path)
    res = subprocess.run([sys.executable, "-m", "circuitnn.cli", "device", "check", str(card),
                          "--no-derive"], capture_output=True, text=True, timeout=600,
                         env=_env(tmp_path / "cache"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"circuitnn: error: the cache folder {compiled} is writable by other users (mode 777); "
        f"run `chmod go-w {compiled}` or set CIRCUITNN_CACHE to a private folder"]
    assert list(compiled.iterdir()) == []  # nothing written there, nothing executed from it


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for this user (root ignores permission bits: the immutable flag)."""
    if os.getuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("cannot make a folder read-only for root here (chattr +i)")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o500)
        undo = ["chmod", "700", str(folder)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


@pytest.mark.slow
def test_read_only_cache_compiles_in_memory_with_one_warning(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    card = _card_without_operating_record(tmp_path)
    with _read_only(cache):
        res = subprocess.run([sys.executable, "-m", "circuitnn.cli", "device", "check",
                              str(card), "--no-derive"], capture_output=True, text=True,
                             timeout=900, env=_env(cache))
    assert res.returncode == 0, res.stderr[-800:]
    assert "v_read:" in res.stdout and "read disturb: drift" in res.stdout
    warnings = [line for line in res.stderr.splitlines() if line.startswith("circuitnn:")]
    assert len(warnings) == 1 and warnings[0].startswith("circuitnn: warning: cannot create "
                                                         f"the cache folder {cache / 'compiled'}")
    assert "compiled in memory" in warnings[0]
    assert list(cache.iterdir()) == []


@pytest.mark.slow
def test_concurrent_first_compiles_wait_for_the_lock(tmp_path):
    cache = tmp_path / "cache"
    compiled = cache / "compiled"
    compiled.mkdir(parents=True, mode=0o700)
    key = content_key(integrator_source(load_device()))
    with locked(compiled / f".{key}.lock"):  # as if a first compile were under way
        procs = [subprocess.Popen([sys.executable, "-c", SIMULATE], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=_env(cache))
                 for _ in range(2)]
        time.sleep(3)
        assert all(p.poll() is None for p in procs)  # both wait: nothing written, none runs
        assert not (compiled / f"integrator_{key}.py").exists()
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-500:] for _, err in outs]
    first, second = (float(out) for out, _ in outs)
    assert second == pytest.approx(first, rel=1e-12)
    assert sorted(p.name for p in compiled.glob("integrator_*.py")) == [f"integrator_{key}.py"]
    assert list(compiled.glob("__pycache__/integrator_*.nbi"))  # numba's cache, written once


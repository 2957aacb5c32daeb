"""Many-task sweeps (netlists, Monte Carlo samples, parameter grids) on a Dask cluster.

Each task is ``(key, kwargs)``; ``fn(**kwargs)`` runs on a Dask worker and returns a dict of
numpy arrays. Every finished result is written at once to ``out_dir/<key>.npz`` (atomically,
through :func:`circuitnn.io.write_npz`), so an interrupted sweep keeps what it finished and a
rerun computes only the keys whose file is missing (resumable).

By default a local cluster of worker *processes* is started (``processes=True``,
``threads_per_worker=1``): one ngspice per process, because the ngspice shared library is not
re-entrant. Pass ``scheduler`` (an address such as ``"tcp://127.0.0.1:8786"``, or a
``distributed.Client``/``LocalCluster``) to use an existing cluster instead; the result files are
then written by this (client) process, so workers need no shared file system.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_npz

__all__ = ["SweepResults", "check_key", "run_sweep", "start_local_cluster"]

_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


class SweepResults(dict):
    """``key -> {name: array}`` for every task, plus which keys were computed now
    (`computed`) and which were loaded from files of an earlier run (`loaded`)."""

    def __init__(self) -> None:
        super().__init__()
        self.computed: list[str] = []
        self.loaded: list[str] = []


def check_key(key: Any) -> str:
    """Return `key` if it is a safe file name stem, else raise CircuitnnError.

    Allowed: letters, digits, ``_``, ``.`` and ``-``, 1-128 characters, not starting with ``.``
    or ``-`` (no path separators, no hidden files).
    """
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None or key.endswith(".npz"):
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        raise CircuitnnError(
            f"invalid sweep key {shown}: keys must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        )
    return key


def _check_tasks(tasks: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        if not (isinstance(task, (tuple, list)) and len(task) == 2):
            raise CircuitnnError(f"sweep task {i} must be a (key, kwargs) pair")
        key, kwargs = task
        check_key(key)
        if key in seen:
            raise CircuitnnError(f"sweep key {key!r} appears more than once")
        if not isinstance(kwargs, Mapping):
            raise CircuitnnError(f"sweep task {key!r}: kwargs must be a mapping")
        seen.add(key)
        out.append((key, dict(kwargs)))
    return out


def _check_result(key: str, result: Any) -> dict[str, np.ndarray]:
    if not isinstance(result, Mapping):
        raise CircuitnnError(f"sweep task {key!r} returned {type(result).__name__}, not a dict")
    out: dict[str, np.ndarray] = {}
    for name, val in result.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise CircuitnnError(f"sweep task {key!r}: result name {name!r} is not an identifier")
        arr = np.asarray(val)
        if arr.dtype == object:
            raise CircuitnnError(f"sweep task {key!r}: result {name!r} is not a numeric array")
        out[name] = arr
    return out


def _call(fn: Callable[..., Mapping[str, Any]], kwargs: dict) -> Mapping[str, Any]:
    """Worker-side wrapper (top level, so it pickles by reference)."""
    return fn(**kwargs)


def start_local_cluster(n_workers: int = 2):
    """A `distributed.LocalCluster` of `n_workers` single-threaded worker processes."""
    from distributed import LocalCluster

    if not (isinstance(n_workers, int) and not isinstance(n_workers, bool) and n_workers >= 1):
        raise CircuitnnError(f"n_workers must be a positive integer, got {n_workers!r}")
    return LocalCluster(
        n_workers=n_workers,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",  # a free port: never clash with another cluster
        silence_logs=logging.ERROR,
    )


@contextlib.contextmanager
def dask_client(scheduler: Any, n_workers: int) -> Iterator[Any]:
    """A distributed Client for `scheduler` (address, Client or cluster) or, for None, a new
    LocalCluster of `n_workers` processes, closed afterwards; when the block fails or is
    interrupted, its worker processes are killed first (a graceful close waits for the tasks
    under way)."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is None:
        cluster = start_local_cluster(n_workers)
        try:
            with Client(cluster) as client:
                yield client
        except BaseException:
            for nanny in list(cluster.workers.values()):
                proc = getattr(getattr(nanny, "process", None), "process", None)
                if proc is not None and proc.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
            raise
        finally:
            cluster.close()
        return
    if not isinstance(scheduler, str) and not hasattr(scheduler, "scheduler_address"):
        raise CircuitnnError(
            f"scheduler must be an address string, a Client or a cluster, got {scheduler!r}"
        )
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise CircuitnnError(f"cannot connect to Dask scheduler {scheduler!r}: {exc}") from None
    with client:
        yield client


def run_sweep(
    tasks: Sequence[tuple[str, Mapping[str, Any]]],
    fn: Callable[..., Mapping[str, Any]],
    *,
    out_dir: str | Path,
    scheduler: Any = None,
    n_workers: int = 2,
    progress: bool = True,
    desc: str = "sweep",
) -> SweepResults:
    """Run ``fn(**kwargs)`` for every ``(key, kwargs)`` task on Dask; resumable.

    fn: a top-level (picklable) function returning ``{name: array}``. Results already present as
    ``out_dir/<key>.npz`` are loaded, not recomputed; each new result is saved as soon as it
    arrives. scheduler: None (start a local cluster of `n_workers` processes), a scheduler
    address, a ``distributed.Client`` or a cluster object. A tqdm bar (stderr) counts finished
    tasks. Failed tasks do not stop the others; afterwards a CircuitnnError names them.
    Returns a :class:`SweepResults` (``key -> result``, in task order).
    """
    if not callable(fn):
        raise CircuitnnError(f"sweep function must be callable, got {fn!r}")
    if "<locals>" in getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "") == "<lambda>":
        raise CircuitnnError(
            f"sweep function {getattr(fn, '__qualname__', fn)!r} must be a top-level function"
        )
    checked = _check_tasks(tasks)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CircuitnnError(f"sweep output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    found: dict[str, dict[str, np.ndarray]] = {}
    todo: list[tuple[str, dict]] = []
    for key, kwargs in checked:
        path = out / f"{key}.npz"
        if path.exists():
            try:
                found[key] = load_npz(path)
                continue
            except CircuitnnError as exc:  # unreadable leftover: recompute it
                print(f"circuitnn: recomputing {path} ({exc})", file=sys.stderr)
        todo.append((key, kwargs))

    new: dict[str, dict[str, np.ndarray]] = {}
    failed: dict[str, str] = {}
    if todo:
        from distributed import as_completed
        from tqdm import tqdm

        with dask_client(scheduler, n_workers) as client:
            run_id = uuid.uuid4().hex[:8]
            futures = {
                client.submit(_call, fn, kwargs, key=f"circuitnn-sweep-{run_id}-{key}",
                              pure=False): key
                for key, kwargs in todo
            }
            bar = tqdm(total=len(checked), initial=len(found), desc=desc, unit="task",
                       file=sys.stderr, disable=not progress)
            try:
                for fut in as_completed(futures):
                    key = futures[fut]
                    try:
                        result = _check_result(key, fut.result())
                        write_npz(out / f"{key}.npz", **result)
                        new[key] = result
                    except Exception as exc:  # noqa: BLE001 - reported below, per task
                        failed[key] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    bar.update(1)
            finally:
                bar.close()
                for fut in futures:
                    if not fut.done():
                        fut.cancel()
    if failed:
        first = next(iter(failed))
        raise CircuitnnError(
            f"{len(failed)} of {len(checked)} sweep tasks failed (finished ones are saved in "
            f"{out}); first: {first!r}: {failed[first]}"
        )
    results = SweepResults()
    for key, _ in checked:
        results[key] = found[key] if key in found else new[key]
    results.loaded = [k for k, _ in checked if k in found]
    results.computed = [k for k, _ in checked if k in new]
    return results

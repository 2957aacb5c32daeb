"""Dask sweeps on a real local cluster of worker processes: results, files, resume, errors."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz
from circuitnn.tile.sweep import check_key, run_sweep

# the workers cannot import this test module: ship its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square_task(x: float, calls_dir: str, fail: bool = False) -> dict[str, np.ndarray]:
    """A small task that leaves one marker file per call (to count computations) and its pid."""
    Path(calls_dir, f"{x:g}-{uuid.uuid4().hex}").write_text("")
    if fail:
        raise ValueError(f"task {x:g} failed on purpose")
    return {"y": np.array([x, x * x]), "pid": np.array(os.getpid())}


def crashing_task(x: float, calls_dir: str, out_dir: str) -> dict[str, np.ndarray]:
    """Task x = 3 waits until x0..x2 are saved, then kills its own worker process (once)."""
    marker = Path(calls_dir, "crashed")
    if x == 3 and not marker.exists():
        for _ in range(600):
            if all(Path(out_dir, f"x{i}.npz").exists() for i in range(3)):
                break
            time.sleep(0.05)
        marker.write_text("")
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-run
    return {"y": np.array([x, x * x])}


def _tasks(xs, calls_dir, fail=()):
    return [(f"x{int(x)}", {"x": float(x), "calls_dir": str(calls_dir), "fail": x in fail})
            for x in xs]


def test_sweep_local_cluster_runs_saves_and_resumes(tmp_path, cluster):
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "out"
    # default: a new local cluster of two worker processes
    first = run_sweep(_tasks(range(3), calls), square_task, out_dir=out, n_workers=2,
                      progress=False)
    assert sorted(p.name for p in out.glob("*.npz")) == ["x0.npz", "x1.npz", "x2.npz"]
    assert first.computed == ["x0", "x1", "x2"] and first.loaded == []
    np.testing.assert_array_equal(load_npz(out / "x2.npz")["y"], [2.0, 4.0])
    # ran in worker processes, not here
    assert all(int(r["pid"]) != os.getpid() for r in first.values())
    assert len(list(calls.iterdir())) == 3

    # resume on an existing cluster (by scheduler address)
    second = run_sweep(_tasks(range(6), calls), square_task, out_dir=out,
                       scheduler=cluster.scheduler_address, progress=False)
    assert second.loaded == ["x0", "x1", "x2"]
    assert second.computed == ["x3", "x4", "x5"]
    assert list(second) == [f"x{i}" for i in range(6)]
    for i in range(6):
        np.testing.assert_array_equal(second[f"x{i}"]["y"], [i, i * i])
    # exactly one computation per key in total: the rerun computed only the missing ones
    assert sorted(p.name.split("-")[0] for p in calls.iterdir()) == [str(i) for i in range(6)]


@pytest.fixture(scope="module")
def cluster():
    from circuitnn.tile.sweep import start_local_cluster

    c = start_local_cluster(2)
    yield c
    c.close()


def test_sweep_existing_scheduler_and_failed_task(tmp_path, cluster):
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "out"
    with pytest.raises(CircuitnnError, match=r"1 of 4 sweep tasks failed.*x2"):
        run_sweep(_tasks(range(4), calls, fail=(2,)), square_task, out_dir=out,
                  scheduler=cluster.scheduler_address, progress=False)
    # the others finished and were kept
    assert sorted(p.name for p in out.glob("*.npz")) == ["x0.npz", "x1.npz", "x3.npz"]
    res = run_sweep(_tasks(range(4), calls), square_task, out_dir=out,
                    scheduler=cluster.scheduler_address, progress=False)
    assert res.computed == ["x2"]


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".hidden", "-x", "a b", "x.npz", 3, "é"])
def test_bad_keys(key):
    with pytest.raises(CircuitnnError, match="invalid sweep key"):
        check_key(key)


def test_bad_sweep_inputs(tmp_path):
    with pytest.raises(CircuitnnError, match="more than once"):
        run_sweep([("a", {}), ("a", {})], square_task, out_dir=tmp_path)
    with pytest.raises(CircuitnnError, match="top-level"):
        run_sweep([("a", {})], lambda: {}, out_dir=tmp_path)
    with pytest.raises(CircuitnnError, match=r"\(key, kwargs\)"):
        run_sweep(["a"], square_task, out_dir=tmp_path)
    with pytest.raises(CircuitnnError, match="kwargs must be a mapping"):
        run_sweep([("a", 3)], square_task, out_dir=tmp_path)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(CircuitnnError, match="not a directory"):
        run_sweep([("a", {})], square_task, out_dir=f)
    with pytest.raises(CircuitnnError, match="n_workers"):
        run_sweep([("a", {"x": 1.0, "calls_dir": str(tmp_path)})], square_task,
                  out_dir=tmp_path / "o", n_workers=0)


def test_killed_worker_loses_no_finished_result(tmp_path):
    calls, out = tmp_path / "calls", tmp_path / "out"
    calls.mkdir()
    tasks = [(f"x{i}", {"x": float(i), "calls_dir": str(calls), "out_dir": str(out)})
             for i in range(4)]
    try:  # Dask may reschedule the killed task on a restarted worker, or give up on it
        run_sweep(tasks, crashing_task, out_dir=out, n_workers=2, progress=False)
    except CircuitnnError as exc:
        assert "x3" in str(exc)
    assert (calls / "crashed").exists()  # a worker really died mid-run
    saved = {p.stem: load_npz(p)["y"] for p in out.glob("*.npz")}
    assert {"x0", "x1", "x2"} <= set(saved)  # what finished before the crash was kept
    again = run_sweep(tasks, crashing_task, out_dir=out, n_workers=1, progress=False)
    assert set(again.loaded) >= {"x0", "x1", "x2"} and set(again.computed) <= {"x3"}
    for i in range(4):
        np.testing.assert_array_equal(again[f"x{i}"]["y"], [i, i * i])

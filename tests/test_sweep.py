"""Dask sweeps on a real local cluster of worker processes: results, files, resume, errors."""

from __future__ import annotations

import os
import sys
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


def _tasks(xs, calls_dir, fail=()):
    return [(f"x{int(x)}", {"x": float(x), "calls_dir": str(calls_dir), "fail": x in fail})
            for x in xs]


def test_sweep_local_cluster_runs_saves_and_resumes(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "out"
    first = run_sweep(_tasks(range(3), calls), square_task, out_dir=out, n_workers=2,
                      progress=False)
    assert sorted(p.name for p in out.glob("*.npz")) == ["x0.npz", "x1.npz", "x2.npz"]
    assert first.computed == ["x0", "x1", "x2"] and first.loaded == []
    np.testing.assert_array_equal(load_npz(out / "x2.npz")["y"], [2.0, 4.0])
    # ran in worker processes, not here
    assert all(int(r["pid"]) != os.getpid() for r in first.values())
    assert len(list(calls.iterdir())) == 3

    second = run_sweep(_tasks(range(6), calls), square_task, out_dir=out, n_workers=2,
                       progress=False)
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

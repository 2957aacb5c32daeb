"""`circuitnn netlist` / `circuitnn simulate` through the real entry point."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from circuitnn.io import load_npz
from circuitnn.tile import TileSpec, read


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circuitnn.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    g = np.random.default_rng(0).uniform(5e-6, 2e-5, (4, 3))
    v = np.array([[0.2, 0.0, 0.1, 0.2], [0.05, 0.1, 0.15, 0.2]])
    np.save(tmp_path / "g.npy", g)
    np.savetxt(tmp_path / "g.csv", g, delimiter=",")
    np.savetxt(tmp_path / "v.csv", v, delimiter=",")
    return tmp_path, g, v


def test_help():
    for cmd in ("netlist", "simulate"):
        out = run(cmd, "--help")
        assert out.returncode == 0 and "--conductance" in out.stdout


@pytest.mark.ngspice
def test_netlist_writes_runnable_file(files):
    tmp, g, v = files
    out = run("netlist", "--conductance", str(tmp / "g.npy"), "--inputs", str(tmp / "v.csv"),
              "--cell", "passive", "--out", str(tmp / "t.cir"))
    assert out.returncode == 0, out.stderr
    text = (tmp / "t.cir").read_text()
    assert "Bin0 drv0 0 V = pwl(" in text and text.rstrip().endswith(".end")
    proc = subprocess.run(["ngspice", "-b", str(tmp / "t.cir")], capture_output=True, text=True,
                          timeout=60, cwd=tmp)
    assert proc.returncode == 0


@pytest.mark.parametrize("engine, backend", [
    pytest.param("ngspice", "subprocess", marks=pytest.mark.ngspice),
    pytest.param("ngspice", "shared", marks=pytest.mark.ngspice), ("nodal", "subprocess")])
def test_simulate_npz_and_csv(files, engine, backend):
    tmp, g, v = files
    card = tmp / "card.json"
    from circuitnn.devices import builtin_card
    builtin_card().save(card)
    out = run("simulate", "--conductance", str(tmp / "g.csv"), "--inputs", str(tmp / "v.csv"),
              "--card", str(card), "--engine", engine, "--backend", backend,
              "--out", str(tmp / "r.npz"))
    assert out.returncode == 0, out.stderr
    res = load_npz(tmp / "r.npz")
    expect = read(TileSpec(g, device=builtin_card()), v, engine="nodal")
    np.testing.assert_allclose(res["I"], expect, rtol=1e-6)
    out = run("simulate", "--conductance", str(tmp / "g.npy"), "--inputs", str(tmp / "v.csv"),
              "--engine", engine, "--r-row", "0", "--out", str(tmp / "r.csv"))
    assert out.returncode == 0, out.stderr
    got = np.loadtxt(tmp / "r.csv", delimiter=",", ndmin=2)
    np.testing.assert_allclose(got, read(TileSpec(g, r_row=0), v, engine="nodal"), rtol=1e-9)


def test_bad_files_give_one_line_errors(files):
    tmp, g, v = files
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "bad.csv").write_text("1,2\nx,y\n")
    np.save(tmp / "neg.npy", -g)
    cases = [
        (["--conductance", str(tmp / "missing.npy")], "not found"),
        (["--conductance", str(tmp / "obj.npy")], "cannot read"),
        (["--conductance", str(tmp / "bad.csv")], "cannot read"),
        (["--conductance", str(tmp / "neg.npy")], "> 0"),
        (["--conductance", str(tmp / "g.txt")], ".npy or .csv"),
    ]
    for args, match in cases:
        out = run("simulate", *args, "--inputs", str(tmp / "v.csv"), "--out",
                  str(tmp / "o.npz"))
        assert out.returncode != 0
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and match in lines[0], out.stderr
    out = run("simulate", "--conductance", str(tmp / "g.npy"), "--inputs", str(tmp / "g.csv"),
              "--out", str(tmp / "o.npz"))
    assert out.returncode != 0 and "shape" in out.stderr
    out = run("simulate", "--conductance", str(tmp / "g.npy"), "--inputs", str(tmp / "v.csv"),
              "--out", str(tmp / "o.txt"))
    assert out.returncode != 0 and ".npz or .csv" in out.stderr

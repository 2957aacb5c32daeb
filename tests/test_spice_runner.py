"""Tests of the ngspice execution layer with the real ngspice (executable and shared library)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.spice import (
    dc_batch_lines,
    fmt,
    ngspice_available,
    read_raw,
    run_netlist,
    runner,
    safe_name,
    safe_node,
    shutdown_shared_worker,
    with_options,
)

BACKENDS = ["subprocess", "shared"]


@pytest.fixture(scope="module", autouse=True)
def _stop_worker():
    yield
    shutdown_shared_worker()


DIVIDER = """divider
V1 in 0 DC 1.5
R1 in mid 1k
R2 mid 0 2k
.op
.end
"""

MIXED = """mixed analyses
V1 in 0 DC 1 PULSE(0 1 0 1n 1n 2u 4u)
R1 in mid 1k
R2 mid 0 3k
C1 mid 0 1n
.dc V1 -1 1 0.25
.op
.tran 20n 4u 0 20n
.end
"""

RC = """rc step
V1 in 0 DC 1
R1 in out 1k
C1 out 0 1n
.options noinit
.tran 5n 5u 0 5n uic
.end
"""


@pytest.mark.ngspice
@pytest.mark.parametrize("backend", BACKENDS)
def test_divider_operating_point(backend):
    res = run_netlist(DIVIDER, backend=backend, name="divider")
    op = res.plot("Operating Point")
    assert op.title == "divider"
    assert set(op.variables) == {"v(in)", "v(mid)", "i(v1)"}
    assert op["v(mid)"][0] == pytest.approx(1.0, rel=1e-12)
    # ngspice reports the current into the + terminal of the source
    assert op["i(v1)"][0] == pytest.approx(-1.5 / 3e3, rel=1e-12)
    assert not res.retried


@pytest.mark.ngspice
@pytest.mark.parametrize("backend", BACKENDS)
def test_dc_sweep_matches_ohms_law(backend):
    net = """sweep
V1 a 0 DC 0
Vsense a b DC 0
R1 b 0 2.2k
.dc V1 -2 2 0.1
.end
"""
    dc = run_netlist(net, backend=backend).plot("DC transfer")
    v = dc["v(v-sweep)"]
    np.testing.assert_allclose(v, np.linspace(-2, 2, 41), atol=1e-12)
    np.testing.assert_allclose(dc["i(vsense)"], v / 2.2e3, rtol=1e-9, atol=1e-15)


@pytest.mark.ngspice
def test_rc_transient_matches_exponential():
    tr = run_netlist(RC, name="rc").plot("Transient")
    t = tr["time"]
    assert t[-1] == pytest.approx(5e-6)
    assert np.max(np.diff(t)) <= 5e-9 * (1 + 1e-9)
    expected = 1 - np.exp(-t / 1e-6)
    assert np.max(np.abs(tr["v(out)"] - expected)) < 1e-4


@pytest.mark.ngspice
def test_binary_and_ascii_raw_agree(tmp_path):
    net = MIXED.replace(".dc", ".ac dec 5 1k 10meg\n.dc")
    binary = run_netlist(net, workdir=str(tmp_path / "b"))
    ascii_ = run_netlist(with_options(net, ".options filetype=ascii"), workdir=str(tmp_path / "a"))
    raws = list((tmp_path / "a").glob("*/out.raw"))
    assert len(raws) == 1 and raws[0].read_bytes().count(b"Values:") == 4  # really ascii
    assert [p.plotname for p in binary] == [p.plotname for p in ascii_]
    assert any(np.iscomplexobj(p["v(mid)"]) for p in binary)
    for pb, pa in zip(binary, ascii_, strict=True):
        assert pb.variables == pa.variables
        for k in pb.variables:
            np.testing.assert_allclose(pa[k], pb[k], rtol=1e-14, atol=1e-300)


@pytest.mark.ngspice
def test_backends_agree_on_dc_op_and_tran():
    sub = run_netlist(MIXED, name="mixed")
    shr = run_netlist(MIXED, backend="shared", name="mixed")
    assert [p.plotname for p in sub] == [
        "DC transfer characteristic",
        "Operating Point",
        "Transient Analysis",
    ]
    assert [(p.title, p.plotname) for p in sub] == [(p.title, p.plotname) for p in shr]
    for ps, ph in zip(sub, shr, strict=True):
        assert ps.variables == ph.variables
        for k in ps.variables:
            np.testing.assert_allclose(ph[k], ps[k], rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "bad, expect",
    [
        ("R2 mid 0 abc foo=\n", "line"),  # unparsable value / expression
        ("Z1 mid 0 1k\n", "z1"),  # unknown element type
        ("X7 a b nosuchsubckt\n", "unknown subckt"),
    ],
)
@pytest.mark.ngspice
def test_broken_netlist_names_the_netlist(backend, bad, expect):
    net = DIVIDER.replace("R2 mid 0 2k\n", bad)
    with pytest.raises(CircuitnnError) as info:
        run_netlist(net, backend=backend, name="broken_cell_7")
    msg = str(info.value)
    assert "broken_cell_7" in msg and expect in msg.lower() and "\n" not in msg
    # the caller (and the shared worker after its restart) keep working
    assert run_netlist(DIVIDER, backend=backend).plot("Op")["v(mid)"][0] == pytest.approx(1.0)


@pytest.mark.ngspice
def test_missing_analysis_and_bad_arguments():
    with pytest.raises(CircuitnnError, match="no raw file"):
        run_netlist(DIVIDER.replace(".op\n", ""), name="noan")
    with pytest.raises(CircuitnnError, match="unknown ngspice backend"):
        run_netlist(DIVIDER, backend="spectre")
    with pytest.raises(CircuitnnError, match="empty"):
        run_netlist("  \n")
    with pytest.raises(CircuitnnError, match="timeout"):
        run_netlist(DIVIDER, timeout=0)
    ctrl = DIVIDER.replace(".end", ".control\nrun\n.endc\n.end")
    with pytest.raises(CircuitnnError, match="control"):
        run_netlist(ctrl, backend="shared")


@pytest.mark.ngspice
def test_convergence_failure_is_retried_then_reported():
    # a switch that closes exactly at its own threshold voltage has no consistent solution
    net = """chatter
V1 vdd 0 DC 5
R1 vdd n 1k
C1 n 0 1p
S1 n 0 n 0 sw
.model sw sw vt=1 vh=0 ron=1e-3 roff=1e12
.tran 1p 10n
.end
"""
    with pytest.raises(CircuitnnError, match="chatter_net.*retry.*[Tt]imestep too small"):
        run_netlist(net, name="chatter_net")
    with pytest.raises(CircuitnnError) as info:
        run_netlist(net, name="chatter_net", retry=False)
    assert "retry" not in str(info.value)


def test_with_options_inserts_before_end():
    out = with_options(DIVIDER, ".options gminsteps=100")
    lines = out.strip().splitlines()
    assert lines[-2:] == [".options gminsteps=100", ".end"]
    assert with_options("t\nR1 a 0 1", ".options x=1").strip().splitlines()[-2:] == [
        ".options x=1",
        ".end",
    ]


def _our_ngspice_processes(marker: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(pid))
    return pids


@pytest.mark.ngspice
@pytest.mark.parametrize("backend", BACKENDS)
def test_hung_run_is_killed_by_timeout(backend, tmp_path):
    hung = RC.replace(".tran 5n 5u 0 5n uic", ".tran 1f 1 0 1f uic")
    t0 = time.monotonic()
    with pytest.raises(CircuitnnError, match="hung_rc.*timed out"):
        run_netlist(hung, backend=backend, timeout=1.0, name="hung_rc", workdir=str(tmp_path))
    assert time.monotonic() - t0 < 10
    if backend == "subprocess":
        assert _our_ngspice_processes(str(tmp_path)) == []
    # caller survives and the backend still works
    assert run_netlist(DIVIDER, backend=backend).plot("Op")["v(mid)"][0] == pytest.approx(1.0)


@pytest.mark.ngspice
def test_shared_worker_crash_mid_run_is_survived():
    hung = RC.replace(".tran 5n 5u 0 5n uic", ".tran 1f 1 0 1f uic")
    run_netlist(DIVIDER, backend="shared")  # make sure the worker is up
    pid = runner._SHARED._proc.pid

    def crash():
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)  # the worker process this test session started

    killer = threading.Thread(target=crash)
    killer.start()
    with pytest.raises(CircuitnnError, match="crash_me.*worker crashed"):
        run_netlist(hung, backend="shared", timeout=20, name="crash_me")
    killer.join()
    assert run_netlist(DIVIDER, backend="shared").plot("Op")["v(mid)"][0] == pytest.approx(1.0)


def test_pyspice_version_warning_is_silenced(caplog):
    logger = logging.getLogger("PySpice.Spice.NgSpice.Shared.NgSpiceShared")
    with caplog.at_level(logging.WARNING, logger="PySpice"):
        logger.warning("Unsupported Ngspice version %s", 39)
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


def test_ngspice_not_installed_message(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not ngspice_available()
    with pytest.raises(CircuitnnError, match="ngspice not found: apt-get install -y ngspice"):
        run_netlist(DIVIDER)


@pytest.mark.ngspice
def test_dc_batch_many_vectors_in_one_run():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(7, 2))
    net = "\n".join(
        ["batch"]
        + dc_batch_lines([("in0", "a", "0"), ("in1", "b", "0")], x)
        + ["R1 a m 1k", "R2 b m 2k", "R3 m 0 3k", ".end"]
    )
    dc = run_netlist(net).plot("DC")
    np.testing.assert_allclose(dc.scale, np.arange(7), atol=0)
    g1, g2, g3 = 1 / 1e3, 1 / 2e3, 1 / 3e3
    vm = (x[:, 0] * g1 + x[:, 1] * g2) / (g1 + g2 + g3)
    np.testing.assert_allclose(dc["v(m)"], vm, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dc["i(bin0)"], -(x[:, 0] - vm) * g1, rtol=1e-9, atol=1e-15)
    one = "\n".join(["one"] + dc_batch_lines([("u", "a", "0")], [[0.25]]) + ["R1 a 0 1k", ".end"])
    assert run_netlist(one).plot("DC")["v(a)"] == pytest.approx([0.25])
    with pytest.raises(CircuitnnError, match="shape"):
        dc_batch_lines([("in0", "a", "0")], np.zeros((3, 2)))
    with pytest.raises(CircuitnnError, match="batch input 0 node"):
        dc_batch_lines([("in0", "a; shell rm", "0")], np.zeros((3, 1)))
    with pytest.raises(CircuitnnError, match="finite"):
        dc_batch_lines([("in0", "a", "0")], [[np.nan]])


@pytest.mark.ngspice
def test_read_raw_rejects_truncated_and_malformed(tmp_path):
    run_netlist(MIXED, workdir=str(tmp_path / "run"))
    (raw,) = (tmp_path / "run").glob("*/out.raw")
    data = raw.read_bytes()
    assert len(read_raw(raw)) == 3
    cut = tmp_path / "cut.raw"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(CircuitnnError, match="truncated"):
        read_raw(cut)
    junk = tmp_path / "junk.raw"
    junk.write_bytes(
        b"Title: x\nPlotname: p\nFlags: real\nNo. Variables: two\nNo. Points: 1\nVariables:\n"
    )
    with pytest.raises(CircuitnnError, match="malformed"):
        read_raw(junk)
    trailing = tmp_path / "trailing.raw"
    trailing.write_bytes(data + b"garbage")
    with pytest.raises(CircuitnnError, match="malformed"):
        read_raw(trailing)
    with pytest.raises(CircuitnnError, match="cannot read"):
        read_raw(tmp_path / "missing.raw")


@pytest.mark.parametrize("bad", ["x; shell rm", "a b", "", "1abc", "a" * 65, "v(x)", None, 3])
def test_safe_name_rejects(bad):
    with pytest.raises(CircuitnnError, match="cell name"):
        safe_name(bad, "cell name")


def test_safe_name_and_node_accept():
    assert safe_name("R_12ab") == "R_12ab"
    assert safe_name("_" + "a" * 63) == "_" + "a" * 63
    assert safe_node("0") == "0"
    with pytest.raises(CircuitnnError):
        safe_node("00")


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -np.inf, "1e3; .control", "1k", True, None, 1j]
)
def test_fmt_rejects(bad):
    with pytest.raises(CircuitnnError, match="resistance"):
        fmt(bad, "resistance")


def test_fmt_round_trips():
    for x in (0.1, 1 / 3, -2.5e-17, 1e300, 7, np.float32(0.2), np.float64(1e-5)):
        s = fmt(x)
        assert float(s) == float(x)
        assert all(c in "0123456789.e+-" for c in s)

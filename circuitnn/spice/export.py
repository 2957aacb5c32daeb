"""A model card exported for other simulators: a SPICE subcircuit or a Verilog-A module.

Both are rendered from the model's single definition (`circuitnn.devices.models`) with the
card's values: `spice` is the project's own dynamic ngspice subcircuit
(`circuitnn.spice.subckt.subckt`: state on a 1 F capacitor, clamped to its bounds) made
self-contained, ``.subckt NAME p n params: s0=...`` with the initial state set inside; plain
`ngspice -b` runs it, and it holds no `.control` block. `verilog-a` is ``module NAME(p, n)``
(`circuitnn.spice.verilog_a`) for OpenVAF and the simulators that load its OSDI libraries
(VACASK, ngspice built with OSDI), or any Verilog-A simulator. The default initial state is the
middle of the state range, where the card's fit starts its warm-up periods
(`circuitnn.fitting.iv`).
Every name, number and comment written goes through `circuitnn.spice.names`.

`simulate_export` runs an exported text in its second simulator (ngspice for `spice`, VACASK
for `verilog-a`), for the check against the project's own simulation
(`circuitnn.fitting.export_check`).
"""

from __future__ import annotations

from pathlib import Path

import circuitnn
from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.models import MODELS
from circuitnn.devices.series import ExprElement
from circuitnn.devices.transient import Trace
from circuitnn.errors import CircuitnnError
from circuitnn.io import write_text
from circuitnn.spice import verilog_a
from circuitnn.spice.names import comment, safe_name
from circuitnn.spice.subckt import simulate_ngspice, subckt

#: format -> the simulator that checks it
FORMATS = {"spice": "ngspice", "verilog-a": "vacask"}


def exportable(card: ModelCard, where: str = "card") -> Device:
    """The card's device, or a CircuitnnError saying why the card cannot be exported."""
    if card.model not in MODELS:
        raise CircuitnnError(f"{where}: cannot export a {card.model!r} card: only compact I-V "
                             f"models are exported ({', '.join(MODELS)})")
    return Device.from_card(card)


def initial_state(device: Device) -> float:
    """The default initial state: the middle of the state range (where fits start)."""
    lo, hi = device.bounds()
    return float(0.5 * (lo + hi))


def check_name(name: str, kind: str) -> str:
    """The subcircuit or module name, if it is a valid identifier for the format."""
    name = safe_name(name, "name")
    if kind == "verilog-a" and name in verilog_a.RESERVED:
        raise CircuitnnError(f"invalid name {name!r}: a Verilog-A keyword")
    return name


def check_format(kind: str) -> str:
    if kind not in FORMATS:
        raise CircuitnnError(f"unknown export format {kind!r}; use {' or '.join(FORMATS)}")
    return kind


def header(card: ModelCard, device: Device, name: str, source: str) -> list[str]:
    """Comment lines: the model, the card and its source, fit quality, state and use."""
    m, prov, fit = device.model, card.provenance, card.fit
    lines = [f"{name}: {m.name} memristor model ({m.citation})",
             f"exported by circuitnn {circuitnn.__version__} from the model card {source}"]
    if prov.get("data"):
        sweeps = ", ".join(str(d.get("sweep")) for d in prov["data"])
        public = sorted({f"{d['public_source'].get('url')} ({d['public_source'].get('licence')})"
                         for d in prov["data"] if isinstance(d.get("public_source"), dict)})
        lines.append(f"source: fitted to measured I-V sweeps of device {prov.get('device')} "
                     f"({sweeps}) on {prov.get('date')}")
        lines += [f"data: {p}" for p in public]
    elif prov.get("source"):
        lines.append(f"source: {prov['source']}")
    labels = {"nrmse": "NRMSE", "log_error_decades": "log error (decades)",
              "nrmse_ngspice": "NRMSE in ngspice"}
    quality = [f"{label} {fit[k]:.4g}" for k, label in labels.items()
               if isinstance(fit.get(k), (int, float))]
    if quality:
        lines.append("fit quality: " + ", ".join(quality)
                     + " (NRMSE: RMS error / measured current span, mean over sweeps)")
    elif fit.get("note"):
        lines.append(f"fit quality: {fit['note']}")
    lo, hi = (float(b) for b in device.bounds())
    unit = m.state_unit or "no unit"
    lines.append(f"state {m.state} ({unit}) in [{lo:.6g}, {hi:.6g}]; initial state: parameter s0, "
                 f"default {initial_state(device):.6g} (the middle of the range, where the fit "
                 "starts)")
    lines.append(f"terminals p, n: current from p to n; polarity {device.polarity:g} (the fit's "
                 "terminal orientation)")
    return lines


def export_text(card: ModelCard, kind: str, name: str, source: str = "card",
                s0: float | None = None) -> str:
    """The exported text of a card: `kind` 'spice' or 'verilog-a', named `name`."""
    check_format(kind)
    name = check_name(name, kind)
    device = exportable(card, source)
    s0 = initial_state(device) if s0 is None else float(s0)
    lines = header(card, device, name, source)
    if kind == "verilog-a":
        lines.append(f'use: compile with openvaf-r to {name}.osdi; VACASK: load "{name}.osdi", '
                     f"model m {name}, x1 (a b) m s0=...")
        return verilog_a.module(device, name, s0, lines)
    lines.append(f"use: .include this file; X1 a b {name} [s0=...] (ngspice -b); the state is "
                 "node s of the instance, in the model's unit: keep .options vntol well below "
                 "the state range")
    text = subckt(device, name, dynamic=True, s0=s0)
    body = text.split("\n", 1)[1]  # the subcircuit's own first comment line is in the header
    return "".join(f"* {comment(h)}\n" for h in lines) + body


def write_export(text: str, out: str | Path) -> Path:
    """Write an exported text atomically; the folder must exist (it is not created)."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise CircuitnnError(f"{out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise CircuitnnError(f"{out}: the folder {out.parent} does not exist")
    return write_text(out, text)


def simulate_export(device: Device, text: str, kind: str, name: str, t, v, s0: float,
                    series: ExprElement | None = None, timeout: float = 300) -> Trace:
    """Simulate an exported text of `device` in the format's second simulator on the waveform
    (t, v), through `series` if given, from the state `s0` (the instance's `s0=`)."""
    check_format(kind)
    if kind == "spice":
        return simulate_ngspice(device, t, v, s0, series=series, timeout=timeout,
                                exported=(text, name))
    from circuitnn.spice.vacask import simulate_vacask

    return simulate_vacask(device, text, name, t, v, s0, series=series, timeout=timeout)


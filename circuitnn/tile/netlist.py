"""ngspice netlists of a tile: the circuit (reusable), and complete batched-read netlists.

Node names (see `circuitnn.tile.spec` for the wire convention): driver output `drv<i>`, input
line after the driver resistance `in<i>`, row-line node at cell (i, j) `r<i>_<j>`, cell internal
node (inside the cell subcircuit), column-line node `c<i>_<j>`, sense node `s<j>`, word-line
driver `wld<i>` and gate node `w<i>_<j>`. A zero resistance merges the nodes it would join.

Reads solve the DC point of a whole batch of input vectors in ONE ngspice run: each row driver
is a behavioural source V = pwl(v(batch_idx), 0, V0, 1, V1, ...) and `.dc Vbatch_idx 0 N-1 1`
sweeps the index (`circuitnn.spice.dc_batch_lines`); each point starts from the previous one.
Measured on the 128 x 16 reference tile with 1000 vectors (benchmarks/bench_tile_read.py), this
was faster than a `.control` loop of `alter` + `op`.
"""

from __future__ import annotations

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.spice import dc_batch_lines, fmt, safe_name
from circuitnn.spice.subckt import subckt as device_subckt
from circuitnn.tile.spec import TileSpec, check_inputs

DEVICE_SUBCKT = "memdev"
OHMIC_SUBCKT = "ohmdev"
CELL_SUBCKT = {"1t1r": "cell1t1r", "passive": "cellpas"}
MOS_MODEL = "nacc"
BATCH_INDEX = "batch_idx"

#: tolerances of read netlists, tight enough for 1e-9 / 1e-6 comparisons with the nodal solver
READ_OPTIONS = "reltol=1e-9 abstol=1e-15 vntol=1e-12 itl1=500 itl2=200"


# --- node names -------------------------------------------------------------------------------
def driver_node(spec: TileSpec, i: int) -> str:
    """Node where the ideal source of row i sits."""
    return f"drv{i}"


def input_node(spec: TileSpec, i: int) -> str:
    """Input line i just after the driver resistance (the driver node if r_driver = 0)."""
    return f"in{i}" if spec.r_driver > 0 else driver_node(spec, i)


def row_node(spec: TileSpec, i: int, j: int) -> str:
    """Row (bit) line node at cell (i, j)."""
    return f"r{i}_{j}" if spec.r_row > 0 else input_node(spec, i)


def sense_node(spec: TileSpec, j: int) -> str:
    """Sense (virtual-ground) node of column j."""
    return f"s{j}"


def col_node(spec: TileSpec, i: int, j: int) -> str:
    """Column (source) line node at cell (i, j)."""
    return f"c{i}_{j}" if spec.r_col > 0 else sense_node(spec, j)


def gate_node(spec: TileSpec, i: int, j: int) -> str:
    """Word-line node at the gate of cell (i, j)."""
    return f"w{i}_{j}" if spec.r_wl > 0 else f"wld{i}"


def output_vectors(spec: TileSpec) -> list[str]:
    """Raw-file vector names holding the column outputs (currents, or TIA output voltages)."""
    if spec.sense == "ideal":
        return [f"i(vs{j})" for j in range(spec.cols)]
    return [f"v(tout{j})" for j in range(spec.cols)]


def outputs_to_current(spec: TileSpec, values: np.ndarray) -> np.ndarray:
    """Turn the saved output vectors (batch, cols) into column currents (A)."""
    if spec.sense == "ideal":
        return values
    return -values / spec.tia.r_f


# --- circuit ----------------------------------------------------------------------------------
def model_lines(spec: TileSpec, dynamic: bool = False) -> list[str]:
    """Device subcircuit, access-transistor model and cell subcircuit definitions."""
    lines: list[str] = []
    if spec.device is None:
        if dynamic:
            raise CircuitnnError("ohmic cells (device=None) have no dynamic model")
        lines += [f".subckt {OHMIC_SUBCKT} p n params: g=1e-05", "R1 p n r={1/g}",
                  f".ends {OHMIC_SUBCKT}"]
        dev, par = OHMIC_SUBCKT, "g"
    else:
        lines += device_subckt(spec.device_model, DEVICE_SUBCKT, dynamic=dynamic).rstrip(
            ).splitlines()
        dev, par = DEVICE_SUBCKT, "s0"
    inner = "" if dynamic else f" {par}={{{par}}}"
    head = "" if dynamic else f" params: {par}={fmt(1e-5 if par == 'g' else 0.0)}"
    name = CELL_SUBCKT[spec.cell]
    if spec.cell == "1t1r":
        t = spec.transistor
        lines.append(
            f".model {MOS_MODEL} nmos level=1 vto={fmt(t.vto)} kp={fmt(t.kp)} "
            f"lambda={fmt(t.lam)} gamma=0 phi=0.7 is=0")
        lines += [f".subckt {name} bl sl wl{head}", f"Xm bl mid {dev}{inner}",
                  f"Mt mid wl sl 0 {MOS_MODEL} w={fmt(t.w)} l={fmt(t.l)}", f".ends {name}"]
    else:
        lines += [f".subckt {name} bl sl{head}", f"Xm bl sl {dev}{inner}", f".ends {name}"]
    return lines


def cell_parameter(spec: TileSpec) -> np.ndarray:
    """(rows, cols) value of each cell instance's parameter (state s0, or conductance g)."""
    return spec.conductance if spec.device is None else spec.states


def instance_name(i: int, j: int) -> str:
    """Cell instance name (the ngspice instance is `X` + this)."""
    return f"c{i}_{j}"


def circuit_lines(spec: TileSpec, dynamic: bool = False) -> list[str]:
    """The tile without its row-driver sources: models, wires, word lines, cells, sense.

    Row i's source must be connected between `driver_node(spec, i)` and ground by the caller.
    dynamic: use the device's dynamic subcircuit (state on a capacitor; set it with `.ic`),
    for transient (programming) netlists.
    """
    rows, cols = spec.shape
    p = cell_parameter(spec)
    out = model_lines(spec, dynamic)
    out.append("* input lines")
    for i in range(rows):
        if spec.r_driver > 0:
            out.append(f"Rdrv{i} {driver_node(spec, i)} {input_node(spec, i)} "
                       f"{fmt(spec.r_driver)}")
        if spec.r_row > 0:
            prev = input_node(spec, i)
            for j in range(cols):
                out.append(f"Rr{i}_{j} {prev} {row_node(spec, i, j)} {fmt(spec.r_row)}")
                prev = row_node(spec, i, j)
    out.append("* output lines")
    if spec.r_col > 0:
        for j in range(cols):
            for i in range(rows):
                nxt = col_node(spec, i + 1, j) if i + 1 < rows else sense_node(spec, j)
                out.append(f"Rc{i}_{j} {col_node(spec, i, j)} {nxt} {fmt(spec.r_col)}")
    if spec.cell == "1t1r":
        out.append("* word lines")
        vg = spec.gate_voltages
        for i in range(rows):
            out.append(f"Vwl{i} wld{i} 0 DC {fmt(float(vg[i]))}")
            if spec.r_wl > 0:
                prev = f"wld{i}"
                for j in range(cols):
                    out.append(f"Rw{i}_{j} {prev} {gate_node(spec, i, j)} {fmt(spec.r_wl)}")
                    prev = gate_node(spec, i, j)
    out.append("* cells")
    name = CELL_SUBCKT[spec.cell]
    for i in range(rows):
        for j in range(cols):
            nodes = f"{row_node(spec, i, j)} {col_node(spec, i, j)}"
            if spec.cell == "1t1r":
                nodes += f" {gate_node(spec, i, j)}"
            par = "" if dynamic else (
                f" {'g' if spec.device is None else 's0'}={fmt(float(p[i, j]))}")
            out.append(f"X{safe_name(instance_name(i, j))} {nodes} {name}{par}")
    out.append("* sense")
    if spec.sense == "ideal":
        for j in range(cols):
            out.append(f"Vs{j} {sense_node(spec, j)} 0 DC 0")
    else:
        a = spec.tia
        out.append(f"Vtos tos 0 DC {fmt(a.v_offset)}")
        for j in range(cols):
            out.append(f"Etia{j} tout{j} 0 tos {sense_node(spec, j)} {fmt(a.gain)}")
            out.append(f"Rf{j} tout{j} {sense_node(spec, j)} {fmt(a.r_f)}")
    return out


def options_line(spec: TileSpec) -> str:
    """`.options` of read netlists (gmin is the spec's, shared with the nodal solver)."""
    return f".options {READ_OPTIONS} gmin={fmt(spec.gmin)}"


def read_netlist(spec: TileSpec, inputs, title: str | None = None) -> str:
    """Complete netlist (plain `ngspice -b` runnable) solving the DC read of every input vector.

    inputs: (batch, rows) volts (validated like `read`). The "DC transfer characteristic" plot
    has one point per vector; `output_vectors(spec)` name the saved column outputs.
    Deterministic: the same spec and inputs give the same text.
    """
    v, _ = check_inputs(spec, inputs)
    rows, cols = spec.shape
    kind = "ohmic" if spec.device is None else spec.device.model
    head = title or f"circuitnn tile read {rows}x{cols} {spec.cell} {kind}"
    if "\n" in head or not head.isprintable():
        raise CircuitnnError("netlist title must be one printable line")
    lines = [f"* {head}",
             f"* {v.shape[0]} input vector(s); outputs: "
             f"{'column currents i(vs<j>)' if spec.sense == 'ideal' else 'TIA outputs v(tout<j>)'}",
             *circuit_lines(spec)]
    lines.append("* row drivers: one DC point per input vector")
    lines += dc_batch_lines([(f"in{i}", driver_node(spec, i), "0") for i in range(rows)], v,
                            index=BATCH_INDEX)
    lines.append(options_line(spec))
    lines.append(".save " + " ".join(output_vectors(spec)))
    lines.append(".print dc " + " ".join(output_vectors(spec)))  # for plain `ngspice -b`
    lines.append(".end")
    return "\n".join(lines) + "\n"

"""Programming a 1T1R (or passive) tile in ngspice: SET/RESET pulse transients and write-verify.

Bias scheme (a standard 1T1R "V/2" scheme; rows are bit lines, columns are source lines, word
line i gates row i, as in `circuitnn.tile.spec`):

* SET of cell (i, j): word line i at `v_gate` (the SET gate voltage sets the transistor's
  current compliance), all other word lines at 0 V; bit (row) line i pulsed to +V, source
  (column) line j held at 0 V. The device's positive terminal is on the bit line, so it sees
  about +V (minus the transistor's drop): the filament gap shrinks, the conductance rises.
* RESET of cell (i, j): polarity reversed by swapping the driven line: source line j pulsed to
  +V, bit line i held at 0 V (the device sees about -V; the transistor now works as a source
  follower, so RESET uses a higher gate voltage).
* Unselected bit and source lines follow the pulse at the inhibit level: ``inhibit="half"``
  (V/2, default) or ``"zero"`` (0 V). With V/2, the other cells of row i (gate on) are
  half-selected and see about V/2; cells of unselected rows have their gate off; in a passive
  tile every cell of row i and of column j is half-selected. With 0 V inhibit, a SET drives the
  whole of row i (every cell sees the full pulse), while a RESET leaves row i at 0 V.

Dynamic cells: ``dynamic="cross"`` (default) gives the cells of the selected row and column the
device's dynamic subcircuit (state on a capacitor, initial value by `.ic`) and every other cell
the static one (state fixed at its value): those cells have their gate off and both lines at
the same inhibit level, so their device voltage stays ~0 and they cannot switch; ngspice's time
is dominated by evaluating the cells' behavioural sources (the dynamic cell's state-rate source
is by far the largest expression), so this is several times faster (16 x 16 tile, 2 ns steps:
0.9 s against 6.2 s with every cell dynamic). ``dynamic="all"`` makes every cell dynamic.
The transient runs with a fixed maximum step `dt` (default 2 ns) and `.options noinit`.
The pulse waveform: 0 V for `edge`, a linear rise over `edge`, `width` at full amplitude, a
linear fall over `edge`, and `edge` of rest (default 5 ns edges, 50 ns width: the identical
50 ns SET/RESET pulse trains reported for the reference hardware, Yao et al., Nature 2020).

Cell-level write-verify (`write_verify_cell`: the loop `circuitnn.tile.verify.verify_loop`,
which the array-level `circuitnn.training.transfer.write_verify` also runs through a pulse law,
here for one cell with ngspice pulses): closed-loop programming of one cell, pulse then read
back, as in the reference hardware: SET pulses while the read-back conductance is below the
tolerance band and RESET pulses while it is above; incremental step programming ramps the SET
gate voltage (compliance) by `set_gate_step` and the RESET amplitude by `reset_step` on
consecutive pulses of the same kind, and restarts both ramps when the direction changes. Each
pulse is a full ngspice transient of the tile that starts from the states the previous one left
(carried through `.ic`); the read-back is a DC read of the cell (its row alone driven at v_read,
its word line alone on) with `read(..., engine)`; the measured conductance is I_col / v_read,
which includes the access transistor and the wires, as a real verify read does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF
from circuitnn.spice import fmt, run_netlist
from circuitnn.tile import netlist as tnl
from circuitnn.tile.spec import V_MAX, TileSpec
from circuitnn.tile.verify import verify_loop

KINDS = ("set", "reset")
INHIBITS = ("half", "zero")
DYNAMICS = ("cross", "all")
DYN_SUBCKT = {"memdev": "memdyn", "cell1t1r": "celldyn", "cellpas": "celldyn"}
_INSTANCE_RE = re.compile(r"^X(c(\d+)_(\d+)) (.+) (cell1t1r|cellpas) s0=\S+$")
MEASURES = ("read", "device")
PROGRAM_OPTIONS = "noinit reltol=1e-4 abstol=1e-12 vntol=1e-7 method=gear"

#: default pulse amplitudes and gate voltages (V): pulse-mode SET ~ 2.0 V and RESET ~ -1.8 V
#: are the secondary-summary figures for the reference hardware (Yao et al. 2020); the gate
#: voltages are the preset's choices (REF.choices), for the default access transistor and the
#: built-in HfOx card: a 1.4 V SET gate limits the current to ~0.6 mA (one pulse takes 20 uS to
#: ~30 uS), and RESET needs a high gate (3.5 V) because the transistor, a source follower in
#: RESET, keeps the device voltage below v_gate - VTO.
DEFAULTS = {
    "set": {"v_pulse": 2.0, "v_gate": REF.choices.set_gate},
    "reset": {"v_pulse": 2.0, "v_gate": REF.choices.reset_gate},
}


@dataclass
class PulseResult:
    """One programming pulse: every cell's state and device read conductance before and after,
    the time axis, and the selected cell's device current, device voltage and state vs time.

    states_t: (rows, cols, time) state of every cell over time.
    """

    row: int
    col: int
    kind: str
    v_pulse: float
    v_gate: float
    states_before: np.ndarray
    states_after: np.ndarray
    g_before: np.ndarray
    g_after: np.ndarray
    t: np.ndarray
    i_cell: np.ndarray
    v_cell: np.ndarray
    states_t: np.ndarray = field(repr=False)
    spec_after: TileSpec = field(repr=False)


def _check_cell(spec: TileSpec, row, col) -> tuple[int, int]:
    for name, val, n in (("row", row, spec.rows), ("col", col, spec.cols)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or not 0 <= val < n:
            raise CircuitnnError(f"{name} must be an integer in 0..{n - 1}, got {val!r}")
    return int(row), int(col)


def _check_program_spec(spec: TileSpec) -> None:
    if not isinstance(spec, TileSpec):
        raise CircuitnnError(f"spec must be a TileSpec, got {type(spec).__name__}")
    if spec.device is None:
        raise CircuitnnError("programming needs a device card: ohmic cells (device=None) "
                             "have no state to program")


def _volts(x, what: str, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise CircuitnnError(f"{what} must be a number of volts, got {x!r}")
    x = float(x)
    if not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero) or x > V_MAX:
        raise CircuitnnError(f"{what} must be in (0, {V_MAX}] V, got {x!r}")
    return x


def _seconds(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise CircuitnnError(f"{what} must be a number of seconds, got {x!r}")
    x = float(x)
    if not np.isfinite(x) or not 0 < x <= 1e-3:
        raise CircuitnnError(f"{what} must be in (0, 1 ms], got {x!r}")
    return x


def initial_states(spec: TileSpec, states=None) -> np.ndarray:
    """(rows, cols) device states: `states` (checked and clipped to the card's bounds) or the
    states of the spec's programmed conductances."""
    _check_program_spec(spec)
    if states is None:
        return np.array(spec.states, dtype=float)
    s = np.array(states, dtype=float)
    if s.shape != spec.shape or not np.all(np.isfinite(s)):
        raise CircuitnnError(f"states must be a finite {spec.shape} array, got shape {s.shape}")
    lo, hi = spec.device_model.bounds()
    return np.clip(s, lo, hi)


def pulse_waveform(v: float, width: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """PWL corners (t, v) of one trapezoidal pulse of amplitude v."""
    t = np.array([0.0, edge, 2 * edge, 2 * edge + width, 3 * edge + width, 4 * edge + width])
    return t, np.array([0.0, 0.0, v, v, 0.0, 0.0])


def line_amplitudes(spec: TileSpec, row: int, col: int, kind: str, v_pulse: float,
                    inhibit: str) -> tuple[np.ndarray, np.ndarray]:
    """Peak voltages of every bit (row) line and source (column) line during the pulse."""
    inh = v_pulse / 2 if inhibit == "half" else 0.0
    v_rows = np.full(spec.rows, inh)
    v_cols = np.full(spec.cols, inh)
    if kind == "set":
        v_rows[row], v_cols[col] = v_pulse, 0.0
    else:
        v_rows[row], v_cols[col] = 0.0, v_pulse
    return v_rows, v_cols


def state_node(i: int, j: int) -> str:
    """Node of the state capacitor of cell (i, j) inside its cell subcircuit."""
    inst = tnl.instance_name(i, j).lower()
    return f"x{inst}.xm.s"


def dynamic_cells(shape: tuple[int, int], row: int, col: int, dynamic: str) -> np.ndarray:
    """(rows, cols) booleans: which cells get the dynamic device subcircuit."""
    if dynamic not in DYNAMICS:
        raise CircuitnnError(f"unknown dynamic {dynamic!r}; use 'cross' or 'all'")
    dyn = np.zeros(shape, dtype=bool)
    if dynamic == "all":
        dyn[:] = True
    dyn[row, :] = True
    dyn[:, col] = True
    return dyn


def _tile_lines(pspec: TileSpec, s0: np.ndarray, dyn: np.ndarray) -> list[str]:
    """The tile from `circuit_lines` (static cells), without its sense sources, plus renamed
    dynamic subcircuits; cell instances rewritten with the carried states `s0` (static cells)
    or the dynamic cell subcircuit (cells where `dyn`)."""
    rows, cols = pspec.shape
    sense = {f"Vs{j} {tnl.sense_node(pspec, j)} 0 DC 0" for j in range(cols)}
    static = tnl.circuit_lines(pspec, dynamic=False)
    body: list[str] = []
    seen = 0
    for ln in static:
        if ln in sense:
            continue
        m = _INSTANCE_RE.match(ln)
        if m is not None:
            i, j = int(m.group(2)), int(m.group(3))
            head = f"X{m.group(1)} {m.group(4)}"
            ln = (f"{head} celldyn" if dyn[i, j]
                  else f"{head} {m.group(5)} s0={fmt(float(s0[i, j]), 'state')}")
            seen += 1
        body.append(ln)
    if seen != rows * cols or len(body) != len(static) - cols:
        raise CircuitnnError("tile netlist layout changed: cells or sense sources not found")
    word = re.compile(r"\b(" + "|".join(DYN_SUBCKT) + r")\b")
    dyn_models = [word.sub(lambda m: DYN_SUBCKT[m.group(1)], ln)
                  for ln in tnl.model_lines(pspec, dynamic=True)
                  if not ln.lower().startswith(".model")]
    return ["* dynamic subcircuits (state on a capacitor)", *dyn_models, *body]


def program_netlist(spec: TileSpec, row: int, col: int, *, kind: str = "set",
                    v_pulse: float | None = None, v_gate: float | None = None,
                    width: float = REF.hardware.program_pulse_s, edge: float = 5e-9,
                    dt: float = 2e-9, inhibit: str = "half", states=None,
                    dynamic: str = "cross") -> str:
    """Transient netlist of one SET or RESET pulse on cell (row, col) (scheme: module doc).

    The tile circuit is `circuitnn.tile.netlist.circuit_lines(spec)` with the sense sources
    replaced by the column-line drivers (a TIA sense is disconnected while programming) and the
    cells chosen by `dynamic` made dynamic. states: (rows, cols) initial device states
    (default: the spec's).
    """
    _check_program_spec(spec)
    row, col = _check_cell(spec, row, col)
    if kind not in KINDS:
        raise CircuitnnError(f"unknown pulse kind {kind!r}; use 'set' or 'reset'")
    if inhibit not in INHIBITS:
        raise CircuitnnError(f"unknown inhibit {inhibit!r}; use 'half' or 'zero'")
    vp = _volts(DEFAULTS[kind]["v_pulse"] if v_pulse is None else v_pulse, f"{kind} v_pulse")
    vg = _volts(DEFAULTS[kind]["v_gate"] if v_gate is None else v_gate, f"{kind} v_gate",
                allow_zero=True)
    width, edge, dt = (_seconds(x, n) for x, n in ((width, "width"), (edge, "edge"), (dt, "dt")))
    s0 = initial_states(spec, states)
    mask = np.zeros(spec.rows, dtype=bool)
    mask[row] = True
    pspec = spec.with_(sense="ideal", row_mask=mask, v_gate=vg)
    dyn = dynamic_cells(spec.shape, row, col, dynamic)
    body = _tile_lines(pspec, s0, dyn)
    t, shape = pulse_waveform(1.0, width, edge)
    v_rows, v_cols = line_amplitudes(spec, row, col, kind, vp, inhibit)
    from circuitnn.spice.subckt import pwl_source

    lines = [f"* circuitnn {kind} pulse on cell ({row}, {col}) of a {spec.rows}x{spec.cols} "
             f"{spec.cell} tile", *body, "* bit-line drivers"]
    lines += [pwl_source(f"in{i}", tnl.driver_node(pspec, i), "0", t, v_rows[i] * shape)
              for i in range(spec.rows)]
    lines.append("* source-line drivers")
    lines += [pwl_source(f"s{j}", tnl.sense_node(pspec, j), "0", t, v_cols[j] * shape)
              for j in range(spec.cols)]
    lines.append("* initial states")
    cells = list(zip(*np.nonzero(dyn), strict=True))
    lines += [f".ic v({state_node(i, j)})={fmt(float(s0[i, j]), 'state')}" for i, j in cells]
    top = tnl.row_node(pspec, row, col)
    bot = (f"x{tnl.instance_name(row, col)}.mid" if spec.cell == "1t1r"
           else tnl.col_node(pspec, row, col))
    saves = [f"v({state_node(i, j)})" for i, j in cells]
    saves += [f"v({top})"] + ([f"v({bot})"] if bot != "0" else [])
    lines += [f".options {PROGRAM_OPTIONS} gmin={fmt(spec.gmin)}",
              f".tran {fmt(dt)} {fmt(float(t[-1]))} 0 {fmt(dt)}",
              ".save " + " ".join(saves), ".end"]
    return "\n".join(lines) + "\n"


def program_pulse(spec: TileSpec, row: int, col: int, *, kind: str = "set",
                  v_pulse: float | None = None, v_gate: float | None = None,
                  width: float = REF.hardware.program_pulse_s, edge: float = 5e-9,
                  dt: float = 2e-9, inhibit: str = "half", states=None,
                  dynamic: str = "cross",
                  backend: str = "subprocess", timeout: float = 300) -> PulseResult:
    """Simulate one SET/RESET pulse on cell (row, col) in ngspice (scheme: module doc).

    Returns a :class:`PulseResult` (static cells keep their state); `spec_after` is the spec
    with the cells' new read conductances (other fields unchanged).
    """
    text = program_netlist(spec, row, col, kind=kind, v_pulse=v_pulse, v_gate=v_gate,
                           width=width, edge=edge, dt=dt, inhibit=inhibit, states=states,
                           dynamic=dynamic)
    s0 = initial_states(spec, states)
    res = run_netlist(text, backend=backend, timeout=timeout,
                      name=f"{kind} pulse cell ({row}, {col})")
    plot = res.plot("Transient")
    t = plot.data["time"].real
    dev = spec.device_model
    lo, hi = dev.bounds()
    st = np.repeat(s0[:, :, None], t.size, axis=2)
    for i, j in zip(*np.nonzero(dynamic_cells(spec.shape, row, col, dynamic)), strict=True):
        st[i, j] = np.clip(plot.data[f"v({state_node(i, j)})"].real, lo, hi)
    mask = np.zeros(spec.rows, dtype=bool)
    mask[row] = True
    pspec = spec.with_(sense="ideal", row_mask=mask)
    top = plot.data[f"v({tnl.row_node(pspec, row, col)})"].real
    if spec.cell == "1t1r":
        bot = plot.data[f"v(x{tnl.instance_name(row, col)}.mid)"].real
    else:
        node = tnl.col_node(pspec, row, col)
        bot = np.zeros_like(t) if node == "0" else plot.data[f"v({node})"].real
    v_cell = top - bot
    i_cell = dev.current(v_cell, st[row, col])
    s1 = st[:, :, -1].copy()
    g0 = dev.conductance(s0, spec.v_read)
    g1 = dev.conductance(s1, spec.v_read)
    g_lo, g_hi = dev.g_range
    after = spec.with_(conductance=np.clip(g1, g_lo, g_hi))
    vp = DEFAULTS[kind]["v_pulse"] if v_pulse is None else float(v_pulse)
    vg = DEFAULTS[kind]["v_gate"] if v_gate is None else float(v_gate)
    return PulseResult(row, col, kind, vp, vg, s0, s1, g0, g1, t, i_cell, v_cell, st, after)


# --- write-verify -----------------------------------------------------------------------------
@dataclass
class WriteVerifyResult:
    """Outcome of `write_verify_cell`: success, pulses used, and the traces.

    g_trace: (n_pulses + 1,) measured conductance before each pulse and after the last;
    g_device: the selected device's own read conductance at the same moments; kinds, v_pulses,
    v_gates: each pulse's kind and voltages; states: final (rows, cols) device states;
    spec: the spec with the final conductances.
    """

    success: bool
    n_pulses: int
    g_target: float
    tol: float
    g_trace: np.ndarray
    g_device: np.ndarray
    kinds: list[str]
    v_pulses: list[float]
    v_gates: list[float]
    states: np.ndarray = field(repr=False)
    spec: TileSpec = field(repr=False)


def measure_cell(spec: TileSpec, row: int, col: int, states=None, *, engine: str = "ngspice",
                 measure: str = "read") -> float:
    """Conductance of cell (row, col) as a verify step sees it.

    measure="read": a DC read with only row `row` driven at v_read and only its word line on;
    returns I_col / v_read (includes transistor and wires). measure="device": the device's own
    read conductance from its state (no circuit).
    """
    if measure not in MEASURES:
        raise CircuitnnError(f"unknown measure {measure!r}; use 'read' or 'device'")
    s = initial_states(spec, states)
    dev = spec.device_model
    if measure == "device":
        return float(dev.conductance(s[row, col], spec.v_read))
    from circuitnn.tile.read import read

    g_lo, g_hi = dev.g_range
    g = np.clip(dev.conductance(s, spec.v_read), g_lo, g_hi)
    mask = np.zeros(spec.rows, dtype=bool)
    mask[row] = True
    rspec = spec.with_(conductance=g, row_mask=mask)
    v = np.zeros((1, spec.rows))
    v[0, row] = spec.v_read
    cur = np.asarray(read(rspec, v, engine=engine), dtype=float)
    return float(cur[0, col] / spec.v_read)


def write_verify_cell(spec: TileSpec, row: int, col: int, g_target: float, *,
                      tol: float = 0.05, max_pulses: int = 20, engine: str = "ngspice",
                      measure: str = "read", states=None, v_set: float = 2.0,
                      set_gate: float = 1.0, set_gate_step: float = 0.1, v_reset: float = 1.4,
                      reset_step: float = 0.1, reset_gate: float = 3.5,
                      width: float = REF.hardware.program_pulse_s, edge: float = 5e-9,
                      dt: float = 2e-9, inhibit: str = "half", dynamic: str = "cross",
                      backend: str = "subprocess", spacing: float | None = None
                      ) -> WriteVerifyResult:
    """Closed-loop programming of cell (row, col) to `g_target` siemens (module doc).

    Stops when |G - g_target| <= tol * spacing (success; `spacing` the level spacing of the
    window in S, default g_target: a tolerance relative to the target) or after `max_pulses`
    pulses.
    SET pulses: amplitude `v_set`, gate `set_gate` + k * set_gate_step; RESET pulses: amplitude
    `v_reset` + k * reset_step, gate `reset_gate` (k counts consecutive pulses of one kind;
    ramps are capped at V_MAX).
    """
    _check_program_spec(spec)
    row, col = _check_cell(spec, row, col)
    if isinstance(g_target, bool) or not isinstance(g_target, (int, float, np.floating)) or not (
            np.isfinite(g_target) and g_target > 0):
        raise CircuitnnError(f"g_target must be a positive conductance in S, got {g_target!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise CircuitnnError(f"tol must be a relative tolerance in (0, 1), got {tol!r}")
    if isinstance(max_pulses, bool) or not isinstance(max_pulses, int) or max_pulses < 0:
        raise CircuitnnError(f"max_pulses must be a non-negative integer, got {max_pulses!r}")
    for name, val in (("v_set", v_set), ("set_gate", set_gate), ("v_reset", v_reset),
                      ("reset_gate", reset_gate)):
        _volts(val, name)
    if spacing is None:
        spacing = float(g_target)
    elif isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not (
            np.isfinite(spacing) and spacing > 0):
        raise CircuitnnError(f"spacing must be a positive conductance in S, got {spacing!r}")
    for name, val in (("set_gate_step", set_gate_step), ("reset_step", reset_step)):
        _volts(val, name, allow_zero=True)
    from circuitnn.tile.read import check_engine

    check_engine(engine)
    dev = spec.device_model
    s = initial_states(spec, states)
    state = {"s": s, "spec": spec}
    trace: list[float] = []
    gdev: list[float] = []
    kinds: list[str] = []
    vps: list[float] = []
    vgs: list[float] = []

    def read_back(idx: np.ndarray) -> np.ndarray:
        g = measure_cell(state["spec"], row, col, state["s"], engine=engine, measure=measure)
        trace.append(g)
        gdev.append(float(dev.conductance(state["s"][row, col], spec.v_read)))
        return np.array([g])

    def pulse(idx: np.ndarray, up: np.ndarray, rung: np.ndarray) -> None:
        kind, k = ("set" if up[0] else "reset"), int(rung[0])
        if kind == "set":
            vp, vg = v_set, min(set_gate + k * set_gate_step, V_MAX)
        else:
            vp, vg = min(v_reset + k * reset_step, V_MAX), reset_gate
        res = program_pulse(state["spec"], row, col, kind=kind, v_pulse=vp, v_gate=vg,
                            width=width, edge=edge, dt=dt, inhibit=inhibit, states=state["s"],
                            dynamic=dynamic, backend=backend)
        state["s"], state["spec"] = res.states_after, res.spec_after
        kinds.append(kind)
        vps.append(vp)
        vgs.append(vg)

    out = verify_loop(np.array([float(g_target)]), tol * spacing, max_pulses, read_back, pulse)
    s, cur = state["s"], state["spec"]
    ok = bool(out.converged[0])
    return WriteVerifyResult(ok, len(kinds), float(g_target), float(tol), np.array(trace),
                             np.array(gdev), kinds, vps, vgs, s, cur)

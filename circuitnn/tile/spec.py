"""Typed description of a 1T1R (or passive) crossbar tile for reads: cells, wires, drivers, sense.

Wire convention (see figures/tile_wire_convention.png): input (row, bit) line i is driven at its
column-0 end; one segment `r_row` joins the driver to cell (i, 0) and one joins each pair of
neighbouring cells (i, j) -> (i, j+1), so a row has `cols` segments. Output (column, source)
line j is sensed past the last row: one segment `r_col` joins cells (i, j) -> (i+1, j) and one
joins cell (rows-1, j) to the sense node, so a column has `rows` segments. Word line i (gates of
row i) is driven at the column-0 end with `v_gate` through `r_wl` per segment, laid out like the
input line. A zero resistance means an ideal wire (the nodes are merged).

1T1R cell: row-line node -> memristor (positive terminal at the row line) -> internal node =
transistor drain; transistor source -> column-line node; gate on the word line; body grounded.
Passive cell: the memristor alone between the row-line and column-line nodes.

Access transistor defaults (SPICE level 1, Shichman-Hodges), calibrated to published 130 nm
bulk-CMOS figures: threshold VTO = 0.40 V (PTM 130 nm bulk NMOS cards list vth0 ~ 0.38-0.43 V;
Cao et al., "New paradigm of predictive MOSFET and interconnect modeling for early circuit
simulation", CICC 2000, ptm.asu.edu); oxide thickness 2.5 nm (ITRS 2001, 130 nm node, low-power
logic: physical tox ~ 2-3 nm) gives Cox = 3.9 eps0 / tox = 13.8 mF/m^2 and, with an effective
electron mobility of 250 cm^2/Vs, KP = mu_n Cox = 345 uA/V^2; LAMBDA = 0.1 /V (short-channel
level-1 approximation); W/L = 0.5 um / 0.13 um; gate drive 1.2 V (the 130 nm core supply). The
on-resistance at small drain-source voltage is 1 / (KP W/L (v_gate - VTO)) ~ 0.94 kOhm: a few
percent of the cells' 50-200 kOhm (5-20 uS) but not negligible. GAMMA = 0 (no body effect) and
IS = 0 (junctions reduce to ngspice's gmin from drain and source to the body), so that the
nodal solver reproduces ngspice's level-1 equations exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from circuitnn.devices import Device, ModelCard, load_device, with_operating_point
from circuitnn.devices.operating import V_MAX, switching_thresholds
from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF

CELLS = ("1t1r", "passive")
SENSES = ("ideal", "tia")
DEFAULT_V_READ = REF.hardware.v_read  # V: used for ohmic cells (the reference read voltage)
MAX_CELLS = 1 << 20
R_MIN, R_MAX = 1e-6, 1e9  # ohm: non-zero wire and driver resistances outside this are refused


def _positive(x: float, what: str, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise CircuitnnError(f"{what} must be a number, got {x!r}")
    x = float(x)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        need = "finite and >= 0" if allow_zero else "finite and > 0"
        raise CircuitnnError(f"{what} must be {need}, got {x!r}")
    return x


def _finite(x: float, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise CircuitnnError(f"{what} must be a number, got {x!r}")
    if not math.isfinite(float(x)):
        raise CircuitnnError(f"{what} must be finite, got {x!r}")
    return float(x)


@dataclass(frozen=True)
class Transistor:
    """Access NMOS, SPICE level 1 (see the module docstring for the 130 nm calibration)."""

    w: float = 0.5e-6  # m
    l: float = 0.13e-6  # m  # noqa: E741
    vto: float = 0.40  # V
    kp: float = 345e-6  # A/V^2
    lam: float = 0.1  # 1/V, channel-length modulation (SPICE LAMBDA)

    def __post_init__(self) -> None:
        for name in ("w", "l", "kp"):
            _positive(getattr(self, name), f"transistor {name}")
        _finite(self.vto, "transistor vto")
        _positive(self.lam, "transistor lam", allow_zero=True)

    @property
    def beta(self) -> float:
        """KP W / L (A/V^2)."""
        return self.kp * self.w / self.l


@dataclass(frozen=True)
class TIA:
    """Behavioural transimpedance amplifier per column: open-loop gain, offset, feedback.

    vo = gain * (v_offset - v_in), with r_f from vo to the column's sense node v_in. The read
    returns -vo / r_f (amperes): the column current, up to finite-gain and offset errors.
    """

    gain: float = 1e5
    r_f: float = 1e3  # ohm
    v_offset: float = 0.0  # V, referred to the non-inverting input

    def __post_init__(self) -> None:
        _positive(self.gain, "TIA gain")
        _positive(self.r_f, "TIA feedback resistance r_f")
        _finite(self.v_offset, "TIA offset voltage")


@dataclass(frozen=True, eq=False)
class TileSpec:
    """A tile for reads: programmed read conductances plus cell, wire, driver and sense choices.

    conductance: (rows, cols) siemens, the read conductance of each cell's device at `v_read`.
    device: a ModelCard (cell states are set so that the device alone has conductance G at
    v_read) or None for ohmic cells of exactly G. r_row, r_col, r_wl: ohms per wire segment
    (default: the reference preset's r_wire); r_driver: driver output resistance; v_gate:
    word-line drive of selected rows; row_mask: (rows,) booleans, False turns a row off (1T1R:
    word line at 0 V; passive: input at 0 V); sense: "ideal" (virtual ground) or "tia"; gmin:
    ngspice's junction gmin (S), used by both engines; v_read: defaults to the card's, else the
    preset's. A card without an operating record is replaced by a copy with its safe v_read
    (`circuitnn.devices.operating`).
    """

    conductance: np.ndarray
    cell: str = "1t1r"
    device: ModelCard | None = None
    r_row: float = REF.choices.r_wire
    r_col: float = REF.choices.r_wire
    r_wl: float = REF.choices.r_wire
    r_driver: float = 0.0
    v_gate: float = 1.2
    transistor: Transistor = field(default_factory=Transistor)
    sense: str = "ideal"
    tia: TIA = field(default_factory=TIA)
    row_mask: np.ndarray | None = None
    gmin: float = 1e-12
    v_read: float | None = None

    def __post_init__(self) -> None:
        try:
            g = None if isinstance(self.conductance, str) else np.array(
                self.conductance, dtype=float, copy=True)
        except (TypeError, ValueError):
            g = None
        if g is None or g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
            shape = None if g is None else g.shape
            raise CircuitnnError(f"conductance must be a 2-D (rows, cols) array, got shape {shape}")
        if g.size > MAX_CELLS:
            raise CircuitnnError(f"tile of {g.size} cells is larger than the limit {MAX_CELLS}")
        bad = ~np.isfinite(g) | (g <= 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise CircuitnnError(
                f"conductance must be finite and > 0 S; cell ({i}, {j}) is {g[i, j]!r}")
        g.setflags(write=False)
        object.__setattr__(self, "conductance", g)
        if self.cell not in CELLS:
            raise CircuitnnError(f"unknown cell {self.cell!r}; use one of {', '.join(CELLS)}")
        if self.sense not in SENSES:
            raise CircuitnnError(f"unknown sense {self.sense!r}; use one of {', '.join(SENSES)}")
        if self.device is not None and not isinstance(self.device, ModelCard):
            raise CircuitnnError("device must be a ModelCard or None (ohmic cells)")
        if not isinstance(self.transistor, Transistor):
            raise CircuitnnError("transistor must be a Transistor")
        if not isinstance(self.tia, TIA):
            raise CircuitnnError("tia must be a TIA")
        for name in ("r_row", "r_col", "r_wl", "r_driver"):
            r = _positive(getattr(self, name), name, allow_zero=True)
            if r != 0 and not R_MIN <= r <= R_MAX:
                raise CircuitnnError(f"{name} must be 0 (ideal wire) or in [{R_MIN:g}, "
                                     f"{R_MAX:g}] ohm, got {r!r}")
        if _positive(self.gmin, "gmin", allow_zero=True) > 1e-6:
            raise CircuitnnError(f"gmin must be at most 1e-6 S (a junction leak), got {self.gmin}")
        v_gate = _finite(self.v_gate, "v_gate")
        if abs(v_gate) > V_MAX:
            raise CircuitnnError(f"v_gate must be within +-{V_MAX} V, got {v_gate}")
        if self.row_mask is not None:
            m = np.asarray(self.row_mask)
            if m.shape != (g.shape[0],) or m.dtype.kind not in "bui":
                raise CircuitnnError(
                    f"row_mask must be ({g.shape[0]},) booleans, got shape {m.shape}")
            if m.dtype.kind != "b" and not np.isin(m, (0, 1)).all():
                raise CircuitnnError("row_mask must hold only True/False (or 1/0)")
            m = m.astype(bool)
            m.setflags(write=False)
            object.__setattr__(self, "row_mask", m)
        if self.device is not None:
            object.__setattr__(self, "device", with_operating_point(self.device, "tile device"))
        vr = self.v_read
        if vr is None:
            vr = self.device_model.v_read if self.device is not None else DEFAULT_V_READ
        vr = _finite(vr, "v_read")
        if vr == 0 or abs(vr) > V_MAX:
            raise CircuitnnError(f"v_read must be non-zero and within +-{V_MAX} V, got {vr}")
        if self.device is not None:
            dev = self.device_model
            lo, hi = sorted(float(x) for x in np.abs(dev.conductance(np.stack(dev.bounds()), vr)))
            out = (g < lo * (1 - 1e-9)) | (g > hi * (1 + 1e-9))
            if out.any():
                i, j = np.argwhere(out)[0]
                raise CircuitnnError(
                    f"conductance of cell ({i}, {j}) = {g[i, j]:.4g} S is outside the card's "
                    f"range [{lo:.4g}, {hi:.4g}] S at v_read = {vr:g} V")
        object.__setattr__(self, "v_read", vr)

    # --- derived quantities --------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.conductance.shape  # type: ignore[return-value]

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @cached_property
    def device_model(self) -> Device | None:
        """The `Device` of the card (None for ohmic cells)."""
        return None if self.device is None else load_device(self.device)

    @cached_property
    def states(self) -> np.ndarray | None:
        """(rows, cols) device states giving read conductance G at v_read (None if ohmic)."""
        dev = self.device_model
        if dev is None:
            return None
        # one inversion per distinct conductance (programmed tiles often share levels)
        levels, where = np.unique(self.conductance, return_inverse=True)
        s = dev.state_for_conductance(levels, self.v_read)[where].reshape(self.shape)
        s.setflags(write=False)
        return s

    @property
    def mask(self) -> np.ndarray:
        """(rows,) booleans: True where a row is selected."""
        if self.row_mask is None:
            return np.ones(self.rows, dtype=bool)
        return self.row_mask

    @property
    def gate_voltages(self) -> np.ndarray:
        """(rows,) DC gate voltage of each row (the word lines carry no DC current)."""
        return np.where(self.mask, self.v_gate, 0.0)

    @cached_property
    def card_threshold(self) -> float:
        """Smallest |device voltage| (V) at which the card's state moves anywhere in its state
        range (inf if none, or for ohmic cells): its operating record's switching thresholds
        (`circuitnn.devices.operating`, states spread over the whole range). A read below it
        switches no cell, whatever the cells' states."""
        if self.device is None:
            return math.inf
        return min(math.inf if v is None else float(v)
                   for v in self.device.operating["thresholds_V"].values())

    @cached_property
    def disturb_voltage(self) -> float:
        """Smallest |device voltage| (V) at which any cell's state would move (inf if none).

        `circuitnn.devices.operating.switching_thresholds` at the tile's extreme and quartile
        states; reads are refused at or above it (a read must not switch cells).
        """
        dev = self.device_model
        if dev is None:
            return math.inf
        return min(switching_thresholds(dev, np.quantile(np.ravel(self.states),
                                                         [0, 0.25, 0.5, 0.75, 1.0])))

    def with_(self, **changes) -> TileSpec:
        """A copy with some fields changed (validated again)."""
        from dataclasses import replace

        return replace(self, **changes)


def check_inputs(spec: TileSpec, inputs) -> tuple[np.ndarray, bool]:
    """Validate read inputs; returns ((batch, rows) float array, whether a 1-D vector was given).

    Refuses wrong shapes, non-finite values, |V| > V_MAX and |V| at or above the tile's disturb
    voltage (a read must not switch the cells; computed only for inputs that reach the card's
    switching threshold, `TileSpec.card_threshold`).
    """
    if isinstance(inputs, str):
        raise CircuitnnError("inputs must be an array of volts, not a string")
    try:
        v = np.array(inputs, dtype=float)
    except (TypeError, ValueError):
        raise CircuitnnError("inputs must be a numeric array of volts") from None
    single = v.ndim == 1
    if single:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != spec.rows or v.shape[0] < 1:
        raise CircuitnnError(
            f"inputs must have shape (batch, {spec.rows}) or ({spec.rows},), got "
            f"{np.shape(inputs)}")
    if not np.all(np.isfinite(v)):
        b, i = np.argwhere(~np.isfinite(v))[0]
        raise CircuitnnError(f"input voltage [{b}, {i}] is not finite ({v[b, i]!r})")
    vmax = float(np.max(np.abs(v)))
    if vmax > V_MAX:
        raise CircuitnnError(f"input voltages must be within +-{V_MAX} V, got |V| = {vmax:g} V")
    # the tile's own threshold (every cell's state) only where the card's, at or below it for
    # any state, does not already clear the inputs: a new spec's first read costs nothing more
    if vmax >= spec.card_threshold and vmax >= spec.disturb_voltage:
        raise CircuitnnError(
            f"input |V| = {vmax:g} V reaches the device's switching threshold "
            f"~{spec.disturb_voltage:.3g} V: a read must stay below it")
    if spec.cell == "passive" and spec.row_mask is not None:
        v = v * spec.mask[None, :]
    return v, single

"""Write-verify: the one closed loop that programs cells, and the verify read of a cell.

`verify_loop` is the loop every programming path shares: one cell in ngspice
(`circuitnn.tile.program.write_verify_cell`, each pulse a transient of the tile) and whole arrays
through a pulse law (`circuitnn.training.transfer.write_verify`). Each round reads the cells
still being programmed; a cell whose read is within the tolerance of its target is done (never
pulsed or read again); every other one gets one pulse, SET (raises G) when it reads below target,
RESET when above, with the rung of its ramp: the number of pulses of the same kind it received
just before (0 after a change of direction), which an incremental scheme turns into a higher
gate or amplitude. After `max_pulses` rounds the cells still programming get a last read.

`verify_reads` is the verify read of the cells of a 1T1R tile as a chip measures them: one row at
a time driven at v_read, its word line alone on, every column sensed at 0 V, so each cell's read
current passes its device, its access transistor (at the read word-line voltage) and the wire
segments between it and its driver and sense (`circuitnn.tile.spec` convention), the row line
carrying the currents of the whole row; G = I / v_read. Each cell's internal node is solved as
the nodal solver solves it (`CellModel.cell_current`); the wires' drop by a fixed-point
iteration on the currents (a few hundred ohms against a cell's kilo-ohms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.tile.nodal import CellModel
from circuitnn.tile.spec import TileSpec

WIRE_ITERATIONS = 4  # fixed-point steps on the wire drop (relative change < 1e-6 after 4)


@dataclass
class VerifyOutcome:
    """Per cell: pulses applied, whether the last read was within tolerance, the last read."""

    pulses: np.ndarray
    converged: np.ndarray
    measured: np.ndarray


def verify_loop(target: np.ndarray, tolerance: np.ndarray | float, max_pulses: int,
                measure: Callable[[np.ndarray], np.ndarray],
                pulse: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
                cells: np.ndarray | None = None,
                progress: Callable[[int], None] | None = None) -> VerifyOutcome:
    """Program the cells `cells` (indices into the flat `target`, default all) by write-verify.

    measure(idx) -> the verify reads (S) of cells idx; pulse(idx, up, rung) applies one pulse to
    each cell of idx: SET where `up`, else RESET, at ramp rung `rung` (module doc). tolerance:
    absolute (S), scalar or per cell. `progress(n)` after each round with the cells pulsed.
    """
    target = np.asarray(target, float).reshape(-1)
    tol = np.broadcast_to(np.asarray(tolerance, float), target.shape)
    if not np.all(tol > 0):
        raise CircuitnnError("write-verify tolerance must be > 0 S")
    if max_pulses < 0:
        raise CircuitnnError(f"pulse budget must be >= 0, got {max_pulses}")
    n = target.size
    active = np.arange(n) if cells is None else np.asarray(cells, np.int64)
    pulses = np.zeros(n, np.int64)
    converged = np.zeros(n, bool)
    measured = np.full(n, np.nan)
    rung = np.zeros(n, np.int64)
    last_up = np.zeros(n, np.int8)  # +1 SET, -1 RESET, 0 none yet
    for _ in range(max_pulses):
        g = measure(active)
        measured[active] = g
        err = g - target[active]
        done = np.abs(err) <= tol[active]
        converged[active[done]] = True
        active, err = active[~done], err[~done]
        if active.size == 0:
            break
        up = err < 0
        sign = np.where(up, 1, -1).astype(np.int8)
        rung[active] = np.where(last_up[active] == sign, rung[active] + 1, 0)
        last_up[active] = sign
        pulse(active, up, rung[active])
        pulses[active] += 1
        if progress is not None:
            progress(int(active.size))
    else:
        if active.size:
            g = measure(active)
            measured[active] = g
            converged[active[np.abs(g - target[active]) <= tol[active]]] = True
    return VerifyOutcome(pulses, converged, measured)


def verify_reads(spec: TileSpec, g_device: np.ndarray | None = None,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """Verify-read conductance (S) of the cells of a tile like `spec`, each row read on its
    own (module doc), with the devices reading `g_device` on their own (default: the spec's
    conductances). rows: only these rows (indices; `g_device` then holds just them, (len(rows),
    cols)). Ohmic cells (no card) have no transistor; the wires still count."""
    rows = np.arange(spec.rows) if rows is None else np.asarray(rows, np.int64)
    g = np.asarray(spec.conductance[rows] if g_device is None else g_device, float)
    if g.shape != (rows.size, spec.cols):
        raise CircuitnnError(f"g_device must be {(rows.size, spec.cols)}, got {g.shape}")
    r_bot = ((spec.rows - rows) * spec.r_col)[:, None]
    v = spec.v_read
    if spec.device is None:
        def current(top: np.ndarray, bot: np.ndarray) -> np.ndarray:
            return g * (top - bot)
    else:
        lo, hi = spec.device_model.g_range
        g = np.clip(g, lo, hi)
        model = CellModel(spec)  # the spec's transistor, card and gmin; these cells' states
        model.g = g
        model.states = spec.device_model.state_for_conductance(g, v)
        model.gate = np.full((rows.size, 1), spec.v_gate)
        current = model.cell_current
    i = current(np.full(g.shape, v), np.zeros(g.shape))
    for _ in range(WIRE_ITERATIONS):
        seg = np.cumsum(i[:, ::-1], axis=1)[:, ::-1]  # current in the segment before each cell
        top = v - spec.r_driver * seg[:, :1] - spec.r_row * np.cumsum(seg, axis=1)
        i = current(top, i * r_bot)
    return i / v

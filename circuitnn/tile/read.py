"""`read`: column currents of a tile for a batch of input vectors, through a pluggable engine.

Engines live in `ENGINES` (name -> function(spec, V, **options) -> I); `register_engine` adds
one (e.g. a surrogate) without editing this module. Built in: "ngspice" (one batched DC run of
the netlist from `circuitnn.tile.netlist`) and "nodal" (`circuitnn.tile.nodal`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.tile.spec import TileSpec, check_inputs

Engine = Callable[..., np.ndarray]
ENGINES: dict[str, Engine] = {}


def register_engine(name: str, fn: Engine) -> None:
    """Make `fn(spec, V, **options) -> I` available as read(..., engine=name).

    V arrives validated with shape (batch, rows); fn returns (batch, cols) amperes.
    """
    if not isinstance(name, str) or not name:
        raise CircuitnnError("engine name must be a non-empty string")
    ENGINES[name] = fn


def read_ngspice(spec: TileSpec, v: np.ndarray, backend: str = "subprocess",
                 timeout: float = 600.0) -> np.ndarray:
    """Column currents from ngspice: one run, one DC point per input vector."""
    from circuitnn.spice import run_netlist
    from circuitnn.tile.netlist import output_vectors, outputs_to_current, read_netlist

    res = run_netlist(read_netlist(spec, v), backend=backend, timeout=timeout,
                      name=f"tile read {spec.rows}x{spec.cols}")
    plot = res.plot("DC transfer")
    try:
        out = np.stack([np.real(plot.data[k]) for k in output_vectors(spec)], axis=1)
    except KeyError as exc:
        raise CircuitnnError(f"ngspice result lacks the output vector {exc}") from None
    if out.shape[0] != v.shape[0]:
        raise CircuitnnError(
            f"ngspice returned {out.shape[0]} DC points for {v.shape[0]} input vectors")
    return outputs_to_current(spec, out)


def read_nodal(spec: TileSpec, v: np.ndarray, **options) -> np.ndarray:
    """Column currents from the nodal solver (`circuitnn.tile.nodal.NodalSolver`)."""
    from circuitnn.tile.nodal import NodalSolver

    return NodalSolver(spec).solve(v, **options)


register_engine("ngspice", read_ngspice)
register_engine("nodal", read_nodal)


def read(spec: TileSpec, V, engine: str = "ngspice", **options) -> np.ndarray:
    """Read a tile: V (batch, rows) volts -> I (batch, cols) amperes (a (rows,) V gives (cols,)).

    engine: a name in ENGINES ("ngspice", "nodal", ...); options go to the engine (ngspice:
    backend, timeout; nodal: tol, max_iter). Bad inputs raise CircuitnnError.
    """
    if not isinstance(spec, TileSpec):
        raise CircuitnnError("spec must be a TileSpec")
    if engine == "surrogate" and engine not in ENGINES:
        import circuitnn.surrogate  # noqa: F401  (registers the engine on import)
    if engine not in ENGINES:
        raise CircuitnnError(f"unknown engine {engine!r}; known: {', '.join(sorted(ENGINES))}")
    v, single = check_inputs(spec, V)
    out = np.asarray(ENGINES[engine](spec, v, **options), dtype=float)
    if out.shape != (v.shape[0], spec.cols):
        raise CircuitnnError(f"engine {engine!r} returned shape {out.shape}, expected "
                             f"{(v.shape[0], spec.cols)}")
    return out[0] if single else out

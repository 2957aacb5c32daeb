"""`read`: column currents of a tile for a batch of input vectors, through a named engine.

`ENGINES` is the one registry of tile-read engines: each name maps to the function that
implements it, written as "module:function" and imported on first use. This module therefore
imports no engine (the surrogate lives a layer above the tile), and nothing registers itself by
being imported. Every engine function takes (spec, V, **options) with V validated to
(batch, rows) volts and returns (batch, cols) amperes.

- "ideal": the ideal crossbar I = V G (no wires, no access device, ohmic cells of G);
- "nodal": our exact DC solver of the tile's circuit (`circuitnn.tile.nodal`);
- "ngspice": one batched DC run of the tile's netlist (`circuitnn.tile.netlist`);
- "surrogate": the fitted behavioural tile model (`circuitnn.surrogate`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.tile.spec import TileSpec, check_inputs

Engine = Callable[..., np.ndarray]
ENGINES: dict[str, str] = {
    "ideal": "circuitnn.tile.read:read_ideal",
    "nodal": "circuitnn.tile.read:read_nodal",
    "ngspice": "circuitnn.tile.read:read_ngspice",
    "surrogate": "circuitnn.surrogate.engine:read_surrogate",
}
#: engines that simulate the tile's circuit (wires, access transistors, device I-V)
CIRCUIT_ENGINES = ("surrogate", "nodal", "ngspice")


def check_engine(engine: str) -> str:
    """Return `engine` if it names a tile-read engine, else raise CircuitnnError."""
    if engine not in ENGINES:
        raise CircuitnnError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    return engine


def engine_function(engine: str) -> Engine:
    """The function behind an engine name (imported on first use)."""
    module, attr = ENGINES[check_engine(engine)].split(":")
    return getattr(importlib.import_module(module), attr)


def read_ideal(spec: TileSpec, v: np.ndarray) -> np.ndarray:
    """Ideal crossbar: I = V @ G."""
    return v @ spec.conductance


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


def read(spec: TileSpec, V, engine: str = "ngspice", **options) -> np.ndarray:
    """Read a tile: V (batch, rows) volts -> I (batch, cols) amperes (a (rows,) V gives (cols,)).

    engine: a name in ENGINES; options go to the engine (ngspice: backend, timeout; nodal: tol,
    max_iter; surrogate: card). Bad inputs raise CircuitnnError.
    """
    if not isinstance(spec, TileSpec):
        raise CircuitnnError("spec must be a TileSpec")
    fn = engine_function(engine)
    v, single = check_inputs(spec, V)
    out = np.asarray(fn(spec, v, **options), dtype=float)
    if out.shape != (v.shape[0], spec.cols):
        raise CircuitnnError(f"engine {engine!r} returned shape {out.shape}, expected "
                             f"{(v.shape[0], spec.cols)}")
    return out[0] if single else out

"""`read`: column currents of a tile for a batch of input vectors, through a named engine.

An `Engine` is one record: its name, the function that reads a tile, whether it simulates the
tile's circuit and whether a whole network run may use it. This layer knows three engines
(`TILE_ENGINES`); the one registry of every engine, the surrogate's and the network's included,
is `circuitnn.surrogate.read.ENGINES`, which extends this table (nothing registers itself by
being imported). Every engine function takes (spec, V, **options) with V validated to
(batch, rows) volts and returns (batch, cols) amperes.

- "ideal": the ideal crossbar I = V G (no wires, no access device, ohmic cells of G);
- "nodal": our exact DC solver of the tile's circuit (`circuitnn.tile.nodal`);
- "ngspice": one batched DC run of the tile's netlist (`circuitnn.tile.netlist`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.tile.spec import TileSpec, check_inputs


@dataclass(frozen=True)
class Engine:
    """One engine. read: (spec, V, **options) -> currents, or None for an engine that reads no
    tile by itself (the network's bit-serial periphery on the ideal crossbar); circuit: it
    simulates the tile's circuit (wires, access transistors, device I-V); chain: fast enough for
    a whole network run."""

    name: str
    read: Callable[..., np.ndarray] | None
    circuit: bool
    chain: bool


def check_engine(engine: str, engines: Mapping[str, Engine] | None = None) -> Engine:
    """The record of `engine` in `engines` (default: this layer's), else a CircuitnnError."""
    here = engines is None
    engines = TILE_ENGINES if here else engines
    if not isinstance(engine, str) or engine not in engines:
        more = " (every engine, the surrogate's included: the surrogate package's read)" \
            if here else ""
        raise CircuitnnError(f"unknown engine {engine!r}; known: {', '.join(engines)}{more}")
    return engines[engine]


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


TILE_ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("ideal", read_ideal, circuit=False, chain=True),
    Engine("nodal", read_nodal, circuit=True, chain=True),
    Engine("ngspice", read_ngspice, circuit=True, chain=False),
)}


def read_with(engine: Engine, spec: TileSpec, V, **options) -> np.ndarray:
    """Read a tile through the engine `engine` (a record): inputs checked, output shape checked;
    a (rows,) V gives (cols,)."""
    if not isinstance(spec, TileSpec):
        raise CircuitnnError("spec must be a TileSpec")
    if engine.read is None:
        raise CircuitnnError(f"engine {engine.name!r} reads no tile by itself (a network "
                             "engine: bit-serial periphery on the ideal crossbar)")
    v, single = check_inputs(spec, V)
    out = np.asarray(engine.read(spec, v, **options), dtype=float)
    if out.shape != (v.shape[0], spec.cols):
        raise CircuitnnError(f"engine {engine.name!r} returned shape {out.shape}, expected "
                             f"{(v.shape[0], spec.cols)}")
    return out[0] if single else out


def read(spec: TileSpec, V, engine: str = "ngspice", **options) -> np.ndarray:
    """Read a tile: V (batch, rows) volts -> I (batch, cols) amperes (a (rows,) V gives (cols,)).

    engine: "ideal", "nodal" or "ngspice" (the surrogate, a layer above:
    `circuitnn.surrogate.read`); options go to the engine (ngspice: backend, timeout; nodal: tol,
    max_iter). Bad inputs raise CircuitnnError.
    """
    return read_with(check_engine(engine), spec, V, **options)

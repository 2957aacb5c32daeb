"""`read(spec, V, engine)` through any engine, and `ENGINES`, the one registry of engines.

The registry lives here, the lowest layer that knows every engine: the tile's three
(`circuitnn.tile.read.TILE_ENGINES`: "ideal", "nodal", "ngspice"), the fitted surrogate and the
network's bit-serial "quantised" engine (`circuitnn.network.engines`: 8-bit inputs applied
bit-serially on the ideal crossbar, then the ADC; it reads no tile by itself). Each name has
one `Engine` record: its tile-read function, whether it simulates the circuit, whether a whole
network run may use it. Nothing registers itself by being imported.
"""

from __future__ import annotations

import numpy as np

from circuitnn.surrogate.engine import read_surrogate
from circuitnn.tile.read import TILE_ENGINES, Engine, read_with
from circuitnn.tile.read import check_engine as _check_in
from circuitnn.tile.spec import TileSpec

ENGINES: dict[str, Engine] = {e.name: e for e in (
    TILE_ENGINES["ideal"],
    Engine("quantised", None, circuit=False, chain=True),
    Engine("surrogate", read_surrogate, circuit=True, chain=True),
    TILE_ENGINES["nodal"],
    TILE_ENGINES["ngspice"],
)}


def check_engine(engine: str) -> Engine:
    """The record of `engine`, else a CircuitnnError naming the known engines."""
    return _check_in(engine, ENGINES)


def read(spec: TileSpec, V, engine: str = "ngspice", **options) -> np.ndarray:
    """Read a tile: V (batch, rows) volts -> I (batch, cols) amperes (a (rows,) V gives (cols,)).

    engine: "ngspice" (options backend, timeout), "nodal" (exact, fast), "surrogate" (fitted,
    fastest; option card) or "ideal" (V G). Bad inputs raise CircuitnnError.
    """
    return read_with(check_engine(engine), spec, V, **options)

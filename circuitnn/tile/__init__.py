"""1T1R crossbar tiles: description (spec), ngspice netlists, nodal solver, batched reads.

`read` takes this layer's engines ("ideal", "nodal", "ngspice"); every engine, the surrogate
included, is read through `circuitnn.surrogate.read` (the one registry, `ENGINES`).
"""

from circuitnn.tile.read import TILE_ENGINES, Engine, read
from circuitnn.tile.spec import TIA, TileSpec, Transistor

__all__ = ["TIA", "TILE_ENGINES", "Engine", "TileSpec", "Transistor", "read"]

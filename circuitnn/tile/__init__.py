"""1T1R crossbar tiles: description (spec), ngspice netlists, nodal solver, batched reads.

The one registry of read engines is `ENGINES` in `circuitnn.tile.read`.
"""

from circuitnn.tile.read import CIRCUIT_ENGINES, ENGINES, check_engine, read
from circuitnn.tile.spec import TIA, TileSpec, Transistor

__all__ = ["CIRCUIT_ENGINES", "ENGINES", "TIA", "TileSpec", "Transistor", "check_engine", "read"]

"""1T1R crossbar tiles: description (spec), ngspice netlists, nodal solver, batched reads."""

from circuitnn.tile.read import ENGINES, read, register_engine
from circuitnn.tile.spec import TIA, TileSpec, Transistor

__all__ = ["ENGINES", "TIA", "TileSpec", "Transistor", "read", "register_engine"]

"""circuitnn.surrogate: a fast physics-structured surrogate of 1T1R tile reads, calibrated to
circuit solutions (nodal / ngspice), and `read(spec, V, engine)` through every engine (the one
registry of engines, `ENGINES`)."""

from circuitnn.surrogate.card import SurrogateCard, find_card
from circuitnn.surrogate.engine import programmed, read_surrogate
from circuitnn.surrogate.model import SurrogateTile
from circuitnn.surrogate.read import ENGINES, check_engine, read

__all__ = ["ENGINES", "SurrogateCard", "SurrogateTile", "check_engine", "find_card", "programmed",
           "read", "read_surrogate"]

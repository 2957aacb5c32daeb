"""circuitnn.surrogate: a fast physics-structured surrogate of 1T1R tile reads, calibrated to
circuit solutions (nodal / ngspice); `circuitnn.tile.read(..., engine="surrogate")` uses it."""

from circuitnn.surrogate.card import SurrogateCard, find_card
from circuitnn.surrogate.engine import programmed, read_surrogate, surrogate_read_with_grad
from circuitnn.surrogate.model import SurrogateTile, program

__all__ = ["SurrogateCard", "SurrogateTile", "find_card", "program", "programmed",
           "read_surrogate", "surrogate_read_with_grad"]

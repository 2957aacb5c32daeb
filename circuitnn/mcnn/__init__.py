"""The memristor CNN of Yao et al. (Nature 2020) end to end: transfer, hybrid training, energy."""

from circuitnn.mcnn.chip import Chip

__all__ = ["Chip"]

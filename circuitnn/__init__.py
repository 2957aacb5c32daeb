"""circuitnn: circuit-level co-simulation of memristor neural-network hardware."""

__version__ = "0.1.0"

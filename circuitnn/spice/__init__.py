"""ngspice layer: netlist-safe names/numbers, device subcircuits (`subckt.py`), raw-file reader,
netlist runners (subprocess and PySpice shared)."""

from circuitnn.spice.names import fmt, safe_name, safe_node
from circuitnn.spice.raw import RawPlot, read_raw
from circuitnn.spice.runner import (
    CONVERGENCE_OPTIONS,
    SpiceResult,
    dc_batch_lines,
    ngspice_available,
    run_netlist,
    shutdown_shared_worker,
    silence_pyspice_version_warning,
    with_options,
)

__all__ = [
    "CONVERGENCE_OPTIONS",
    "RawPlot",
    "SpiceResult",
    "dc_batch_lines",
    "fmt",
    "ngspice_available",
    "read_raw",
    "run_netlist",
    "safe_name",
    "safe_node",
    "shutdown_shared_worker",
    "silence_pyspice_version_warning",
    "with_options",
]

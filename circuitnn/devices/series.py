"""Two-terminal elements in series with a device: a resistor, an instrument's current limit, or
any element a caller writes as an expression of its voltage (e.g. an access transistor at a
fixed gate voltage, `circuitnn.fitting.derive.access_transistor`).

The simulator drives node `a` with the applied voltage; the element sits between `a` and the
device's positive terminal `d`, and carries `current(v_a - v_d)` from `a` to `d`. The element
must be passive and monotone (current increasing with u, zero at u = 0), so the device voltage
lies between 0 and the applied voltage. Its expression (`ExprElement`) is compiled into the
integrator with the model (`circuitnn.devices.transient`) and renders as an ngspice B-source
(`circuitnn.spice.subckt.element_line`), so the same element runs in ngspice.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from circuitnn.devices import expr
from circuitnn.errors import CircuitnnError

#: sharpness of the current limit (exponent of the smooth minimum); see `current_limit`
LIMIT_SHARPNESS = 20.0
#: compiled element kernels by expression
_KERNELS: dict[str, expr.Kernel] = {}


class ExprElement:
    """A series element whose current is an expression of `u` (the voltage across it)."""

    def __init__(self, expression: str, params: Mapping[str, float | np.ndarray],
                 description: str) -> None:
        unknown = expr.names(expression) - set(params) - {"u"}
        if unknown:
            raise CircuitnnError(f"series element {expression!r}: undefined {sorted(unknown)}")
        self.expression = expression
        self.params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
        self.description = description
        if expression not in _KERNELS:
            node = expr.parse(expression)
            _KERNELS[expression] = expr.Kernel([node, expr.derivative(node, "u")], ("u",),
                                               "element")
        #: its current and conductance as a kernel of u, and the kernel's parameter values
        self.kernel = _KERNELS[expression]
        self.prepared = self.kernel.prepare(self.params)

    def current_and_conductance(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(current, conductance = d current / d u) at u."""
        i, g = self.kernel(self.prepared, {"u": u})
        return i + 0.0 * u, g + 0.0 * u

    def current(self, u: np.ndarray) -> np.ndarray:
        return self.current_and_conductance(u)[0]

    def conductance(self, u: np.ndarray) -> np.ndarray:
        return self.current_and_conductance(u)[1]

    def __repr__(self) -> str:
        return f"ExprElement({self.description})"


def resistor(r_ohm: float | np.ndarray) -> ExprElement:
    """A linear resistor (ohm, > 0)."""
    r = np.asarray(r_ohm, dtype=float)
    if not (np.all(np.isfinite(r)) and np.all(r > 0)):
        raise CircuitnnError(f"series resistance must be finite and > 0, got {r_ohm}")
    return ExprElement("u / R", {"R": r}, f"resistor {r_ohm} ohm")


def current_limit(i_max_a: float | np.ndarray, r_ohm: float | np.ndarray = 1.0) -> ExprElement:
    """A source-measure unit's current compliance, as a series element.

    Below the limit the instrument is a voltage source with output resistance `r_ohm` (default
    1 ohm, negligible against a memristor; a series resistor of the set-up goes here too); at the
    limit it becomes a current source of +-i_max. The corner is a smooth minimum
    I = (u/r) / (1 + |u / (r i_max)|^n)^(1/n) with n = LIMIT_SHARPNESS (= 20: within 0.06 % of
    u/r up to 0.8 i_max, 1.5 % low at 0.95 i_max), smooth so that Newton and ngspice converge.
    """
    i_max = np.asarray(i_max_a, dtype=float)
    r = np.asarray(r_ohm, dtype=float)
    if not (np.all(np.isfinite(i_max)) and np.all(i_max > 0)):
        raise CircuitnnError(f"current limit must be finite and > 0 A, got {i_max_a}")
    if not (np.all(np.isfinite(r)) and np.all(r > 0)):
        raise CircuitnnError(f"source resistance must be finite and > 0, got {r_ohm}")
    return ExprElement("u / r / pow(1 + pow(abs(u / (r * i_max)), n), 1 / n)",
                       {"r": r, "i_max": i_max, "n": LIMIT_SHARPNESS},
                       f"current limit {i_max_a} A, source resistance {r_ohm} ohm")

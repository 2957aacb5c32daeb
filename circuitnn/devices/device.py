"""A device: a compact model with parameter values, simulated with numpy.

Parameters may be scalars or arrays (one value per device); everything broadcasts, so many
devices (or many candidate parameter sets during a fit) run in one vectorised simulation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from circuitnn.devices import expr, transient
from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.models import CompactModel, get_model
from circuitnn.devices.series import ExprElement, resistor
from circuitnn.devices.transient import Trace
from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF

ArrayLike = float | np.ndarray

# card parameters that belong to the device, not to the model's equations
DEVICE_KEYS = ("polarity", "v_read")


class Device:
    """A compact model bound to parameter values (scalars or per-device arrays)."""

    def __init__(
        self,
        model: CompactModel | str,
        params: Mapping[str, ArrayLike] | None = None,
        polarity: float = 1.0,
        v_read: float = REF.hardware.v_read,
    ) -> None:
        self.model = get_model(model) if isinstance(model, str) else model
        values = self.model.defaults()
        for k, val in (params or {}).items():
            if k not in values:
                raise CircuitnnError(f"model {self.model.name!r} has no parameter {k!r}")
            values[k] = val
        self.params = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        if polarity not in (1, -1, 1.0, -1.0):
            raise CircuitnnError(f"polarity must be +1 or -1, got {polarity}")
        if not (np.isfinite(v_read) and v_read != 0):
            raise CircuitnnError(f"v_read must be a finite non-zero voltage, got {v_read}")
        self.polarity = float(polarity)
        self.v_read = float(v_read)

    @classmethod
    def from_card(cls, card: ModelCard) -> Device:
        """Build a device from a model card."""
        values = card.values()
        extra = {k: values.pop(k) for k in DEVICE_KEYS if k in values}
        return cls(card.model, values, polarity=extra.get("polarity", 1.0),
                   v_read=extra.get("v_read", REF.hardware.v_read))

    def to_card(self, **fields) -> ModelCard:
        """A card of this device's scalar parameters; `fields` fill its other parts."""
        params = {
            p.name: Parameter(float(self.params[p.name]), p.unit, description=p.description)
            for p in self.model.params
        }
        params["polarity"] = Parameter(self.polarity, "", description="terminal orientation")
        params["v_read"] = Parameter(self.v_read, "V", description="read voltage")
        return ModelCard(self.model.name, params, **fields)

    # --- equations --------------------------------------------------------------------------
    def kernel(self, which: str) -> tuple[expr.Kernel, expr.Prepared]:
        """A compiled kernel of the model and its prepared parameter environment."""
        cache = self.__dict__.setdefault("_kernels", {})
        if which not in cache:
            kern = _model_kernels(self.model)[which]
            cache[which] = (kern, kern.prepare(self.params))
        return cache[which]

    def _eval(self, which: str, v: ArrayLike, s: ArrayLike) -> tuple[np.ndarray, ...]:
        lo, hi = self.bounds()
        v = np.asarray(v, dtype=float)
        sc = np.clip(s, lo, hi)
        zero = 0.0 * v * sc
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return tuple(out + zero for out in self.evaluate(which, v, sc))

    def evaluate(self, which: str, v: ArrayLike, s: ArrayLike) -> tuple:
        """Raw model outputs for the integrator: 'rate' (r,), 'rate_jac' (r, r_v, r_s),
        'current' (I,), 'current_jac' (I, I_v, I_s) at device voltage v and a state s inside its
        bounds, in the model's own orientation (see `current`, `rate` for the polarity), without
        broadcasting or floating-point error guards (callers set `np.errstate`)."""
        kern, prepared = self.kernel(which)
        return kern.run(prepared, {"v": v * self.polarity if self.polarity != 1.0 else v,
                                   self.model.state: s})

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper state bounds."""
        if "_bounds" not in self.__dict__:
            env = dict(self.params)
            self._bounds = (np.asarray(expr.evaluate(self.model.state_lo, env), float),
                            np.asarray(expr.evaluate(self.model.state_hi, env), float))
        return self._bounds

    def current(self, v: ArrayLike, s: ArrayLike) -> np.ndarray:
        """Device current (A) at device voltage v and state s."""
        return self.polarity * self._eval("current", v, s)[0]

    def current_jac(self, v: ArrayLike, s: ArrayLike) -> tuple[np.ndarray, ...]:
        """(I, dI/dv, dI/ds) at device voltage v and state s."""
        i, i_v, i_s = self._eval("current_jac", v, s)
        return self.polarity * i, i_v, self.polarity * i_s

    def held(self, s: ArrayLike, r: np.ndarray) -> np.ndarray:
        """Where the state sits at a bound and the rate pushes outwards (the rate is held at 0)."""
        lo, hi = self.bounds()
        return ((s >= hi) & (r > 0)) | ((s <= lo) & (r < 0))

    def rate(self, v: ArrayLike, s: ArrayLike) -> np.ndarray:
        """State rate of change, held at zero where it would push the state past a bound."""
        (r,) = self._eval("rate", v, s)
        return np.where(self.held(s, r), 0.0, r)

    def rate_jac(self, v: ArrayLike, s: ArrayLike) -> tuple[np.ndarray, ...]:
        """(rate, d rate/dv, d rate/ds), all zero where `rate` is held at a bound."""
        r, r_v, r_s = self._eval("rate_jac", v, s)
        held = self.held(s, r)
        return (np.where(held, 0.0, r), np.where(held, 0.0, self.polarity * r_v),
                np.where(held, 0.0, r_s))

    def conductance(self, s: ArrayLike, v_read: float | None = None) -> np.ndarray:
        """Read conductance I(v_read)/v_read (S) at state s."""
        vr = self.v_read if v_read is None else v_read
        return self.current(vr, s) / vr

    @property
    def g_range(self) -> tuple[float, float]:
        """(min, max) read conductance in siemens at `v_read` over the state range."""
        lo, hi = self.bounds()
        g = np.concatenate([np.ravel(self.conductance(lo)), np.ravel(self.conductance(hi))])
        return float(np.min(g)), float(np.max(g))

    def state_for_conductance(self, g: ArrayLike, v_read: float | None = None) -> np.ndarray:
        """The state whose read conductance equals g (bisection; g is clipped to the range)."""
        g = np.asarray(g, dtype=float)
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            raise CircuitnnError("target conductances must be finite and non-negative")
        lo, hi = self.bounds()
        a = np.broadcast_to(lo, np.broadcast_shapes(g.shape, np.shape(lo))).astype(float)
        b = np.broadcast_to(hi, a.shape).astype(float)
        rising = self.conductance(b, v_read) > self.conductance(a, v_read)
        for _ in range(80):
            mid = 0.5 * (a + b)
            above = self.conductance(mid, v_read) > g
            go_low = above == rising  # target lies between a and mid
            b = np.where(go_low, mid, b)
            a = np.where(go_low, a, mid)
        return 0.5 * (a + b)

    # --- transient --------------------------------------------------------------------------
    def simulate(
        self,
        t: np.ndarray,
        v: np.ndarray,
        s0: ArrayLike | None = None,
        r_series: ArrayLike = 0.0,
        series: ExprElement | None = None,
        rtol: float = transient.RTOL,
        atol: float = transient.ATOL,
        strict: bool = True,
        max_steps: int = transient.MAX_STEPS,
        max_total_steps: int | None = None,
    ) -> Trace:
        """Integrate the state over a sampled voltage waveform (linear between samples).

        Error-controlled, L-stable Rosenbrock integration (`circuitnn.devices.transient`).
        t: (n,) sample times, or (..., n) broadcastable with v; v: (..., n) applied volts.
        s0: initial state (default: the lower bound). `r_series` (ohm, > 0 to use) or `series`
        (an `ExprElement`, e.g. an access transistor) sits between the source and the device.
        Returns values at every sample. With `strict` False, a device whose state cannot be
        integrated (non-finite rate, more than `max_steps` steps between two samples or
        `max_total_steps` in all) gets
        NaN outputs instead of an error.
        """
        r = np.asarray(r_series, dtype=float)
        if np.any(r > 0):
            if series is not None:
                raise CircuitnnError("give either r_series or a series element, not both")
            series = resistor(np.where(r > 0, r, 1e-9))
        return transient.simulate(self, t, v, s0, series, rtol=rtol, atol=atol, strict=strict,
                                  max_steps=max_steps, max_total_steps=max_total_steps)


_KERNELS: dict[tuple, dict[str, expr.Kernel]] = {}


def _model_kernels(model: CompactModel) -> dict[str, expr.Kernel]:
    """The compiled kernels of a model's equations (compiled once per distinct model)."""
    key = (model.state, model.current, model.rate, tuple(model.definitions.items()))
    if key not in _KERNELS:
        rate = expr.substitute(model.rate, model.definitions)
        current = expr.substitute(model.current, model.definitions)
        s, d, varying = model.state, expr.derivative, ("v", model.state)
        _KERNELS[key] = {
            "rate": expr.Kernel([rate], varying, "rate"),
            "rate_jac": expr.Kernel([rate, d(rate, "v"), d(rate, s)], varying, "rate_jac"),
            "current": expr.Kernel([current], varying, "current"),
            "current_jac": expr.Kernel([current, d(current, "v"), d(current, s)], varying,
                                       "current_jac"),
        }
    return _KERNELS[key]

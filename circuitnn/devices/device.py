"""A device: a compact model with parameter values, simulated with numpy.

Parameters may be scalars or arrays (one value per device); everything broadcasts, so many
devices (or many candidate parameter sets during a fit) run in one vectorised simulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from circuitnn.devices import expr
from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.models import CompactModel, get_model
from circuitnn.errors import CircuitnnError

ArrayLike = float | np.ndarray

# card parameters that belong to the device, not to the model's equations
DEVICE_KEYS = ("polarity", "v_read")


@dataclass
class Trace:
    """A simulated waveform: applied voltage, device voltage, current and state at each sample."""

    t: np.ndarray
    v: np.ndarray
    v_device: np.ndarray
    i: np.ndarray
    state: np.ndarray


class Device:
    """A compact model bound to parameter values (scalars or per-device arrays)."""

    def __init__(
        self,
        model: CompactModel | str,
        params: Mapping[str, ArrayLike] | None = None,
        polarity: float = 1.0,
        v_read: float = 0.2,
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
                   v_read=extra.get("v_read", 0.2))

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
    def _env(self, v: ArrayLike, s: ArrayLike) -> dict[str, object]:
        env: dict[str, object] = dict(self.params)
        env["v"] = np.asarray(v, dtype=float) * self.polarity
        env[self.model.state] = s
        for name, text in self.model.definitions.items():
            env[name] = expr.evaluate(text, env)
        return env

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper state bounds."""
        env = dict(self.params)
        return (np.asarray(expr.evaluate(self.model.state_lo, env), float),
                np.asarray(expr.evaluate(self.model.state_hi, env), float))

    def current(self, v: ArrayLike, s: ArrayLike) -> np.ndarray:
        """Device current (A) at device voltage v and state s."""
        lo, hi = self.bounds()
        env = self._env(v, np.clip(s, lo, hi))
        return self.polarity * expr.evaluate(self.model.current, env) + 0.0 * env["v"]

    def rate(self, v: ArrayLike, s: ArrayLike) -> np.ndarray:
        """State rate of change, held at zero where it would push the state past a bound."""
        lo, hi = self.bounds()
        sc = np.clip(s, lo, hi)
        r = expr.evaluate(self.model.rate, self._env(v, sc)) + 0.0 * sc
        return np.where(((sc >= hi) & (r > 0)) | ((sc <= lo) & (r < 0)), 0.0, r)

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

    def device_voltage(self, v: ArrayLike, s: ArrayLike, r_series: ArrayLike) -> np.ndarray:
        """Voltage across the device when `v` is applied through a series resistance."""
        v = np.asarray(v, dtype=float)
        r = np.asarray(r_series, dtype=float)
        if not np.any(r > 0):
            return v + 0.0 * np.asarray(s)
        lo = np.minimum(v, 0.0) + 0.0 * np.asarray(s)
        hi = np.maximum(v, 0.0) + 0.0 * np.asarray(s)
        x = 0.5 * (lo + hi)
        for _ in range(60):
            f = x + r * self.current(x, s) - v
            lo = np.where(f < 0, x, lo)
            hi = np.where(f >= 0, x, hi)
            h = 1e-7 * np.maximum(np.abs(x), 1e-3)
            df = 1.0 + r * (self.current(x + h, s) - self.current(x - h, s)) / (2 * h)
            step = x - f / df
            bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
            x_new = np.where(bad, 0.5 * (lo + hi), step)
            if np.all(np.abs(x_new - x) <= 1e-13 + 1e-11 * np.abs(x)):
                return x_new
            x = x_new
        return x

    # --- transient --------------------------------------------------------------------------
    def simulate(
        self,
        t: np.ndarray,
        v: np.ndarray,
        s0: ArrayLike | None = None,
        r_series: ArrayLike = 0.0,
        substeps: int = 8,
    ) -> Trace:
        """Integrate the state over a sampled voltage waveform (linear between samples, RK4).

        t: (n,) sample times, or (..., n) broadcastable with v; v: (..., n) applied volts.
        s0: initial state (default: the lower bound). Returns values at every sample.
        """
        t = np.asarray(t, dtype=float)
        v = np.asarray(v, dtype=float)
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
            raise CircuitnnError("waveform has non-finite values")
        if np.any(np.diff(t, axis=-1) <= 0):
            raise CircuitnnError("waveform times must be strictly increasing")
        lo, hi = self.bounds()
        shape = np.broadcast_shapes(v.shape[:-1], t.shape[:-1], np.shape(s0),
                                    *(p.shape for p in self.params.values()))
        s = np.broadcast_to(lo if s0 is None else np.clip(s0, lo, hi), shape).astype(float)
        n = v.shape[-1]
        states = np.empty(shape + (n,))
        vdev = np.empty(shape + (n,))
        cur = np.empty(shape + (n,))

        def f(vv: np.ndarray, ss: np.ndarray) -> np.ndarray:
            return self.rate(self.device_voltage(vv, ss, r_series), ss)

        for k in range(n):
            if k > 0:
                dt = (t[..., k] - t[..., k - 1]) / substeps
                v0, v1 = v[..., k - 1], v[..., k]
                for j in range(substeps):
                    va = v0 + (v1 - v0) * (j / substeps)
                    vm = v0 + (v1 - v0) * ((j + 0.5) / substeps)
                    vb = v0 + (v1 - v0) * ((j + 1) / substeps)
                    k1 = f(va, s)
                    k2 = f(vm, np.clip(s + 0.5 * dt * k1, lo, hi))
                    k3 = f(vm, np.clip(s + 0.5 * dt * k2, lo, hi))
                    k4 = f(vb, np.clip(s + dt * k3, lo, hi))
                    s = np.clip(s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), lo, hi)
            vd = self.device_voltage(v[..., k], s, r_series)
            states[..., k] = s
            vdev[..., k] = vd
            cur[..., k] = self.current(vd, s)
        return Trace(np.broadcast_to(t, cur.shape), np.broadcast_to(v, cur.shape), vdev, cur,
                     states)

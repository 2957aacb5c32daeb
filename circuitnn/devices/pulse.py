"""Pulse-update device model: how one SET or RESET pulse changes a cell's conductance.

Mean law (written once, in `_mean_step`): the exponential pulse-response model of NeuroSim
(P.-Y. Chen, X. Peng, S. Yu, "NeuroSim: a circuit-level macro model for benchmarking
neuro-inspired architectures in online learning", IEEE TCAD 37(12), 2018; P.-Y. Chen, B. Lin,
I.-T. Wang et al., ICCAD 2015). Along a ramp from the opposite bound,

    G_LTP(P) = g_min + B_p (1 - exp(-P nu_p)),   B_p = (g_max - g_min) / (1 - exp(-pmax_p nu_p))
    G_LTD(P) = g_max - B_d (1 - exp(-P nu_d)),   likewise,

so `pmax` pulses traverse the whole window and `nu` (= 1/A in NeuroSim) sets the nonlinearity:
nu > 0 gives steps that shrink towards the bound approached (saturating, "soft bounds"),
nu < 0 steps that grow (accelerating), nu = 0 constant steps. Written as a function of the
state alone (exact for one pulse), with span = g_max - g_min:

    dG+ = s_p * ( span * c(nu_p, pmax_p) - r(nu_p) * (G - g_min) )
    dG- = -s_d * ( span * c(nu_d, pmax_d) - r(nu_d) * (g_max - G) )
    r(nu) = 1 - exp(-nu),   c(nu, pmax) = r(nu) / (1 - exp(-pmax nu))   (-> 1/pmax as nu -> 0)

`s_p`, `s_d` are per-device step scales (1 for the nominal device). G is clipped to the
device's [g_min, g_max] after every pulse.

Noise, measured from data (see `circuitnn.fitting.pulse`):
- cycle-to-cycle update noise, accumulating in the state: each pulse's step gets
  sqrt(sigma_add^2 + (sigma_mult * dG)^2) * N(0, 1) (additive and multiplicative parts, per
  direction);
- level noise `sigma_level`: a non-accumulating fluctuation of each conductance read after a
  pulse (read noise and fast relaxation), applied by `read`; it does not change the state.
  Along a ramp it is an AR(1) sequence with pulse-to-pulse correlation `rho_level`
  (eta_{k+1} = rho eta_k + sqrt(1 - rho^2) sigma_level N(0, 1)).

Device-to-device variation: `sample_devices` draws per-device g_min, g_max and step scales
from the card's statistics (normal, with the standard deviations on the card).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.errors import CircuitnnError

MODEL_NAME = "pulse-update"

#: parameters of the mean law on a card: name -> (unit or None for the conductance unit, text)
MEAN_PARAMETERS: dict[str, tuple[str | None, str]] = {
    "g_min": (None, "lower bound of the conductance window"),
    "g_max": (None, "upper bound of the conductance window"),
    "pmax_p": ("pulses", "potentiating (SET) pulses to traverse the window"),
    "nu_p": ("1/pulse", "potentiation nonlinearity (NeuroSim 1/A); >0 saturating, <0 accelerating"),
    "pmax_d": ("pulses", "depressing (RESET) pulses to traverse the window"),
    "nu_d": ("1/pulse", "depression nonlinearity (NeuroSim 1/A); >0 saturating, <0 accelerating"),
}
#: cycle-to-cycle noise keys in card.variation["cycle_to_cycle"]
C2C_KEYS = ("sigma_add_p", "sigma_mult_p", "sigma_add_d", "sigma_mult_d", "sigma_level",
            "rho_level")
#: device-to-device keys in card.variation["device_to_device"]
D2D_KEYS = ("g_min_std", "g_max_std", "scale_p_std", "scale_d_std")

_EXP_LIMIT = 700.0  # keeps exp() finite for any pmax * nu


def _coefficients(nu: float, pmax: float) -> tuple[float, float]:
    """(c, r) of the single-pulse law for one direction; stable near nu = 0."""
    if abs(nu) < 1e-12:
        return 1.0 / pmax, 0.0
    r = -math.expm1(-nu)
    c = math.expm1(-nu) / math.expm1(max(-_EXP_LIMIT, min(_EXP_LIMIT, -pmax * nu)))
    return c, r


def _mean_step(g: np.ndarray, up: np.ndarray, g_min: Any, g_max: Any, coef_p: tuple[float, float],
               coef_d: tuple[float, float], scale_p: Any, scale_d: Any) -> np.ndarray:
    """Signed mean conductance change of one pulse (up: potentiating) at state g."""
    span = g_max - g_min
    c_p, r_p = coef_p
    c_d, r_d = coef_d
    d_up = scale_p * (span * c_p - r_p * (g - g_min))
    d_dn = -scale_d * (span * c_d - r_d * (g_max - g))
    return np.where(up, d_up, d_dn)


def _direction(direction: Any) -> int:
    if isinstance(direction, str):
        key = direction.lower()
        if key in ("up", "set", "p", "potentiate", "+"):
            return 1
        if key in ("down", "reset", "d", "depress", "-"):
            return -1
    elif direction in (1, -1) and not isinstance(direction, bool):
        return int(direction)
    raise CircuitnnError(f"pulse direction must be +1/'up' or -1/'down', got {direction!r}")


def _finite(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CircuitnnError(f"pulse model: {name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise CircuitnnError(f"pulse model: {name} must be finite, got {value!r}")
    return x


@dataclass
class PulseModel:
    """Pulse-update model of one device type; every array element is its own device."""

    g_min: float
    g_max: float
    pmax_p: float
    nu_p: float
    pmax_d: float
    nu_d: float
    sigma_add_p: float = 0.0
    sigma_mult_p: float = 0.0
    sigma_add_d: float = 0.0
    sigma_mult_d: float = 0.0
    sigma_level: float = 0.0
    rho_level: float = 0.0
    d2d: dict[str, float] = field(default_factory=dict)
    unit: str = "S"

    def __post_init__(self) -> None:
        for name in (*MEAN_PARAMETERS, *C2C_KEYS):
            setattr(self, name, _finite(name, getattr(self, name)))
        if not self.g_max > self.g_min:
            raise CircuitnnError(f"pulse model: g_max ({self.g_max}) must exceed g_min "
                                 f"({self.g_min})")
        for name in ("pmax_p", "pmax_d"):
            if getattr(self, name) < 1:
                raise CircuitnnError(f"pulse model: {name} must be >= 1 pulse")
        for name in C2C_KEYS:
            if getattr(self, name) < 0:
                raise CircuitnnError(f"pulse model: {name} must be >= 0")
        if self.rho_level >= 1:
            raise CircuitnnError("pulse model: rho_level must be in [0, 1)")
        clean = {}
        for key in D2D_KEYS:
            v = _finite(f"device_to_device.{key}", self.d2d.get(key, 0.0))
            if v < 0:
                raise CircuitnnError(f"pulse model: device_to_device.{key} must be >= 0")
            clean[key] = v
        self.d2d = clean
        self._coef_p = _coefficients(self.nu_p, self.pmax_p)
        self._coef_d = _coefficients(self.nu_d, self.pmax_d)

    # ----------------------------------------------------------------- cards
    @classmethod
    def from_card(cls, card: ModelCard) -> PulseModel:
        """Build the model from a `pulse-update` card (parameters + variation statistics)."""
        if card.model != MODEL_NAME:
            raise CircuitnnError(f"card model is {card.model!r}, expected {MODEL_NAME!r}")
        values = card.values()
        missing = [k for k in MEAN_PARAMETERS if k not in values]
        if missing:
            raise CircuitnnError(f"pulse-update card lacks parameters {missing}")
        c2c = card.variation.get("cycle_to_cycle", {})
        d2d = card.variation.get("device_to_device", {})
        if not isinstance(c2c, Mapping) or not isinstance(d2d, Mapping):
            raise CircuitnnError("pulse-update card: variation entries must be objects")
        kwargs = {k: values[k] for k in MEAN_PARAMETERS}
        kwargs.update({k: c2c.get(k, 0.0) for k in C2C_KEYS})
        return cls(**kwargs, d2d={k: d2d.get(k, 0.0) for k in D2D_KEYS},
                   unit=card.parameters["g_min"].unit or "S")

    def card_parameters(self, stderr: Mapping[str, float | None] | None = None
                        ) -> dict[str, Parameter]:
        """The mean-law parameters as card `Parameter`s (units filled in)."""
        stderr = stderr or {}
        out = {}
        for name, (unit, text) in MEAN_PARAMETERS.items():
            out[name] = Parameter(float(getattr(self, name)), unit or self.unit,
                                  stderr.get(name), text)
        return out

    def variation(self) -> dict[str, dict[str, float]]:
        """Noise and device-to-device statistics in the card's `variation` layout."""
        return {"cycle_to_cycle": {k: float(getattr(self, k)) for k in C2C_KEYS},
                "device_to_device": dict(self.d2d)}

    # ------------------------------------------------------------- physics
    @property
    def g_range(self) -> tuple[float, float]:
        """Nominal conductance window (g_min, g_max)."""
        return self.g_min, self.g_max

    def _devices(self, shape: tuple[int, ...], devices: Mapping[str, Any] | None
                 ) -> tuple[Any, Any, Any, Any]:
        if devices is None:
            return self.g_min, self.g_max, 1.0, 1.0
        try:
            arrays = [np.broadcast_to(np.asarray(devices[k], float), shape)
                      for k in ("g_min", "g_max", "scale_p", "scale_d")]
        except KeyError as exc:
            raise CircuitnnError(f"devices lacks {exc.args[0]!r} (use sample_devices)") from None
        except ValueError:
            raise CircuitnnError(f"device arrays do not broadcast to the state shape {shape}"
                                 ) from None
        return tuple(arrays)  # type: ignore[return-value]

    def mean_step(self, g: Any, direction: Any, devices: Mapping[str, Any] | None = None
                  ) -> np.ndarray:
        """Signed mean change of G for one pulse in `direction` (+1 up / -1 down) at state g."""
        g = np.asarray(g, float)
        sign = np.asarray(direction)
        up = sign > 0
        shape = np.broadcast_shapes(g.shape, up.shape)
        g_min, g_max, s_p, s_d = self._devices(shape, devices)
        return _mean_step(g, up, g_min, g_max, self._coef_p, self._coef_d, s_p, s_d)

    def step_std(self, g: Any, direction: Any, devices: Mapping[str, Any] | None = None
                 ) -> np.ndarray:
        """Standard deviation of one pulse's update (cycle-to-cycle noise) at state g."""
        mean = self.mean_step(g, direction, devices)
        up = np.asarray(direction) > 0
        add = np.where(up, self.sigma_add_p, self.sigma_add_d)
        mult = np.where(up, self.sigma_mult_p, self.sigma_mult_d)
        return np.sqrt(add**2 + (mult * mean) ** 2)

    def step(self, g: Any, pulses: Any, rng: np.random.Generator | None = None,
             devices: Mapping[str, Any] | None = None) -> np.ndarray:
        """Apply |pulses| identical pulses (sign = direction) to each device; returns new G.

        `g` and `pulses` broadcast against each other; each element is one device. With `rng`
        None the update is the noise-free mean law; otherwise every pulse adds update noise.
        """
        g = np.asarray(g, float)
        p = np.asarray(pulses)
        if p.dtype.kind not in "iub":
            if p.dtype.kind != "f" or not np.all(np.isfinite(p)) or np.any(p != np.round(p)):
                raise CircuitnnError("pulses must be whole numbers (signed pulse counts)")
            p = p.astype(np.int64)
        if not np.all(np.isfinite(g)):
            raise CircuitnnError("conductance state contains NaN or inf")
        shape = np.broadcast_shapes(g.shape, p.shape)
        g = np.array(np.broadcast_to(g, shape), dtype=float)
        p = np.broadcast_to(p.astype(np.int64), shape)
        g_min, g_max, _, _ = self._devices(shape, devices)
        g = np.clip(g, g_min, g_max)
        count = np.abs(p)
        up = p > 0
        n_max = int(count.max()) if count.size else 0
        for k in range(n_max):
            active = count > k
            dg = self.mean_step(g, np.where(up, 1, -1), devices)
            if rng is not None:
                dg = dg + self.step_std(g, np.where(up, 1, -1), devices) * rng.standard_normal(
                    shape)
            g = np.where(active, np.clip(g + dg, g_min, g_max), g)
        return g

    def read(self, g: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        """Conductance as read after a pulse: G plus level noise (G itself if rng is None)."""
        g = np.asarray(g, float)
        if rng is None or self.sigma_level == 0:
            return g.copy()
        return g + self.sigma_level * rng.standard_normal(g.shape)

    def ramp(self, g0: Any, n: int, direction: Any, rng: np.random.Generator | None = None,
             devices: Mapping[str, Any] | None = None, read_noise: bool = False) -> np.ndarray:
        """States along a ramp of `n` identical pulses: shape (n + 1, *shape(g0)), row 0 = g0.

        With `rng` None: the noise-free mean-law trajectory. With `rng` and `read_noise`, rows
        are what a read after each pulse would show (state plus AR(1) level noise).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise CircuitnnError(f"ramp length must be a whole number >= 0, got {n!r}")
        sign = _direction(direction)
        g = np.asarray(g0, float)
        out = np.empty((n + 1, *g.shape))
        g = self.step(g, 0, None, devices)
        out[0] = g
        for k in range(n):
            g = self.step(g, sign, rng, devices)
            out[k + 1] = g
        if rng is not None and read_noise and self.sigma_level > 0:
            rho = self.rho_level
            eta = self.sigma_level * rng.standard_normal(out.shape)
            for k in range(1, n + 1):
                eta[k] = rho * eta[k - 1] + math.sqrt(1 - rho * rho) * eta[k]
            out = out + eta
        return out

    def sample_devices(self, shape: int | tuple[int, ...], rng: np.random.Generator
                       ) -> dict[str, np.ndarray]:
        """Per-device g_min, g_max, scale_p, scale_d arrays drawn from the card's statistics."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        g_min = self.g_min + self.d2d["g_min_std"] * rng.standard_normal(shape)
        g_max = self.g_max + self.d2d["g_max_std"] * rng.standard_normal(shape)
        floor = 0.05 * (self.g_max - self.g_min)  # keep every window open
        g_max = np.maximum(g_max, g_min + floor)
        scale_p = np.maximum(1.0 + self.d2d["scale_p_std"] * rng.standard_normal(shape), 0.05)
        scale_d = np.maximum(1.0 + self.d2d["scale_d_std"] * rng.standard_normal(shape), 0.05)
        return {"g_min": g_min, "g_max": g_max, "scale_p": scale_p, "scale_d": scale_d}

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

Second mean law (`law = 1`, "spline"), still state-only, for ramps whose shape two parameters
cannot follow. With the normalised state u = (G - g_min) / span in [0, 1],

    dG+ = s_p * span * f_p(u),   dG- = -s_d * span * f_d(u),
    log f(u) = PCHIP interpolant of log fp_i (resp. log fd_i) at K uniform knots u_i = i/(K-1),

(monotone cubic Hermite, Fritsch-Carlson slopes as in scipy's PchipInterpolator). f is a
smooth (C1) positive function, so every ramp is monotone in the pulse direction, the knot values
are the mean step at u_i in fractions of the window per pulse, and (like the exponential law,
which is span * (c - r u) written the same way) the law scales with each device's window. Each
direction has its own K (>= 2). The exponential law's pmax/nu stay on a spline card for
reference but are not used.

Noise, measured from data (see `circuitnn.fitting.pulse`):
- cycle-to-cycle update noise, accumulating in the state: each pulse's step gets
  sqrt(sigma_add^2 + (sigma_mult * dG)^2) * N(0, 1) (additive and multiplicative parts, per
  direction);
- level noise `sigma_level`: a non-accumulating fluctuation of each conductance read after a
  pulse (read noise and fast relaxation), applied by `read`; it does not change the state.
  Along a ramp it is an AR(1) sequence with pulse-to-pulse correlation `rho_level`
  (eta_{k+1} = rho eta_k + sqrt(1 - rho^2) sigma_level N(0, 1)).

Device-to-device variation: `sample_devices` draws per-device g_min and g_max (normal, with the
standard deviations `g_min_std`, `g_max_std` on the card, in the card's unit) and step scales
(log-normal: ln(scale) is normal with mean 0 and standard deviation `scale_p_std`,
`scale_d_std`; a step scale is positive and devices differ in pace by factors: Knowm M1-M3's
fitted cards SET at paces 1 : 42 : 1.9 under one pulse. For spreads of a few percent, such as a
pulse card's ramp-to-ramp spread, this is the relative standard deviation of the scale).
"""

from __future__ import annotations

import dataclasses
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
#: mean laws: card value of the `law` parameter -> name
LAWS = {0: "exponential", 1: "spline"}

_EXP_LIMIT = 700.0  # keeps exp() finite for any pmax * nu


def _coefficients(nu: float, pmax: float) -> tuple[float, float]:
    """(c, r) of the single-pulse law for one direction; stable near nu = 0."""
    if abs(nu) < 1e-12:
        return 1.0 / pmax, 0.0
    r = -math.expm1(-nu)
    c = math.expm1(-nu) / math.expm1(max(-_EXP_LIMIT, min(_EXP_LIMIT, -pmax * nu)))
    return c, r


def _spline_coefficients(name: str, values: tuple[float, ...]) -> np.ndarray:
    """PCHIP coefficients (4, K-1) of log f over uniform knots on [0, 1]."""
    from scipy.interpolate import PchipInterpolator

    if len(values) < 2:
        raise CircuitnnError(f"pulse model: spline law needs >= 2 knot values in {name}, "
                             f"got {len(values)}")
    logs = []
    for i, v in enumerate(values):
        x = _finite(f"{name}[{i}]", v)
        if not x > 0:
            raise CircuitnnError(f"pulse model: spline knot {name}[{i}] must be > 0, got {x!r}")
        logs.append(math.log(x))
    return PchipInterpolator(np.linspace(0.0, 1.0, len(logs)), np.array(logs)).c


def _spline_rate(u: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """f(u) = exp(PCHIP(u)) for the spline law (u clipped to [0, 1])."""
    n = coef.shape[1]
    x = np.clip(u, 0.0, 1.0) * n
    i = np.minimum(x.astype(np.int64), n - 1)
    t = (x - i) / n
    c = coef[:, i]
    return np.exp(((c[0] * t + c[1]) * t + c[2]) * t + c[3])


def _directed_step(g: np.ndarray, sign: int, g_min: Any, g_max: Any, law: int, coef: Any,
                   scale: Any) -> np.ndarray:
    """Signed mean conductance change of one pulse in direction `sign` at state g."""
    span = g_max - g_min
    if law == 0:
        c, r = coef
        if sign > 0:
            return scale * (span * c - r * (g - g_min))
        return -scale * (span * c - r * (g_max - g))
    return sign * scale * span * _spline_rate((g - g_min) / span, coef)


def _mean_step(g: np.ndarray, up: np.ndarray, g_min: Any, g_max: Any, law: int, coef_p: Any,
               coef_d: Any, scale_p: Any, scale_d: Any) -> np.ndarray:
    """Signed mean conductance change of one pulse (up: potentiating) at state g."""
    if np.all(up):
        return _directed_step(g, 1, g_min, g_max, law, coef_p, scale_p) + 0.0 * up
    if not np.any(up):
        return _directed_step(g, -1, g_min, g_max, law, coef_d, scale_d) + 0.0 * up
    return np.where(up, _directed_step(g, 1, g_min, g_max, law, coef_p, scale_p),
                    _directed_step(g, -1, g_min, g_max, law, coef_d, scale_d))


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
    law: int = 0
    fp: tuple[float, ...] = ()
    fd: tuple[float, ...] = ()

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
        if isinstance(self.law, bool) or self.law not in LAWS:
            raise CircuitnnError(f"pulse model: law must be one of {sorted(LAWS)} "
                                 f"({', '.join(LAWS.values())}), got {self.law!r}")
        self.law = int(self.law)
        try:
            self.fp, self.fd = tuple(self.fp), tuple(self.fd)
        except TypeError:
            raise CircuitnnError("pulse model: fp and fd must be sequences of knot values"
                                 ) from None
        if self.law == 0:
            self._coef_p: Any = _coefficients(self.nu_p, self.pmax_p)
            self._coef_d: Any = _coefficients(self.nu_d, self.pmax_d)
        else:
            self._coef_p = _spline_coefficients("fp", self.fp)
            self._coef_d = _spline_coefficients("fd", self.fd)
            self.fp = tuple(float(v) for v in self.fp)
            self.fd = tuple(float(v) for v in self.fd)

    # ----------------------------------------------------------------- cards
    @classmethod
    def from_card(cls, card: ModelCard) -> PulseModel:
        """Build the model from a `pulse-update` card (parameters + variation statistics).

        Cards without a `law` parameter use the exponential law (law 0); law 1 (spline) reads
        the knot values fp_0, fp_1, ... and fd_0, fd_1, ...
        """
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
        kwargs: dict[str, Any] = {k: values[k] for k in MEAN_PARAMETERS}
        kwargs.update({k: c2c.get(k, 0.0) for k in C2C_KEYS})
        law = values.get("law", 0.0)
        if law not in LAWS:
            raise CircuitnnError(f"pulse-update card: law must be one of {sorted(LAWS)}, "
                                 f"got {law!r}")
        kwargs["law"] = int(law)
        if law == 1:
            for tag in ("fp", "fd"):
                index = {k: k[len(tag) + 1:] for k in values if k.startswith(f"{tag}_")}
                if not all(v.isdigit() for v in index.values()) or \
                        sorted(int(v) for v in index.values()) != list(range(len(index))):
                    raise CircuitnnError(f"pulse-update card: knot parameters {sorted(index)} "
                                         f"must be {tag}_0, {tag}_1, ... without gaps")
                knots = [values[f"{tag}_{i}"] for i in range(len(index))]
                kwargs[tag] = tuple(knots)
        return cls(**kwargs, d2d={k: d2d.get(k, 0.0) for k in D2D_KEYS},
                   unit=card.parameters["g_min"].unit or "S")

    def card_parameters(self, stderr: Mapping[str, float | None] | None = None
                        ) -> dict[str, Parameter]:
        """The mean-law parameters as card `Parameter`s (units filled in)."""
        stderr = stderr or {}
        out = {}
        for name, (unit, text) in MEAN_PARAMETERS.items():
            if self.law != 0 and name.startswith(("pmax", "nu")):
                text += " (exponential law; not used: law = 1)"
            out[name] = Parameter(float(getattr(self, name)), unit or self.unit,
                                  stderr.get(name), text)
        out["law"] = Parameter(float(self.law), "", None,
                               "mean step law: 0 = exponential (NeuroSim), 1 = spline "
                               "(PCHIP of log step over uniform knots of the normalised state)")
        if self.law == 1:
            for tag, word in (("fp", "SET"), ("fd", "RESET")):
                knots = getattr(self, tag)
                for i, v in enumerate(knots):
                    name = f"{tag}_{i}"
                    out[name] = Parameter(v, "1/pulse", stderr.get(name),
                                          f"mean {word} step / window at u = {i}/{len(knots) - 1}")
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
        return _mean_step(g, up, g_min, g_max, self.law, self._coef_p, self._coef_d, s_p, s_d)

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
        if rng is None:  # noise-free: the same update as `step`, without its per-call checks
            g_min, g_max, s_p, s_d = self._devices(g.shape, devices)
            coef, scale = (self._coef_p, s_p) if sign > 0 else (self._coef_d, s_d)
            for k in range(n):
                dg = _directed_step(g, sign, g_min, g_max, self.law, coef, scale)
                g = np.minimum(np.maximum(g + dg, g_min), g_max)
                out[k + 1] = g
            return out
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
        scale_p = np.exp(self.d2d["scale_p_std"] * rng.standard_normal(shape))
        scale_d = np.exp(self.d2d["scale_d_std"] * rng.standard_normal(shape))
        return {"g_min": g_min, "g_max": g_max, "scale_p": scale_p, "scale_d": scale_d}


def scale_model(model: PulseModel, g_min: float, g_max: float,
                variation_scale: float = 1.0) -> PulseModel:
    """The pulse model mapped linearly by relative position onto the window [g_min, g_max] (S).

    A state at fraction u of the card's window becomes g_min + u (g_max - g_min). Pulse counts
    (pmax), nonlinearities (nu, or the spline knots, which are per window) are unchanged; every
    conductance-valued noise term (additive update noise, level noise, device-to-device
    g_min/g_max spread) is multiplied by the span ratio k = (g_max - g_min) / (card span);
    relative step-scale spreads are unchanged. All device-to-device spreads are also
    multiplied by `variation_scale`.
    """
    if not 0 <= g_min < g_max:
        raise CircuitnnError(f"conductance window needs 0 <= g_min < g_max, got {g_min}, {g_max}")
    k = (g_max - g_min) / (model.g_max - model.g_min)
    d2d = dict(model.d2d)
    d2d["g_min_std"] *= k * variation_scale
    d2d["g_max_std"] *= k * variation_scale
    d2d["scale_p_std"] *= variation_scale
    d2d["scale_d_std"] *= variation_scale
    return dataclasses.replace(
        model, g_min=g_min, g_max=g_max, sigma_add_p=model.sigma_add_p * k,
        sigma_add_d=model.sigma_add_d * k, sigma_level=model.sigma_level * k, d2d=d2d, unit="S")


TRAVERSE_TOLERANCE = 0.01  # a ramp has traversed the window within this fraction of its span
MAX_RAMP_PULSES = 1_000_000


def _traverse(model: PulseModel, sign: int) -> tuple[int | None, float | None]:
    """(pulses from one bound to within TRAVERSE_TOLERANCE of the other, or None if not within
    MAX_RAMP_PULSES; largest deviation of the normalised mean ramp from a straight line)."""
    span = model.g_max - model.g_min
    start, far = (model.g_min, model.g_max) if sign > 0 else (model.g_max, model.g_min)
    path, chunk = [np.array([start])], 256
    done = 0
    while done < MAX_RAMP_PULSES:
        r = model.ramp(path[-1][-1], chunk, sign)[1:]
        path.append(r)
        done += chunk
        if abs(far - r[-1]) <= TRAVERSE_TOLERANCE * span:
            break
        chunk *= 2
    g = np.concatenate(path)
    reached = np.nonzero(np.abs(far - g) <= TRAVERSE_TOLERANCE * span)[0]
    if reached.size == 0:
        return None, None
    n = int(reached[0])
    u = np.abs(g[:n + 1] - start) / span
    return n, float(np.max(np.abs(u - np.arange(n + 1) / max(n, 1))))


def pulse_response(model: PulseModel) -> dict[str, Any]:
    """What a pulse law does across its window (from a card, or later derived from an I-V card).

    Per direction: pulses to traverse the window (noise-free mean law, from one bound to within
    TRAVERSE_TOLERANCE of the span of the other), nonlinearity (largest deviation of the
    normalised mean ramp from a straight line between its ends, in fractions of the window;
    0 = linear) and step noise (standard deviation of one pulse's update over its mean, at the
    middle of the window). Also the level noise and device-to-device spreads in fractions of the
    window (step scales: relative).
    """
    span = model.g_max - model.g_min
    mid = 0.5 * (model.g_min + model.g_max)
    out: dict[str, Any] = {"law": LAWS[model.law], "window": [model.g_min, model.g_max],
                           "unit": model.unit}
    for sign, name in ((1, "set"), (-1, "reset")):
        n, nonlinearity = _traverse(model, sign)
        mean = float(model.mean_step(mid, sign))
        out[name] = {"pulses": n, "nonlinearity": nonlinearity,
                     "step_noise": float(model.step_std(mid, sign)) / abs(mean) if mean else None}
    out["level_noise"] = model.sigma_level / span
    out["device_to_device"] = {"g_min": model.d2d["g_min_std"] / span,
                               "g_max": model.d2d["g_max_std"] / span,
                               "scale_p": model.d2d["scale_p_std"],
                               "scale_d": model.d2d["scale_d_std"]}
    return out

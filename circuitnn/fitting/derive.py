"""A pulse-update law derived from an I-V compact card: programming without measured pulse data.

The cell: the card's device in series with the access transistor of `circuitnn.tile.spec`
(SPICE level 1 with `Transistor`'s parameters, at a fixed gate voltage), driven as
`circuitnn.tile.program` drives a 1T1R cell: a "set" pulse puts +V on the device's positive
terminal with the transistor as a common-source switch (its gate voltage limits the current),
a "reset" pulse puts -V on it with the transistor as a source follower (the usual high RESET
gate). Pulses are trapezoids: `edge` of rest, `edge` rise, `width` at full amplitude, `edge`
fall, `edge` of rest (program.py's waveform: 5 ns edges, the reference's 50 ns width).

Which pulse raises the conductance (SET, potentiating) is read from the card: the polarity
whose pulses move the state towards higher read conductance (a card with polarity -1 SETs with
negative pulses); RESET is the other.

numpy: `circuitnn.devices.transient.simulate` with the transistor as a series element
(`access_transistor`); in a reset pulse the level-1 current depends on the gate-source voltage
v_gate - V, taken at the pulse's full amplitude (exact on the plateau; on the 5 ns edges the
device voltage is below threshold, and the ngspice check measures what is left). After each
pulse the read conductance is I(v_read) / v_read of the card at its state. SET ramps start at
the window's low conductance, RESET ramps at its high one, and each stops when it has crossed
the whole window, when its state saturates (a step below SATURATED of the window, or steps
shrinking towards a level inside it, SATURATION_LEVEL), when it is too slow (its first pulse
moves less than SATURATED, or its pace after SLOW_AFTER pulses would cover less than
SLOW_FRACTION of the window within the budget) or after `pulses` pulses.

Amplitude rule (when not given): the smallest of AMPLITUDE_FACTORS x the card's switching
threshold of that polarity (`circuitnn.devices.operating`), capped at V_PULSE_MAX, whose ramp
crosses the window within `pulses` pulses and in at least MIN_PULSES (a finer law; the
candidates are simulated together); when that ramp takes fewer than TARGET_PULSES pulses, the
amplitude is bisected between it and the rung below (the threshold itself below the lowest
rung) REFINE_STEPS times for the slowest ramp that still crosses (the finest law the pulse
budget allows: steep devices such as HfOx otherwise jump from "too slow" to ten pulses across
the window, and fast ones cross it in fewer than MIN_PULSES pulses at the lowest rung). The
reference's pulse-mode amplitudes (2.0 V / -1.8 V for its HfOx devices, about 1.9 and 1.7 x the
built-in HfOx card's 1.05 V threshold) lie inside this ladder. A given amplitude must lie above
the threshold.

ngspice check (optional): the first CHECK_PULSES pulses of each chosen ramp on a 1x1 tile with
ideal wires, by `circuitnn.tile.program.program_pulse`, chained through its states; the
numpy trajectory over the same pulses is sampled on ngspice's time grid; the error is the
largest |state difference| as a fraction of the state span of the window (the state range the
law is about). Refused above MAX_CHECK_ERROR = 1%.

Fit: `circuitnn.fitting.pulse.fit_pulse` on the two ramps (one per direction, in siemens), as
a measured data set is fitted. The simulated ramps are noise-free, so the law's
cycle-to-cycle noise does not come from the fit: it is a pulse card's of the same device
(`DeriveSettings.pulse_noise`: its update and level noise relative to its window,
`pulse_card_noise`), else the I-V card's `variation.cycle_to_cycle.sigma_rel` (standard
deviation of each pulse's update as a fraction of the window), else `DeriveSettings.noise`,
else 0; the card records which.

Device-to-device: the devices the I-V card was fitted to (its device-to-device record), each
simulated with the chosen pulses in its cell, give the law's spread (`_measured_spread`).

Cache: a `circuitnn.cache.entry` in the folder "pulse", one pulse card per content key of the
I-V card's file, v_read, window, the settings and DERIVE_VERSION; the card carries the derivation
report (`fit["derivation"]`), so a second call reads it and simulates nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.cache import entry
from circuitnn.devices import load_device
from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.operating import PULSE_MODEL, V_MAX, switching_thresholds
from circuitnn.devices.population import members
from circuitnn.devices.profile import DeviceProfile
from circuitnn.devices.pulse import PulseModel
from circuitnn.devices.series import ExprElement
from circuitnn.errors import CircuitnnError
from circuitnn.io import file_sha256
from circuitnn.reference import REF
from circuitnn.tile.nodal import mos1_expression
from circuitnn.tile.program import DEFAULTS as PROGRAM_DEFAULTS
from circuitnn.tile.spec import Transistor

DERIVE_VERSION = 4  # bump when the derivation changes what a cached card would hold
#: x the switching threshold of the polarity (the default amplitude rule)
AMPLITUDE_FACTORS = (1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
V_PULSE_MAX = V_MAX  # V: no pulse amplitude above the tile's largest voltage
MIN_PULSES = 4  # a ramp crossing the window in fewer pulses gives too coarse a law
MAX_PULSES = 10000  # most pulses per ramp a user may ask for
TARGET_PULSES = 30  # refine the amplitude between rungs until a ramp takes at least this many
REFINE_STEPS = 8  # bisections of the amplitude between two rungs of the ladder
SATURATED = 1e-4  # a pulse moving the read conductance by less than this x window: saturated
#: a ramp whose steps shrink by a ratio q < 1 stops as saturated once covered + step q / (1 - q)
#: (where a geometric series of steps would end) stays below this fraction of the window
SATURATION_LEVEL = 0.8
SLOW_AFTER = 5  # pulses after which a ramp whose pace would cover less than SLOW_FRACTION of
SLOW_FRACTION = 0.25  # the window within the pulse budget stops ("too slow")
CHECK_PULSES = 3  # pulses per direction in the ngspice check
MAX_CHECK_ERROR = 0.01  # ngspice check: largest state error / window state span
#: ngspice time steps per edge in the check (dt = 0.1 ns for 5 ns edges: at program.py's 2 ns
#: the gear integration itself is off by ~1% of the window per pulse on the built-in card)
CHECK_STEPS = 50
COMPARE_SAMPLES = 200  # points per pulse at which the two state trajectories are compared
EDGE = 5e-9  # s, rise and fall time (circuitnn.tile.program's default)
MAX_WIDTH = 1e-3  # s, the longest pulse circuitnn.tile.program accepts
#: width rule: the reference's 50 ns, then decades longer up to MAX_WIDTH (slow devices)
WIDTHS = tuple(REF.hardware.program_pulse_s * 10.0 ** k for k in range(5)) + (MAX_WIDTH,)
CACHE_SUB = "pulse"
SPLINE_KNOTS = (4, 6, 8)  # knot counts tried by fit_pulse (those the shorter ramp allows)

def access_transistor(transistor: Transistor, v_gs: float | np.ndarray) -> ExprElement:
    """The access NMOS at a fixed gate-source voltage as a series element (u = V_DS): the
    level-1 current of `circuitnn.tile.nodal.mos1_expression`."""
    if not isinstance(transistor, Transistor):
        raise CircuitnnError("transistor must be a circuitnn.tile.spec.Transistor")
    return ExprElement(mos1_expression("u"), {"vgs": v_gs, "beta": transistor.beta,
                                              "vto": transistor.vto, "lam": transistor.lam},
                       f"access transistor {transistor}")


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise CircuitnnError(f"{what} must be a number, got {x!r}")
    x = float(x)
    if not math.isfinite(x):
        raise CircuitnnError(f"{what} must be finite, got {x!r}")
    return x


@dataclass(frozen=True)
class DeriveSettings:
    """How pulses are applied to derive the law (module doc for the rules)."""

    amplitude_set: float | None = None  # V, |pulse| that raises G; None: the amplitude rule
    amplitude_reset: float | None = None  # V, |pulse| that lowers G; None: the amplitude rule
    width: float | None = None  # s, plateau of each pulse; None: the width rule (WIDTHS)
    gate_set: float = PROGRAM_DEFAULTS["set"]["v_gate"]  # V, word line during SET
    gate_reset: float = PROGRAM_DEFAULTS["reset"]["v_gate"]  # V, word line during RESET
    pulses: int = 100  # most pulses per ramp
    noise: float | None = None  # cycle-to-cycle sigma / window per pulse, if the card has none
    #: cycle-to-cycle statistics of a pulse card of the same device, relative to its window
    #: (`pulse_card_noise`); they take precedence over `noise` and the card's own
    pulse_noise: dict[str, float] | None = None

    def __post_init__(self) -> None:
        for name in ("amplitude_set", "amplitude_reset"):
            val = getattr(self, name)
            if val is not None:
                val = _number(val, name)
                if not 0 < val <= V_PULSE_MAX:
                    raise CircuitnnError(f"{name} must be in (0, {V_PULSE_MAX:g}] V, got {val:g}")
                object.__setattr__(self, name, val)
        if self.width is not None:
            width = _number(self.width, "width")
            if not 0 < width <= MAX_WIDTH:
                raise CircuitnnError(f"width must be in (0, {MAX_WIDTH:g}] s, got {width:g}")
            object.__setattr__(self, "width", width)
        for name in ("gate_set", "gate_reset"):
            val = _number(getattr(self, name), name)
            if not 0 < val <= V_MAX:
                raise CircuitnnError(f"{name} must be in (0, {V_MAX:g}] V, got {val:g}")
            object.__setattr__(self, name, val)
        if isinstance(self.pulses, bool) or not isinstance(self.pulses, (int, np.integer)) or \
                not MIN_PULSES <= self.pulses <= MAX_PULSES:
            raise CircuitnnError(f"pulses must be a whole number in [{MIN_PULSES}, "
                                 f"{MAX_PULSES}], got {self.pulses!r}")
        object.__setattr__(self, "pulses", int(self.pulses))
        if self.noise is not None:
            noise = _number(self.noise, "noise")
            if not 0 <= noise < 1:
                raise CircuitnnError(f"noise must be in [0, 1) (sigma per pulse / window), "
                                     f"got {noise:g}")
            object.__setattr__(self, "noise", noise)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- the cell ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pulse:
    """One direction's pulse: program.py kind ('set': +V on the device, 'reset': -V), |V| and
    gate voltage."""

    kind: str
    amplitude: float
    gate: float

    @property
    def sign(self) -> float:
        return 1.0 if self.kind == "set" else -1.0

    def v_gs(self) -> float:
        """Gate-source voltage of the transistor on the plateau (module doc)."""
        return self.gate if self.kind == "set" else self.gate - self.amplitude


def _waveform(width: float, samples: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(t, shape) of one unit pulse; `samples` > 0 adds that many evenly spaced points."""
    t = np.array([0.0, EDGE, 2 * EDGE, 2 * EDGE + width, 3 * EDGE + width, 4 * EDGE + width])
    shape = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    if samples:
        fine = np.union1d(t, np.linspace(0.0, t[-1], samples))
        return fine, np.interp(fine, t, shape)
    return t, shape


def _pulse_states(dev: Device, s: np.ndarray, amp: np.ndarray, v_gs: np.ndarray,
                  width: float, transistor: Transistor) -> tuple[np.ndarray, np.ndarray]:
    """State after one pulse of signed amplitude `amp` for each element of s, and the device
    voltage at the end of its plateau (vectorised)."""
    t, shape = _waveform(width)
    tr = dev.simulate(t, amp[..., None] * shape, s0=s,
                      series=access_transistor(transistor, v_gs), strict=False)
    return tr.state[..., -1], tr.v_device[..., 3]


def _ramps(dev: Device, v_read: float, window: tuple[float, float], up: np.ndarray,
           pulses: list[_Pulse], width: float, n_max: int, transistor: Transistor,
           kind_thr: dict[str, float], progress: Callable[[int], None] | None = None
           ) -> dict[str, Any]:
    """Ramps of every candidate pulse at once: each starts at the window edge opposite to its
    direction (`up`: True raises G) and stops as in the module doc. Returns the read
    conductances (n_max + 1, candidates), NaN after a ramp's end, why each ramp ended and the
    device voltage at the end of its last pulse's plateau. A ramp that stops with the device
    below its switching threshold (`kind_thr`) ended "current-limited": the access transistor
    takes the rest of the pulse."""
    g_lo, g_hi = window
    span = g_hi - g_lo
    s_start = dev.state_for_conductance(np.where(up, g_lo, g_hi), v_read)
    amp = np.array([p.sign * p.amplitude for p in pulses])
    v_gs = np.array([p.v_gs() for p in pulses])
    n = len(pulses)
    g = np.full((n_max + 1, n), np.nan)
    g[0] = dev.conductance(s_start, v_read)
    s = s_start.copy()
    end = np.array(["pulse budget"] * n, dtype=object)
    thr = np.array([kind_thr[p.kind] for p in pulses])
    v_dev = np.zeros(n)
    active = np.ones(n, dtype=bool)
    for k in range(1, n_max + 1):
        idx = np.flatnonzero(active)
        s_new = s.copy()
        s_new[idx], v_dev[idx] = _pulse_states(dev, s[idx], amp[idx], v_gs[idx], width,
                                               transistor)
        g_new = dev.conductance(s_new, v_read)
        failed = active & ~np.isfinite(g_new)
        end[failed] = "integration failed"
        active &= ~failed
        g[k] = np.where(active, g_new, np.nan)
        s = np.where(active, s_new, s)
        step = np.where(up, 1.0, -1.0) * (g_new - g[k - 1])
        crossed = active & np.where(up, g_new >= g_hi, g_new <= g_lo)
        stuck = active & ~crossed & (step < SATURATED * span)
        if k >= 3:  # steps shrinking geometrically towards a level inside the window
            sign = np.where(up, 1.0, -1.0)
            before = sign * (g[k - 1] - g[k - 2])
            q = np.where(before > 0, step / np.where(before > 0, before, 1.0), 1.0)
            covered = sign * (g[k] - g[0]) / span
            final = covered + np.where(q < 1, step * q / np.maximum(1 - q, 1e-12), np.inf) / span
            stuck |= active & ~crossed & (q < 1) & (final < SATURATION_LEVEL)
        end[crossed] = "crossed"
        end[stuck] = "saturated" if k > 1 else "too slow"
        end[stuck & (np.abs(v_dev) < thr)] = "current-limited"
        active &= ~(crossed | stuck)
        if k >= SLOW_AFTER:
            covered = np.where(up, 1.0, -1.0) * (g[k] - g[0]) / span
            slow = active & (covered * n_max / k < SLOW_FRACTION)
            end[slow] = "too slow"
            active &= ~slow
        if progress is not None:
            progress(1)
        if not active.any():
            break
    return {"g": g, "end": end, "pulses": np.sum(np.isfinite(g), axis=0) - 1, "v_device": v_dev}


def _refine(dev: Device, v_read: float, window: tuple[float, float], settings: DeriveSettings,
            transistor: Transistor, tried: dict[str, list[_Tried]],
            chosen: dict[str, _Pulse], cols: dict[str, np.ndarray],
            kind_thr: dict[str, float], progress: Callable[[int], None] | None) -> None:
    """A finer law than the ladder's rungs: where the lowest crossing rung crosses the window in
    fewer than TARGET_PULSES pulses (or fewer than MIN_PULSES: not usable), bisect the amplitude
    between it and the rung below, which did not cross (the switching threshold itself when it
    is the lowest rung: a fast device), REFINE_STEPS times, for the slowest ramp that still
    crosses within the budget (`chosen`, `cols` updated in place)."""
    brackets, kinds = {}, {}
    for w in ("set", "reset"):
        crossing = [r.pulse for r in tried[w] if r.end == "crossed"]
        if getattr(settings, f"amplitude_{w}") is not None or not crossing or (
                w in chosen and len(cols[w]) - 1 >= TARGET_PULSES):
            continue
        top = min(crossing, key=lambda p: p.amplitude)
        below = [r.pulse.amplitude for r in tried[w]
                 if r.end != "crossed" and r.pulse.amplitude < top.amplitude]
        brackets[w] = [max(below, default=kind_thr[top.kind]), top.amplitude]
        kinds[w] = top
    for _ in range(REFINE_STEPS if brackets else 0):
        words = list(brackets)
        cands = [dataclasses.replace(kinds[w], amplitude=0.5 * sum(brackets[w])) for w in words]
        ramps = _ramps(dev, v_read, window, np.array([w == "set" for w in words]), cands,
                       settings.width, settings.pulses, transistor, kind_thr, progress)
        for j, w in enumerate(words):
            col = ramps["g"][:, j]
            col = col[np.isfinite(col)]
            if ramps["end"][j] == "crossed":
                brackets[w][1] = cands[j].amplitude
                if len(col) - 1 >= MIN_PULSES:
                    chosen[w], cols[w] = cands[j], col
            else:
                brackets[w][0] = cands[j].amplitude
            if w in chosen and len(cols[w]) - 1 >= TARGET_PULSES:
                del brackets[w]
        if not brackets:
            break


def _polarity_up(dev: Device, v_read: float, window: tuple[float, float],
                 thresholds: tuple[float, float]) -> str:
    """The program.py kind ('set': +V, 'reset': -V on the device) whose pulses raise the read
    conductance: the sign of the state rate at 2 x threshold across the window's states,
    times the sign of dG/d state."""
    if not all(math.isfinite(t) for t in thresholds):
        side = "positive" if not math.isfinite(thresholds[0]) else "negative"
        raise CircuitnnError(f"the card does not switch under {side} voltages up to {V_MAX:g} V: "
                             "no pulse train can program it both ways")
    s = dev.state_for_conductance(np.linspace(window[0], window[1], 9), v_read)
    rising = float(np.sign(s[-1] - s[0]))  # +1: the state grows with the conductance
    up = []
    for sign, thr in ((1.0, thresholds[0]), (-1.0, thresholds[1])):
        r = dev.rate(sign * min(2 * thr, V_MAX), s)
        up.append(float(np.sum(np.sign(r))) * rising)
    if up[0] > 0 >= up[1]:
        return "set"
    if up[1] > 0 >= up[0]:
        return "reset"
    raise CircuitnnError("pulses of both polarities move the read conductance the same way: "
                         "not a bipolar switching device")


class TooSlow(CircuitnnError):
    """No pulse of the amplitude ladder moves the device across the window at this width."""


@dataclass(frozen=True)
class _Tried:
    """One candidate pulse's ramp: read conductances, why it ended, and the device voltage at
    the end of its last pulse's plateau."""

    pulse: _Pulse
    g: np.ndarray
    end: str
    v_device: float


def _refuse(word: str, tried: list[_Tried], given: bool, settings: DeriveSettings,
            window: tuple[float, float], kind_thr: dict[str, float]) -> None:
    """A CircuitnnError saying why no candidate pulse of one direction gives a usable ramp, by
    what ended the strongest pulse's ramp, with hints only within the options' ranges."""
    span = window[1] - window[0]
    parts = [f"{r.pulse.amplitude:.3g} V: {r.end}"
             + (f" (device at {abs(r.v_device):.3g} V)" if r.end == "current-limited" else "")
             + f" after {len(r.g) - 1} pulse(s), "
             f"{float(np.max(np.abs(r.g - r.g[0]))) / span:.2%} of the window"
             for r in tried]
    last = max(tried, key=lambda r: r.pulse.amplitude)
    p, thr, width = last.pulse, kind_thr[last.pulse.kind], settings.width
    opt, gate = f"--amplitude-{word.lower()}", f"--gate-{word.lower()}"
    narrower = f"a narrower window (--window; now [{window[0]:.4g}, {window[1]:.4g}] S)"
    crossed = [r.pulse.amplitude for r in tried if r.end == "crossed"]
    error: type[CircuitnnError] = CircuitnnError
    if crossed:
        reason = f"pulses of {min(crossed):.3g} V cross the window in under {MIN_PULSES} pulses"
        hints = [f"{opt} between {thr:.4g} and {min(crossed):.3g} V",
                 f"a shorter --width (now {width:g} s)"]
    elif last.end == "current-limited":
        reason = (f"current-limited: the access transistor at gate {p.gate:g} V leaves the "
                  f"device at {abs(last.v_device):.3g} V, below its switching threshold "
                  f"{thr:.4g} V")
        hints = ([f"a higher {gate} (now {p.gate:g} V, at most {V_MAX:g} V)"]
                 if p.gate < V_MAX else [])
        hints.append(f"a window with a lower top (--window; now up to {window[1]:.4g} S)")
    elif last.end == "saturated":
        reason = (f"saturated: at {p.amplitude:.3g} V the state stops inside the window (the "
                  "model's window function or a balance of its switching rates)")
        hints = ([f"a higher {opt} (at most {V_PULSE_MAX:g} V)"]
                 if p.amplitude < V_PULSE_MAX else []) + [narrower]
    elif last.end == "integration failed":
        reason = "the card's state could not be integrated under these pulses"
        hints = [narrower]
    else:
        error = TooSlow
        reason = f"too slow: the device switches too slowly for {width:g} s pulses"
        hints = []
        if width < MAX_WIDTH:
            hints.append(f"a longer --width (now {width:g} s, at most {MAX_WIDTH:g} s)")
        if settings.pulses < MAX_PULSES:
            hints.append(f"more --pulses (now {settings.pulses}, at most {MAX_PULSES})")
        if given and p.amplitude < V_PULSE_MAX:
            hints.append(f"a higher {opt} (at most {V_PULSE_MAX:g} V)")
        hints = hints or [narrower]
    who = "the given amplitude" if given else "the amplitude rule"
    raise error(f"{word} ramps do not cross the window [{window[0] * 1e6:.4g}, "
                f"{window[1] * 1e6:.4g}] uS with {who} ({'; '.join(parts)}); {reason}: give "
                f"{' or '.join(hints)} (options of circuitnn fit-pulse --from-card, whose card "
                "--pulse-card takes)")


def _check_amplitude(value: float | None, threshold: float, name: str) -> None:
    if value is not None and value <= threshold:
        raise CircuitnnError(f"{name} = {value:g} V is not above the card's switching threshold "
                             f"{threshold:.4g} V for that polarity: the pulse would not switch")


# --- ngspice check ----------------------------------------------------------------------------
def _ngspice_check(card: ModelCard, dev: Device, v_read: float, pulses: dict[str, _Pulse],
                   starts: dict[str, float], window_span_s: float, width: float,
                   transistor: Transistor, n_pulses: int = CHECK_PULSES,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """State trajectories of `n_pulses` chained pulses per direction, ngspice against numpy."""
    from circuitnn.tile.program import program_pulse
    from circuitnn.tile.spec import TileSpec

    g0 = float(dev.conductance(starts[next(iter(starts))], v_read))
    spec = TileSpec(np.array([[g0]]), device=card, r_row=0.0, r_col=0.0, r_wl=0.0,
                    transistor=transistor, v_read=v_read)
    dt = max(EDGE, width / 10) / CHECK_STEPS
    t_np, shape_np = _waveform(width, samples=COMPARE_SAMPLES)
    worst, out = 0.0, {}
    t0 = time.perf_counter()
    for word, p in pulses.items():
        s_ng = s_np = float(starts[word])
        err = 0.0
        for _ in range(n_pulses):
            res = program_pulse(spec, 0, 0, kind=p.kind, v_pulse=p.amplitude, v_gate=p.gate,
                                width=width, edge=EDGE, dt=dt, states=[[s_ng]])
            tr = dev.simulate(t_np, p.sign * p.amplitude * shape_np, s0=s_np,
                              series=access_transistor(transistor, p.v_gs()))
            ng_t = np.interp(t_np, res.t, res.states_t[0, 0])
            err = max(err, float(np.max(np.abs(ng_t - tr.state))) / window_span_s)
            s_ng, s_np = float(res.states_after[0, 0]), float(tr.state[-1])
            if progress is not None:
                progress(1)
        out[word] = {"pulses": n_pulses, "max_state_error": err,
                     "g_after_ngspice": float(dev.conductance(s_ng, v_read)),
                     "g_after_numpy": float(dev.conductance(s_np, v_read))}
        worst = max(worst, err)
    return {"engine": "ngspice", "cell": "1x1 tile, ideal wires (circuitnn.tile.program)",
            "max_state_error": worst, "limit": MAX_CHECK_ERROR,
            "error_unit": "fraction of the window's state span", "time_step_s": dt,
            "seconds": time.perf_counter() - t0, **out}


# --- noise ------------------------------------------------------------------------------------
RELATIVE_NOISE = ("sigma_add_p", "sigma_mult_p", "sigma_add_d", "sigma_mult_d", "sigma_level",
                  "rho_level")  # the additive parts and the level noise as fractions of a window


def pulse_card_noise(card: ModelCard, where: str = "pulse card") -> dict[str, float]:
    """The cycle-to-cycle statistics of a pulse-update card relative to its window (additive
    update noise and level noise / (g_max - g_min); multiplicative parts and the level noise's
    correlation as they are): what a law derived for the same device takes from it."""
    if card.model != PULSE_MODEL:
        raise CircuitnnError(f"{where} is not a pulse-update card (model {card.model!r})")
    law = PulseModel.from_card(card)
    span = law.g_max - law.g_min
    return {k: float(getattr(law, k)) / (span if k in ("sigma_add_p", "sigma_add_d",
                                                       "sigma_level") else 1.0)
            for k in RELATIVE_NOISE}


def _noise(card: ModelCard, settings: DeriveSettings) -> tuple[dict[str, float], str]:
    """The derived law's cycle-to-cycle noise relative to its window, and where it comes from:
    a pulse card of the same device, else the I-V card's sigma_rel, else the option, else 0."""
    if settings.pulse_noise is not None:
        return dict(settings.pulse_noise), "pulse card of the same device"
    c2c = card.variation.get("cycle_to_cycle") if isinstance(card.variation, dict) else None
    sigma, source = 0.0, "none (0: the card has no cycle-to-cycle statistics and none was given)"
    if isinstance(c2c, dict) and "sigma_rel" in c2c:
        sigma = _number(c2c["sigma_rel"], "card variation.cycle_to_cycle.sigma_rel")
        if not 0 <= sigma < 1:
            raise CircuitnnError(f"card variation.cycle_to_cycle.sigma_rel must be in [0, 1), "
                                 f"got {sigma:g}")
        source = "card variation.cycle_to_cycle.sigma_rel"
    elif settings.noise is not None:
        sigma, source = settings.noise, "option"
    rel = dict.fromkeys(RELATIVE_NOISE, 0.0)
    rel.update(sigma_add_p=sigma, sigma_add_d=sigma)
    return rel, source


# --- the measured devices' spread ----------------------------------------------------------------
SPREAD_PULSES = 5  # pulses whose mean step is a device's pace (its step scale against the card's)
MIN_SCALE = 0.01  # a device that does not move under the pulses: a pace of 1% of the card's


def device_response(card: ModelCard, v_read: float, window: tuple[float, float],
                    pulses: dict[str, _Pulse], width: float, n_max: int) -> dict[str, Any]:
    """How one device moves under the chosen SET and RESET pulses in its 1T1R cell: each ramp
    from the window's opposite edge, as the derivation runs it (`_ramps`), gives the level it
    ends at (S: crossing the window, or where it saturates), its pulses, why it ended, and its
    pace: the mean step of its first SPREAD_PULSES pulses as a fraction of the window."""
    dev = load_device(card)
    thr = switching_thresholds(dev)
    ramps = _ramps(dev, v_read, window, np.array([True, False]), [pulses["set"],
                                                                  pulses["reset"]],
                   width, n_max, Transistor(), {"set": thr[0], "reset": thr[1]})
    span = window[1] - window[0]
    out = {}
    for j, word in enumerate(("set", "reset")):
        col = ramps["g"][:, j]
        col = col[np.isfinite(col)]
        k = min(SPREAD_PULSES, len(col) - 1)
        pace = (1.0 if word == "set" else -1.0) * (col[k] - col[0]) / (k * span) if k else 0.0
        out[word] = {"end_S": float(col[-1]), "pulses": int(len(col) - 1),
                     "ended": str(ramps["end"][j]), "pace": float(max(pace, 0.0))}
    return out


def _measured_spread(profile: DeviceProfile, pulses: dict[str, _Pulse], width: float,
                     n_max: int, law: PulseModel) -> dict[str, Any]:
    """Device-to-device spread of the derived law from the devices the I-V card was fitted to
    (`circuitnn.devices.population.members`), each simulated with the chosen pulses in its cell
    (`device_response`): a device's bounds are the law's shifted by how far its ramps end from
    the card's own, its step scales its pace over the card's (at least MIN_SCALE). The spread is
    the sample standard deviation over the devices (ddof 1) of the law's bounds g_min, g_max (S)
    and of the logarithms of its SET and RESET step scales; the chain draws each cell's device
    from independent distributions with those (`PulseModel.sample_devices`; with a few devices
    no correlation can be estimated). Returns the d2d record (`d2d`) and what the card says of
    it."""
    found = members(profile.iv_card, profile.iv_path.name)
    zero = {k: 0.0 for k in ("g_min_std", "g_max_std", "scale_p_std", "scale_d_std")}
    if not found:
        return {"d2d": zero, "source": "none", "devices": 1,
                "basis": "one device: the card records no device-to-device spread"}
    args = (profile.v_read, profile.window, pulses, width, n_max)
    own = device_response(profile.iv_card, *args)
    rows, shifts = [], []
    for name, card in found:
        try:
            r = device_response(card, *args)
        except CircuitnnError as exc:
            rows.append({"device": name, "error": str(exc)})
            continue
        shift = {"g_min": r["reset"]["end_S"] - own["reset"]["end_S"],
                 "g_max": r["set"]["end_S"] - own["set"]["end_S"],
                 **{f"scale_{t}": max(r[w]["pace"] / own[w]["pace"], MIN_SCALE)
                    for t, w in (("p", "set"), ("d", "reset"))}}
        shifts.append(shift)
        rows.append({"device": name, **{w: r[w] for w in ("set", "reset")}, "law": {
            "g_min": law.g_min + shift["g_min"], "g_max": law.g_max + shift["g_max"],
            "scale_p": shift["scale_p"], "scale_d": shift["scale_d"]}})
    record = {"source": "measured", "devices": len(found), "simulated": len(shifts),
              "members": rows,
              "basis": "the devices of the card's device-to-device record, each simulated with "
                       "the chosen pulses in its 1T1R cell (circuitnn.fitting.derive."
                       "_measured_spread)",
              "distribution": "independent per cell, centred on the card's own law: g_min, g_max "
                              "(S) normal, the SET and RESET step scales log-normal, each with "
                              "the sample standard deviation over the devices (ddof 1; of the "
                              "scales' logarithms); every window kept open"}
    if len(shifts) < 2:
        record["source"] = "none"
        record["basis"] += f"; fewer than 2 devices could be simulated ({len(shifts)})"
        return {"d2d": zero, **record}
    d2d = {f"{k}_std": float(np.std([s[k] for s in shifts], ddof=1)) for k in ("g_min", "g_max")}
    d2d.update({f"{k}_std": float(np.std(np.log([s[k] for s in shifts]), ddof=1))
                for k in ("scale_p", "scale_d")})
    return {"d2d": d2d, **record}


# --- entry point ------------------------------------------------------------------------------
def _identity(profile: DeviceProfile, settings: DeriveSettings) -> dict[str, Any]:
    """Everything a derived pulse card depends on (its cache entry's content)."""
    from circuitnn import __version__

    return {"version": DERIVE_VERSION, "circuitnn": __version__,
            "iv_sha256": file_sha256(profile.iv_path), "v_read": profile.v_read,
            "window": list(profile.window), "settings": settings.to_json(),
            "transistor": dataclasses.asdict(Transistor())}


def _report(path: Path, card: ModelCard, cached: bool) -> dict[str, Any]:
    rec = dict(card.fit["derivation"])
    rec.update({"source": "derived", "path": str(path), "sha256": file_sha256(path),
                "cached": cached})
    return rec


def check_profile(profile: DeviceProfile) -> None:
    """Refuse what is not an I-V card with a window, before any simulation."""
    if not isinstance(profile, DeviceProfile):
        raise CircuitnnError(f"profile must be a DeviceProfile, got {type(profile).__name__}")
    if profile.iv_card.model == PULSE_MODEL:
        raise CircuitnnError(f"{profile.iv_path} is a pulse-update card; an I-V card is needed")
    profile.window  # noqa: B018  (raises when empty)


def derived_pulse(profile: DeviceProfile, settings: DeriveSettings | None = None,
                  check_ngspice: bool = True, progress: Callable[[int], None] | None = None
                  ) -> tuple[PulseModel, dict[str, Any]]:
    """The pulse-update law of `profile`'s I-V card (module doc) and a plain-JSON report:
    {source: "derived", path, sha256, settings, ngspice_check, noise_source, fit, cached,
    seconds}. `progress(k)` is called as pulses are simulated (k pulses done)."""
    settings = DeriveSettings() if settings is None else settings
    if not isinstance(settings, DeriveSettings):
        raise CircuitnnError(f"settings must be DeriveSettings, got {type(settings).__name__}")
    check_profile(profile)
    plan = _plan(profile, settings)
    with entry(CACHE_SUB, _identity(profile, settings),
               f"pulse-{profile.iv_card.model}-{{key}}.json") as e:
        path = e.path
        if path.is_file():
            card = ModelCard.load(path)
            rec = card.fit.get("derivation", {})
            if not check_ngspice or rec.get("ngspice_check") is not None:
                return PulseModel.from_card(card), _report(path, card, cached=True)
            card = _add_check(card, profile, progress)
            card.save(path)
            return PulseModel.from_card(card), _report(path, card, cached=True)
        card = _derive_any_width(profile, settings, plan, check_ngspice, progress)
        card.save(path)
    return PulseModel.from_card(card), _report(path, card, cached=False)


def _derive_any_width(profile: DeviceProfile, settings: DeriveSettings,
                      plan: tuple[Device, str, dict[str, float]], check_ngspice: bool,
                      progress: Callable[[int], None] | None) -> ModelCard:
    """`_derive` at the given width, or the width rule: the first of WIDTHS at which the
    amplitude ladder crosses the window (the card records the rule)."""
    if settings.width is not None:
        return _derive(profile, settings, plan, check_ngspice, progress)
    slow = []
    for width in WIDTHS:
        try:
            card = _derive(profile, dataclasses.replace(settings, width=width), plan,
                           check_ngspice, progress)
        except TooSlow as err:
            slow.append(f"{width:.3g} s: {err}")
            continue
        rule = (f"the shortest of {[f'{w:.3g}' for w in WIDTHS]} s (the reference's "
                f"{WIDTHS[0]:.3g} s, then decades longer, up to {MAX_WIDTH:.3g} s) whose "
                "pulses cross the window")
        card.fit["derivation"]["width_rule"] = rule
        card.provenance["width_rule"] = rule
        return card
    raise CircuitnnError(f"{profile.iv_path.name}: no pulse width up to {WIDTHS[-1]:.3g} s "
                         f"programs this device across its window ({slow[-1]})")


def _starts(dev: Device, profile: DeviceProfile) -> dict[str, float]:
    g_lo, g_hi = profile.window
    return {"set": float(dev.state_for_conductance(g_lo, profile.v_read)),
            "reset": float(dev.state_for_conductance(g_hi, profile.v_read))}


def _add_check(card: ModelCard, profile: DeviceProfile,
               progress: Callable[[int], None] | None) -> ModelCard:
    """A cached card made without the ngspice check, with it (refused when over the limit)."""
    rec = card.fit["derivation"]
    dev = load_device(profile.iv_card)
    chosen = {w: _Pulse(**rec["pulses"][w]) for w in ("set", "reset")}
    starts = _starts(dev, profile)
    check = _run_check(profile, dev, chosen, starts, rec["settings"]["width"], progress)
    rec["ngspice_check"] = check
    card.provenance["ngspice_check"] = check
    return card


def _run_check(profile: DeviceProfile, dev: Device, chosen: dict[str, _Pulse],
               starts: dict[str, float], width: float,
               progress: Callable[[int], None] | None) -> dict[str, Any]:
    span_s = abs(starts["reset"] - starts["set"])
    by_kind = {w: starts[w] for w in chosen}
    check = _ngspice_check(profile.iv_card, dev, profile.v_read, chosen, by_kind, span_s,
                           width, Transistor(), progress=progress)
    if check["max_state_error"] > MAX_CHECK_ERROR:
        raise CircuitnnError(
            f"{profile.iv_path.name}: the numpy pulse simulation disagrees with ngspice by "
            f"{check['max_state_error']:.2%} of the window's state span (limit "
            f"{MAX_CHECK_ERROR:.0%}); no pulse law derived")
    return check


def _plan(profile: DeviceProfile, settings: DeriveSettings
          ) -> tuple[Device, str, dict[str, float]]:
    """(device, the program.py kind that SETs, threshold per kind), with the given amplitudes
    checked against the thresholds: everything refused before any simulation."""
    dev = load_device(profile.iv_card)
    members(profile.iv_card, profile.iv_path.name)  # a malformed spread is refused here
    thresholds = profile.operating.thresholds
    kind_thr = {"set": thresholds[0], "reset": thresholds[1]}
    kind_up = _polarity_up(dev, profile.v_read, profile.window, thresholds)
    kind_down = "reset" if kind_up == "set" else "set"
    for word, kind in (("set", kind_up), ("reset", kind_down)):
        given = getattr(settings, f"amplitude_{word}")
        _check_amplitude(given, kind_thr[kind], f"amplitude_{word}")
        if given is None and AMPLITUDE_FACTORS[0] * kind_thr[kind] > V_PULSE_MAX:
            raise CircuitnnError(
                f"{profile.iv_path.name}: the {word.upper()} switching threshold "
                f"{kind_thr[kind]:.4g} V leaves no pulse amplitude of at least "
                f"{AMPLITUDE_FACTORS[0]:g} x threshold within {V_PULSE_MAX:g} V")
    return dev, kind_up, kind_thr


def _derive(profile: DeviceProfile, settings: DeriveSettings,
            plan: tuple[Device, str, dict[str, float]], check_ngspice: bool,
            progress: Callable[[int], None] | None) -> ModelCard:
    from circuitnn import __version__
    from circuitnn.fitting.pulse import PulseData, fit_pulse

    t0 = time.perf_counter()
    dev, kind_up, kind_thr = plan
    window, v_read, transistor = profile.window, profile.v_read, Transistor()
    gates = (settings.gate_set, settings.gate_reset)
    kind_down = "reset" if kind_up == "set" else "set"
    cands: dict[str, list[_Pulse]] = {}
    for word, kind, gate, given in (("set", kind_up, gates[0], settings.amplitude_set),
                                    ("reset", kind_down, gates[1], settings.amplitude_reset)):
        if given is not None:
            amps = [given]
        else:
            amps = sorted({min(f * kind_thr[kind], V_PULSE_MAX) for f in AMPLITUDE_FACTORS})
        cands[word] = [_Pulse(kind, a, gate) for a in amps]
    # the ladder in increasing amplitude, both directions together, until each has a ramp
    tried: dict[str, list[_Tried]] = {"set": [], "reset": []}
    chosen: dict[str, _Pulse] = {}
    cols: dict[str, np.ndarray] = {}
    for rung in range(max(len(c) for c in cands.values())):
        batch = [(w, cands[w][rung]) for w in ("set", "reset")
                 if w not in chosen and rung < len(cands[w])
                 and not any(r.end == "crossed" for r in tried[w])]
        if not batch:
            break
        ramps = _ramps(dev, v_read, window, np.array([w == "set" for w, _ in batch]),
                       [c for _, c in batch], settings.width, settings.pulses, transistor,
                       kind_thr, progress)
        for j, (w, c) in enumerate(batch):
            col = ramps["g"][:, j]
            col = col[np.isfinite(col)]
            tried[w].append(_Tried(c, col, str(ramps["end"][j]), float(ramps["v_device"][j])))
            if ramps["end"][j] == "crossed" and len(col) - 1 >= MIN_PULSES:
                chosen[w], cols[w] = c, col
    _refine(dev, v_read, window, settings, transistor, tried, chosen, cols, kind_thr, progress)
    for w in ("set", "reset"):
        if w not in chosen:
            _refuse(w.upper(), tried[w], getattr(settings, f"amplitude_{w}") is not None,
                    settings, window, kind_thr)
    t_numpy = time.perf_counter() - t0
    rule = {w: ("given" if getattr(settings, f"amplitude_{w}") is not None else
                f"{chosen[w].amplitude / kind_thr[chosen[w].kind]:.4g} x threshold "
                f"{kind_thr[chosen[w].kind]:.4g} V (smallest of {list(AMPLITUDE_FACTORS)} "
                f"crossing the window in {MIN_PULSES}..{settings.pulses} pulses, refined "
                f"towards {TARGET_PULSES} or more pulses)")
            for w in chosen}
    check = None
    if check_ngspice:
        check = _run_check(profile, dev, chosen, _starts(dev, profile), settings.width,
                           progress)
    t_check = time.perf_counter() - t0 - t_numpy
    longest = max(len(c) for c in cols.values())
    table = {w: np.full((longest, 1), np.nan) for w in cols}
    for w, c in cols.items():
        table[w][:len(c), 0] = c
    data = PulseData(f"derived from {profile.iv_path.name}", table["set"], table["reset"], "S",
                     [profile.iv_path.name], "simulated pulse ramps of the I-V card in its 1T1R "
                     "cell (circuitnn.fitting.derive)", f"G = I(v_read) / v_read at v_read = "
                     f"{v_read:g} V")
    shortest = min(len(c) for c in cols.values())
    knots = tuple(k for k in SPLINE_KNOTS if k + 1 <= shortest) or (2,)
    with warnings.catch_warnings():  # one ramp per direction: no spread to estimate
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_pulse(data, n_sim=5, seed=0, spline_knots=knots)
    noise, noise_source = _noise(profile.iv_card, settings)
    sigma = max(noise["sigma_add_p"], noise["sigma_add_d"])
    model = fit.model
    span = model.g_max - model.g_min
    if model.g_min > window[0] * (1 + 1e-9) or model.g_max < window[1] * (1 - 1e-9):
        raise CircuitnnError(f"derived law covers [{model.g_min * 1e6:.4g}, "
                             f"{model.g_max * 1e6:.4g}] uS, not the whole window")
    model = dataclasses.replace(model, **{
        k: v * (span if k in ("sigma_add_p", "sigma_add_d", "sigma_level") else 1.0)
        for k, v in noise.items()})
    card = fit.card
    fitted_noise = {k: v for k, v in card.variation.get("cycle_to_cycle", {}).items()
                    if k.startswith(("sigma", "rho"))}
    card.variation = model.variation()
    card.variation["cycle_to_cycle"].update({
        "source": noise_source, "sigma_rel": sigma, "relative": noise, "unit": "S",
        "model": "the pulse-update model's (circuitnn.devices.pulse): update noise per pulse "
                 "sqrt(sigma_add^2 + (sigma_mult dG)^2), accumulating, and level noise on each "
                 "read; `relative`: the additive parts and the level noise / (g_max - g_min)"})
    spread = _measured_spread(profile, chosen, settings.width, settings.pulses, model)
    model = dataclasses.replace(model, d2d=spread.pop("d2d"))
    card.variation["device_to_device"] = {**model.variation()["device_to_device"], **spread}
    quality = {t: {k: v for k, v in fit.metrics[t].items() if not k.startswith("step_spread")}
               for t in ("p", "d")}
    seconds = {"numpy": t_numpy, "ngspice_check": t_check if check_ngspice else 0.0,
               "fit": fit.metrics["fit_seconds"], "total": time.perf_counter() - t0}
    derivation = {
        "iv_card": {"path": str(profile.iv_path), "sha256": file_sha256(profile.iv_path),
                    "model": profile.iv_card.model},
        "v_read": v_read, "window": list(window), "settings": settings.to_json(),
        "pulses": {w: dataclasses.asdict(p) for w, p in chosen.items()},
        "amplitude_rule": rule,
        "ramp_pulses": {w: int(len(c) - 1) for w, c in cols.items()},
        "ramps_S": {w: [float(x) for x in c] for w, c in cols.items()},
        "noise_source": noise_source, "noise_sigma_rel": sigma, "noise_rel": noise,
        "device_to_device": spread,
        "ngspice_check": check,
        "fit": {"law": fit.metrics["law"], "g_range": [model.g_min, model.g_max], **quality,
                "fitted_step_noise_not_used": fitted_noise},
        "seconds": seconds,
    }
    card.fit["derivation"] = derivation
    card.provenance = {"source": "derived", "dataset": data.name, "date":
                       _dt.date.today().isoformat(), "circuitnn_version": __version__,
                       "iv_card": derivation["iv_card"], "v_read": v_read,
                       "window": list(window), "settings": settings.to_json(),
                       "noise_source": noise_source, "ngspice_check": check,
                       "method": "circuitnn.fitting.derive (module doc)"}
    card.notes += (" Derived from the I-V card by simulated SET/RESET pulse trains in a 1T1R "
                   "cell (circuitnn.fitting.derive).")
    return card


def plot_derived(model: PulseModel, report: dict[str, Any], path: str | Path) -> Path:
    """The simulated SET / RESET ramps (points) and the fitted law from the same starts (lines),
    in uS against pulse number, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from circuitnn.io import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pulses = report["pulses"]
    for ax, word, sign in ((axes[0], "set", 1), (axes[1], "reset", -1)):
        g = np.asarray(report["ramps_S"][word])
        n = np.arange(g.size)
        ax.plot(n, g * 1e6, "o", color="k", ms=4, label="cell simulation (numpy)")
        ax.plot(n, model.ramp(g[0], g.size - 1, sign) * 1e6, color="tab:red", lw=1.8,
                label=f"fitted law ({report['fit']['law']})")
        for edge in report["window"]:
            ax.axhline(edge * 1e6, color="0.6", lw=0.8, ls=":")
        p = pulses[word]
        ax.set_title(f"{word.upper()}: {p['amplitude']:.3g} V, gate {p['gate']:g} V, "
                     f"{report['settings']['width'] * 1e9:g} ns", fontsize=9)
        ax.set_xlabel("pulse number")
        ax.set_ylabel(f"G at v_read = {report['v_read']:g} V (uS)")
        ax.legend(fontsize=8)
    fig.suptitle(f"pulse law derived from {Path(report['iv_card']['path']).name}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)

"""Operating point of an I-V card: switching thresholds, a safe read voltage, the programmable
window and the on/off ratio, each chosen by one rule written here.

Switching thresholds: for each polarity, the smallest |V| across the device at which the card's
rate equation moves the state, at any of `N_STATES` states spread evenly over the state range
(or at given states). Models with hard thresholds (Yakopcic, VTEAM, Stanford-PKU's field
threshold) have a rate of exactly 0 below threshold, and "moves" means a non-zero rate: the
model's own threshold. Models whose rate never vanishes (the MSS model's switching
probabilities) "move" where |d state/dt| x READS x READ_PULSE >= MOVE_FRACTION of the state
range: the state would shift by 0.1% of its range within the read-disturb stress time. Found on
a 1 mV grid up to `V_MAX`, then refined by bisection to 1 uV and rounded up; inf when nothing
moves up to `V_MAX`, 0 when the state already moves at 0 V (a volatile device: it cannot hold
programmed conductances, and the card is refused for reads).

Safe read voltage: v_read = min(requested, READ_MARGIN x the smaller threshold), rounded down to
1 mV, where "requested" is the card's own v_read (cards written before this rule existed carry
the reference's 0.2 V) or, for a new fit, the reference's 0.2 V (Yao et al., Nature 577, 641,
2020). READ_MARGIN = 0.5 keeps reads two device-to-device standard deviations below the SET
threshold of the Knowm W-SDC devices (fitted Yakopcic Vp over M1-M3: 0.17 +- 0.04 V, a 24%
spread; `device_models/knowm-m1-yakopcic.json`, variation.device_to_device).

Read disturb: the state is integrated (`Device.simulate`) under a constant v_read across the
device for READS x READ_PULSE = 10^6 x 50 ns = 50 ms (the reference's read pulse; it saw no
visible disturb after 10^6 reads at 0.2 V), starting from the lower bound, the middle and the
upper bound of the state range. Drift = the largest |G_after - G_before| / G_before, with
G_before floored at g_max / MAX_ON_OFF so a nearly open state cannot divide by ~0. It must stay
at or below DISTURB_LIMIT = 1%. This is conservative: in a 1T1R cell the access transistor and
the wires take part of v_read. When the margin rule's voltage fails, it is lowered by steps of
x0.8 down to V_READ_MIN until one passes; if none does, the card is refused.

Programmable window at v_read (default rule; a user window overrides it): the conductances of
the states WINDOW_MARGIN = 10% of the reachable state range in from each of its ends, with g_min
raised to at least g_max / MAX_ON_OFF
(MAX_ON_OFF = 10) so the lowest level stays well above an open cell: with the reference's 15
levels, g_min is then ~1.5 level steps above 0 S. The window is never at 0 S; it is None (and
`require_window` refuses it) when the conductance does not depend on the state. Reachable state
range: the states between the bounds from which a drive of REACH_DRIVE = 2x the switching
threshold still moves the state towards the bound at STOP_FRACTION = 1e-9 of its fastest rate;
it ends inside the bounds where a model's window function stops the motion there (a fitted
VTEAM card's a_on, a_off), else at the bounds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from circuitnn.devices.card import ModelCard, Parameter, parameters_hash
from circuitnn.devices.device import Device
from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF

V_MAX = 5.0  # V: largest |V| searched for a threshold (and accepted by any tile read)
V_READ_REFERENCE = REF.hardware.v_read  # V: the reference system's (Yao et al. 2020)
V_READ_MIN = 1e-3  # V: smallest read voltage offered
READ_MARGIN = 0.5  # v_read <= READ_MARGIN x the smaller switching threshold
READ_PULSE = REF.hardware.read_pulse_s  # s: the reference's read pulse width
READS = int(REF.hardware.read_disturb_pulses)  # read pulses of the disturb check
DISTURB_LIMIT = 0.01  # largest relative conductance drift after READS reads
WINDOW_MARGIN = 0.1  # fraction of the state range kept clear at each end of the window
MAX_ON_OFF = 10.0  # g_max / g_min of the default window at most
N_STATES = 33  # states searched for thresholds
REACH_DRIVE = 2.0  # drive of the reachable state range, in switching thresholds
STOP_FRACTION = 1e-9  # motion towards a bound below this fraction of its fastest rate: stopped
MOVE_FRACTION = 1e-3  # "moves": this fraction of the state range within READS x READ_PULSE
_LADDER = 0.8  # each lowering step of v_read multiplies it by this
PULSE_MODEL = "pulse-update"


@dataclass(frozen=True)
class OperatingPoint:
    """Where and how an I-V card is read; conductances in S at `v_read`."""

    model: str
    v_read: float
    v_read_rule: str
    thresholds: tuple[float, float]  # (positive, negative) |V|; inf when none up to V_MAX
    g_range: tuple[float, float]  # conductance at the state bounds (min, max)
    window: tuple[float, float] | None
    window_rule: str
    read_disturb: dict[str, Any]

    @property
    def on_off(self) -> float:
        """g_max / g_min of the whole state range at v_read (inf when the low state is open)."""
        lo, hi = self.g_range
        return math.inf if lo <= 0 else hi / lo

    @property
    def window_on_off(self) -> float | None:
        """g_max / g_min of the programmable window."""
        return None if self.window is None else self.window[1] / self.window[0]

    def require_window(self, where: str = "card") -> tuple[float, float]:
        """The window, or a CircuitnnError saying it is empty."""
        if self.window is None:
            raise CircuitnnError(f"{where}: the programmable window is empty at v_read = "
                                 f"{self.v_read:g} V ({self.window_rule})")
        return self.window

    @classmethod
    def from_json(cls, model: str, obj: dict[str, Any]) -> OperatingPoint:
        """Back from `to_json` (a card's `operating` record)."""
        def num(x: float | None) -> float:
            return math.inf if x is None else float(x)

        thr = obj["thresholds_V"]
        window = obj["window_S"]
        return cls(model, float(obj["v_read"]), str(obj["v_read_rule"]),
                   (num(thr["positive"]), num(thr["negative"])),
                   (float(obj["g_range_S"][0]), float(obj["g_range_S"][1])),
                   None if window is None else (float(window[0]), float(window[1])),
                   str(obj["window_rule"]), dict(obj["read_disturb"]))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (inf as null)."""
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "v_read": self.v_read, "v_read_rule": self.v_read_rule,
            "thresholds_V": {"positive": num(self.thresholds[0]),
                             "negative": num(self.thresholds[1])},
            "g_range_S": list(self.g_range), "on_off": num(self.on_off),
            "window_S": None if self.window is None else list(self.window),
            "window_on_off": self.window_on_off, "window_rule": self.window_rule,
            "read_disturb": dict(self.read_disturb),
        }


# --- the three rules ----------------------------------------------------------------------------
def switching_thresholds(device: Device, states: Any = None) -> tuple[float, float]:
    """(positive, negative) smallest |V| (V) at which any of `states` moves (default: N_STATES
    evenly over the state range); inf for a polarity where nothing moves up to V_MAX."""
    if states is None:
        lo, hi = device.bounds()
        states = np.linspace(float(lo), float(hi), N_STATES)
    s = np.ravel(np.asarray(states, dtype=float))[None, :]
    lo, hi = device.bounds()
    step = MOVE_FRACTION * np.abs(hi - lo) / (READS * READ_PULSE)  # smallest significant rate

    def rate(v: np.ndarray) -> np.ndarray:
        return np.abs(device.rate(v[:, None], s))

    soft = bool(np.any(rate(np.array([0.0, 1e-3, -1e-3])) > 0))  # no hard threshold near 0 V

    def moves(v: np.ndarray) -> np.ndarray:
        return np.any(rate(v) >= step if soft else rate(v) > 0, axis=1)

    if soft and moves(np.zeros(1))[0]:
        return 0.0, 0.0  # the state moves without any bias: a volatile device
    grid = np.arange(1, int(round(V_MAX * 1000)) + 1) * 1e-3
    out = []
    for sign in (1.0, -1.0):
        moving = moves(sign * grid)
        if not moving.any():
            out.append(math.inf)
            continue
        k = int(np.argmax(moving))
        a, b = (grid[k - 1] if k else 0.0), grid[k]  # a does not move, b does
        while b - a > 1e-6:
            mid = 0.5 * (a + b)
            if moves(np.array([sign * mid]))[0]:
                b = mid
            else:
                a = mid
        out.append(math.ceil(b * 1e6) / 1e6)
    return out[0], out[1]


def _drift(device: Device, v_read: np.ndarray) -> np.ndarray:
    """Relative read-disturb drift (see the module text) for each candidate read voltage."""
    lo, hi = (float(x) for x in device.bounds())
    s0 = np.array([lo, 0.5 * (lo + hi), hi])[None, :]
    vr = np.asarray(v_read, dtype=float)[:, None]
    t = np.concatenate([[0.0], np.geomspace(1e-9, READS * READ_PULSE, 40)])
    trace = device.simulate(t, np.broadcast_to(vr[..., None], (vr.shape[0], 1, t.size)), s0=s0)
    g0 = device.conductance(s0, vr)
    g1 = device.conductance(trace.state[..., -1], vr)
    g_top = np.max(np.abs(device.conductance(np.array([[lo, hi]]), vr)), axis=1, keepdims=True)
    floor = np.maximum(np.abs(g0), g_top / MAX_ON_OFF)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(g1 - g0) / floor
    return np.max(np.where(np.isfinite(rel), rel, np.inf), axis=1)


def read_disturb(device: Device, v_read: float) -> dict[str, Any]:
    """The read-disturb check at `v_read` as a plain dict (drift, limit, passes, conditions)."""
    drift = float(_drift(device, np.array([v_read]))[0])
    return {"v_read": v_read, "reads": READS, "pulse_width_s": READ_PULSE,
            "stress_s": READS * READ_PULSE, "drift": drift, "limit": DISTURB_LIMIT,
            "passes": bool(drift <= DISTURB_LIMIT),
            "method": "constant v_read across the device from the lower bound, middle and upper "
                      "bound of the state range; drift = max |dG| / G_before"}


def safe_read_voltage(device: Device, thresholds: tuple[float, float],
                      requested: float | None = None) -> tuple[float, str]:
    """(v_read, why): the margin rule, then lowered until the read-disturb check passes."""
    thr = min(thresholds)
    if requested is None:
        cap, cap_text = V_READ_REFERENCE, f"the reference's {V_READ_REFERENCE:g} V"
    else:
        cap, cap_text = requested, f"the card's {requested:g} V"
    if math.isfinite(thr) and READ_MARGIN * thr < cap:
        v0 = READ_MARGIN * thr
        why = f"{READ_MARGIN:g} x the smaller switching threshold {thr:.4g} V ({cap_text} is above)"
    elif math.isfinite(thr):
        v0, why = cap, f"{cap_text} (below {READ_MARGIN:g} x the smaller switching threshold " \
                       f"{thr:.4g} V)"
    else:
        v0, why = cap, f"{cap_text} (no switching up to {V_MAX:g} V)"
    v0 = math.floor(v0 * 1000 + 1e-9) / 1000
    if thr == 0:
        raise CircuitnnError("the state moves at 0 V (more than "
                             f"{MOVE_FRACTION:.1%} of its range within {READS:.0e} read pulses "
                             "of no bias): the card describes a volatile device, which cannot "
                             "hold programmed conductances")
    if v0 < V_READ_MIN:
        raise CircuitnnError(f"switching threshold {thr:.3g} V leaves no read voltage >= "
                             f"{V_READ_MIN * 1000:g} mV")
    n = int(math.floor(math.log(V_READ_MIN / v0) / math.log(_LADDER))) + 1
    ladder = np.floor(v0 * _LADDER ** np.arange(n) * 1e4 + 1e-6) / 1e4
    ok = _drift(device, ladder) <= DISTURB_LIMIT
    if not ok.any():
        raise CircuitnnError(f"no read voltage from {v0:g} V down to {V_READ_MIN * 1000:g} mV "
                             f"keeps the read-disturb drift after {READS:.0e} reads within "
                             f"{DISTURB_LIMIT:.0%}")
    k = int(np.argmax(ok))
    if k:
        why += f"; lowered from {v0:g} V by the read-disturb check"
    return float(ladder[k]), why


def reachable_states(device: Device, thresholds: tuple[float, float]) -> tuple[float, float]:
    """(lowest, highest) state of the reachable state range (see the module text)."""
    lo, hi = (float(x) for x in device.bounds())
    volts = [sign * REACH_DRIVE * th for sign, th in zip((1.0, -1.0), thresholds, strict=True)
             if 0 < th < math.inf]
    if not volts:
        return lo, hi
    s = np.linspace(lo, hi, 1001)
    with np.errstate(all="ignore"):
        r = np.nan_to_num(device.rate(np.array(volts)[:, None], s[None, :]))
    ends = []
    for speed, end, edge in ((np.max(-r, axis=0)[::-1], lo, s[::-1]),
                             (np.max(r, axis=0), hi, s)):
        # the farthest state towards the bound that still moves (the bound's own point
        # excluded: many rates vanish there)
        moving = np.flatnonzero(speed[:-1] >= STOP_FRACTION * speed.max())
        inside = moving.size > 0 and moving[-1] < speed.size - 2
        ends.append(float(edge[moving[-1]]) if inside else end)
    return ends[0], ends[1]


def default_window(device: Device, v_read: float, thresholds: tuple[float, float]
                   ) -> tuple[tuple[float, float] | None, str]:
    """(window or None, rule text) by the default rule of the module text."""
    lo, hi = reachable_states(device, thresholds)
    m = WINDOW_MARGIN * (hi - lo)
    g = np.abs(device.conductance(np.array([lo + m, hi - m]), v_read))
    g_max = float(g.max())
    g_min = max(float(g.min()), g_max / MAX_ON_OFF)
    rule = (f"conductances {WINDOW_MARGIN:.0%} of the reachable state range [{lo:.4g}, "
            f"{hi:.4g}] in from each end, g_min >= g_max / {MAX_ON_OFF:g}")
    if not (g_max > 0 and g_min < g_max * (1 - 1e-9)):
        return None, "the read conductance does not depend on the state"
    return (g_min, g_max), rule


def reachable_range(card: ModelCard, v_read: float, thresholds: tuple[float, float]
                    ) -> tuple[float, float]:
    """(lowest, highest) read conductance (S) at v_read over the reachable state range: what
    programming pulses can bring a device to (a window must lie inside it)."""
    device = _iv_device(card, "card")
    lo, hi = reachable_states(device, thresholds)
    g = np.abs(device.conductance(np.array([lo, hi]), v_read))
    return float(g.min()), float(g.max())


def _parse_window(window: Any) -> tuple[float, float]:
    try:
        g_min, g_max = (float(x) for x in window)
    except (TypeError, ValueError):
        raise CircuitnnError(f"window must be (g_min, g_max) in siemens, got {window!r}") from None
    if not (math.isfinite(g_min) and math.isfinite(g_max) and 0 < g_min < g_max):
        raise CircuitnnError(f"window needs 0 < g_min < g_max (S), got [{g_min:g}, {g_max:g}]")
    return g_min, g_max


def check_window(window: Any, g_range: tuple[float, float], v_read: float
                 ) -> tuple[float, float]:
    """A user window as floats, refused unless 0 < g_min < g_max inside the device's range."""
    g_min, g_max = _parse_window(window)
    lo, hi = g_range
    if g_min < lo * (1 - 1e-9) or g_max > hi * (1 + 1e-9):
        raise CircuitnnError(f"window [{g_min * 1e6:.4g}, {g_max * 1e6:.4g}] uS is outside what "
                             f"the device holds at v_read = {v_read:g} V "
                             f"([{lo * 1e6:.4g}, {hi * 1e6:.4g}] uS)")
    return g_min, g_max


# --- whole operating point ----------------------------------------------------------------------
def _iv_device(card: ModelCard, where: str) -> Device:
    if not isinstance(card, ModelCard):
        raise CircuitnnError(f"{where}: expected a ModelCard, got {type(card).__name__}")
    if card.model == PULSE_MODEL:
        raise CircuitnnError(f"{where} is a pulse-update card (programming behaviour); an I-V "
                             "compact-model card is expected here (see circuitnn fit)")
    return Device.from_card(card)


def operating_point(card: ModelCard, v_read: float | None = None, window: Any = None,
                    where: str = "card", fresh: bool = False) -> OperatingPoint:
    """The operating point of an I-V card (memoised on the card's values and the arguments).

    v_read None: the safe read voltage by the rules, starting from the card's own v_read (or,
    with `fresh`, from the reference's 0.2 V: a new fit); a number is checked (below both
    thresholds, read disturb within the limit) and refused otherwise. window None: the default
    rule; (g_min, g_max) in S: checked and used.
    """
    device = _iv_device(card, where)
    win = None if window is None else _parse_window(window)
    key = json.dumps([card.model, card.values(), v_read, win, fresh], sort_keys=True)
    hit = _MEMO.get(key)
    if hit is None:
        hit = _compute(device, v_read, win, None if fresh else device.v_read)
        while len(_MEMO) >= 64:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = hit
    return hit


_MEMO: dict[str, OperatingPoint] = {}


def _compute(device: Device, v_read: float | None, window: tuple[float, float] | None,
             start: float | None) -> OperatingPoint:
    thresholds = switching_thresholds(device)
    if v_read is None:
        vr, why = safe_read_voltage(device, thresholds, start)
    else:
        vr = float(v_read)
        if not (math.isfinite(vr) and vr > 0):
            raise CircuitnnError(f"v_read must be a finite voltage > 0, got {v_read!r}")
        if vr >= min(thresholds):
            raise CircuitnnError(f"v_read = {vr:g} V reaches the switching threshold "
                                 f"{min(thresholds):.4g} V: a read must stay below it")
        why = "given"
    disturb = read_disturb(device, vr)
    if not disturb["passes"]:
        raise CircuitnnError(f"v_read = {vr:g} V fails the read-disturb check: drift "
                             f"{disturb['drift']:.3g} after {READS:.0e} reads > "
                             f"{DISTURB_LIMIT:.0%}")
    lo, hi = (float(x) for x in device.bounds())
    g = np.abs(device.conductance(np.array([lo, hi]), vr))
    g_range = (float(g.min()), float(g.max()))
    if window is None:
        win, rule = default_window(device, vr, thresholds)
    else:
        win, rule = check_window(window, g_range, vr), "given"
    return OperatingPoint(device.model.name, vr, why, thresholds, g_range, win, rule, disturb)


def _trusted(card: ModelCard, where: str) -> bool:
    """True when the card's `operating` record is whole and made for its current parameters; a
    recorded window that no rule can have made (not 0 < g_min < g_max inside the recorded
    g_range, e.g. reversed) is refused."""
    rec = card.operating
    if rec.get("parameters_sha256") != parameters_hash(card):
        return False
    try:
        op = OperatingPoint.from_json(card.model, rec)
    except (KeyError, TypeError, ValueError, IndexError):
        return False
    if op.window is not None:
        try:
            check_window(op.window, op.g_range, op.v_read)
        except CircuitnnError as exc:
            raise CircuitnnError(f"{where}: the recorded operating window is not valid ({exc}); "
                                 "delete the card's 'operating' record to recompute it") from None
    return op.v_read == card.values().get("v_read")


def with_operating_point(card: ModelCard, where: str = "card", fresh: bool = False
                         ) -> ModelCard:
    """The card with a safe v_read and its `operating` record.

    A card whose record matches its parameters comes back unchanged; otherwise (a card written
    before this rule, or edited since) the operating point is computed from its parameters and
    written into a copy: v_read (parameter) and the record with how it was chosen. `fresh`: a
    new fit, whose v_read starts from the reference's rather than the card's.
    """
    if not fresh and _trusted(card, where):
        return card
    op = operating_point(card, where=where, fresh=fresh)
    params = dict(card.parameters)
    params["v_read"] = Parameter(op.v_read, "V", description="safe read voltage (see 'operating')")
    out = replace(card, parameters=params)
    from circuitnn import __version__

    record = op.to_json()
    record["computed_by"] = f"circuitnn {__version__} (circuitnn.devices.operating)"
    record["parameters_sha256"] = parameters_hash(out)
    out.operating = record
    return out


def with_operating_point_or_reason(card: ModelCard, where: str = "card", fresh: bool = False
                                   ) -> ModelCard:
    """`with_operating_point`, or, for a card no array can use (a volatile device, no safe read
    voltage), the card with an `operating` record saying why: a fit stays a valid description of
    the measured I-V, and every later use refuses it with that reason."""
    try:
        return with_operating_point(card, where, fresh)
    except CircuitnnError as exc:
        out = replace(card)
        out.operating = {"usable": False, "reason": str(exc),
                         "parameters_sha256": parameters_hash(card)}
        return out


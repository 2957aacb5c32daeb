"""The operating point of a device in an array: how its cells are read and programmed, in one
record (`OperatingChoice`), and the one rule that says where it comes from.

Settings: the read voltage `v_read`; the conductance window (g_min, g_max) in S of the cells as
a verify read sees them, with `levels` device states evenly spaced in it (`Window`); the SET
word-line voltage `gate_set` (the access transistor's current compliance; with the incremental
scheme the first rung of its ramp); the RESET amplitude `amplitude_reset` (V; None: the pulse
derivation's amplitude rule, `circuitnn.fitting.derive`; with the incremental scheme the first
rung); the write-verify tolerance `tolerance_rel` as a fraction of the level spacing; the
programming `scheme`: "fixed" (every pulse alike) or "incremental" (consecutive SET pulses ramp
the gate by GATE_STEP, consecutive RESET pulses the amplitude by AMPLITUDE_STEP, both ramps
restarting when the direction changes, up to RUNGS rungs).

Where it comes from (`source`), one rule for every card, decided by the card's parameters and
never by its path:
- "given": an operating point the card carries (`card.operating["chosen"]`, written by a search
  run) or one the reference preset attaches to the built-in card's parameters (`reference_choice`:
  the Yao et al. 2020 preset's 0.2 V, 6-24 uS, its SET gate and write tolerance), so the built-in
  card and a byte copy of it get the same point; or settings the user gives (each overrides its
  axis of the carried or rule point);
- "rule": the I-V card's own rules (`circuitnn.devices.operating`: safe v_read, default window),
  the preset's SET gate, the derivation's RESET amplitude, TOLERANCE_REL, the fixed scheme;
- "search": chosen by the operating-point search (`circuitnn.search`) among candidates evaluated
  for accuracy on the user's network; commands search by default for a card that carries none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from circuitnn.devices.card import ModelCard
from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF

SCHEMES = ("fixed", "incremental")
SOURCES = ("given", "rule", "search")
MODES = ("rule", "search")  # what a user may ask for (--operating-point)
#: default write-verify tolerance: this fraction of the level spacing (the reference preset's
#: 0.5 uS is 0.19 of its 6-24 uS window's 2.57 uS spacing)
TOLERANCE_REL = 0.2
GATE_STEP = 0.2  # V, SET gate ramp per consecutive SET pulse (incremental scheme)
AMPLITUDE_STEP = 0.1  # V, RESET amplitude ramp per consecutive RESET pulse (incremental scheme)
RUNGS = 4  # rungs of each ramp (the last one repeats)
GATE_MAX = 5.0  # V, the largest word-line voltage a tile takes (circuitnn.tile.spec.V_MAX)


@dataclass(frozen=True)
class Window:
    """The programmable conductance window: `levels` device states from g_min to g_max (S)."""

    g_min: float = REF.choices.g_min
    g_max: float = REF.choices.g_max
    levels: int = REF.hardware.device_levels

    def __post_init__(self) -> None:
        if self.levels < 2 or not 0 <= self.g_min < self.g_max:
            raise CircuitnnError(f"need levels >= 2 and 0 <= g_min < g_max (got {self.levels}, "
                                 f"{self.g_min}, {self.g_max})")

    @property
    def unit(self) -> float:
        """Conductance step between adjacent device states = conductance of one weight level."""
        return (self.g_max - self.g_min) / (self.levels - 1)


def _volts(x: Any, what: str, low: float = 0.0, high: float = GATE_MAX) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise CircuitnnError(f"{what} must be a number of volts, got {x!r}") from None
    if not (math.isfinite(v) and low < v <= high):
        raise CircuitnnError(f"{what} must be in ({low:g}, {high:g}] V, got {v:g}")
    return v


@dataclass(frozen=True)
class OperatingChoice:
    """How the cells of an array are read and programmed (module doc); conductances in S."""

    v_read: float
    g_window: tuple[float, float]
    gate_set: float = REF.choices.set_gate
    amplitude_reset: float | None = None
    tolerance_rel: float = TOLERANCE_REL
    scheme: str = "fixed"
    source: str = "rule"

    def __post_init__(self) -> None:
        _volts(self.v_read, "v_read")
        try:
            g_min, g_max = (float(g) for g in self.g_window)
        except (TypeError, ValueError):
            raise CircuitnnError(f"window must be (g_min, g_max) in S, got "
                                 f"{self.g_window!r}") from None
        if not (math.isfinite(g_max) and 0 < g_min < g_max):
            raise CircuitnnError(f"window needs 0 < g_min < g_max, got [{g_min * 1e6:.4g}, "
                                 f"{g_max * 1e6:.4g}] uS")
        object.__setattr__(self, "g_window", (g_min, g_max))
        object.__setattr__(self, "gate_set", _volts(self.gate_set, "SET gate voltage"))
        if self.amplitude_reset is not None:
            object.__setattr__(self, "amplitude_reset",
                               _volts(self.amplitude_reset, "RESET amplitude"))
        tol = float(self.tolerance_rel)
        if not 0 < tol < 0.5:
            raise CircuitnnError(f"write-verify tolerance must be in (0, 0.5) of the level "
                                 f"spacing, got {tol:g}")
        object.__setattr__(self, "tolerance_rel", tol)
        if self.scheme not in SCHEMES:
            raise CircuitnnError(f"scheme must be one of {', '.join(SCHEMES)}, got "
                                 f"{self.scheme!r}")
        if self.source not in SOURCES:
            raise CircuitnnError(f"source must be one of {', '.join(SOURCES)}, got "
                                 f"{self.source!r}")

    def window(self, levels: int = REF.hardware.device_levels) -> Window:
        return Window(self.g_window[0], self.g_window[1], levels)

    def gates(self) -> tuple[float, ...]:
        """SET gate voltage of each rung (one rung: the fixed scheme)."""
        n = RUNGS if self.scheme == "incremental" else 1
        return tuple(round(min(self.gate_set + k * GATE_STEP, GATE_MAX), 6) for k in range(n))

    def reset_amplitudes(self, first: float) -> tuple[float, ...]:
        """RESET amplitude of each rung, from the first rung's `first` (V)."""
        n = RUNGS if self.scheme == "incremental" else 1
        return tuple(round(min(first + k * AMPLITUDE_STEP, GATE_MAX), 6) for k in range(n))

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON (the report's keys, without the source)."""
        out = asdict(self)
        out.pop("source")
        out["g_window"] = list(self.g_window)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, **self.settings()}

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str | None = None) -> OperatingChoice:
        """Back from `to_json` (or a card's `operating.chosen`); anything malformed refused."""
        if not isinstance(obj, dict):
            raise CircuitnnError(f"an operating point must be a JSON object, got {obj!r}")
        keys = {"v_read", "g_window", "gate_set", "amplitude_reset", "tolerance_rel", "scheme"}
        missing = sorted(keys - set(obj))
        if missing:
            raise CircuitnnError(f"operating point misses {missing}")
        return cls(**{k: obj[k] for k in keys}, source=source or obj.get("source", "given"))


def reference_choice(card: ModelCard) -> OperatingChoice | None:
    """The reference preset's operating point when `card` has the built-in card's parameters
    (the Yao et al. 2020 system's device class), else None."""
    from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR
    from circuitnn.devices.operating import parameters_hash

    builtin = ModelCard.load(DEVICE_MODELS_DIR / BUILTIN_CARD)
    if card.model != builtin.model or parameters_hash(card) != parameters_hash(builtin):
        return None
    window = (REF.choices.g_min, REF.choices.g_max)
    unit = (window[1] - window[0]) / (REF.hardware.device_levels - 1)
    return OperatingChoice(REF.hardware.v_read, window, REF.choices.set_gate, None,
                           round(REF.choices.write_tolerance / unit, 6), "fixed", "given")


def carried_choice(card: ModelCard) -> OperatingChoice | None:
    """The operating point a card carries (`operating.chosen`) or the reference preset attaches
    to its parameters; None when neither."""
    chosen = card.operating.get("chosen") if isinstance(card.operating, dict) else None
    if chosen is not None:
        return OperatingChoice.from_json(chosen, "given")
    return reference_choice(card)


def with_choice(card: ModelCard, choice: OperatingChoice) -> ModelCard:
    """A copy of the card that carries `choice` (`operating.chosen`): loading it gives the
    point as "given", so a later run skips the search."""
    out = replace(card, operating=dict(card.operating))
    out.operating["chosen"] = choice.settings()
    return out


def resolve(card: ModelCard, rule: tuple[float, tuple[float, float] | None], mode: str | None,
            given: dict[str, Any]) -> OperatingChoice:
    """The operating point of `card` without a search: mode "rule" takes the rules (`rule` =
    (safe v_read, default window) of `circuitnn.devices.operating`), mode None what the card
    carries, else the rules; then each setting in `given` (not None) overrides its axis and
    makes the source "given"."""
    if mode not in (None, *MODES):
        raise CircuitnnError(f"operating point must be one of {', '.join(MODES)}, got {mode!r}")
    carried = carried_choice(card) if mode is None else None
    if carried is None:
        v_read, window = rule
        if window is None:
            raise CircuitnnError(f"the programmable window is empty at v_read = {v_read:g} V")
        carried = OperatingChoice(v_read, window, source="rule")
    over = {k: v for k, v in given.items() if v is not None}
    return replace(carried, **over, source="given") if over else carried

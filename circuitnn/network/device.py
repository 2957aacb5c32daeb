"""The device a network is built from: one memristor for every cell, read and programmed alike.

`ArrayDevice` is what the network, transfer and hybrid stages need of a device
(`circuitnn.devices.DeviceProfile`: an I-V compact card with its operating point, plus its
programming behaviour), with the window's number of levels:
- `choice`: the operating point (`circuitnn.devices.choice.OperatingChoice`: read voltage,
  window, SET gate, RESET amplitude, write-verify tolerance, scheme) and where it comes from;
- `tile_card`: the I-V card of the cells for circuit reads (None = ohmic cells of exactly G);
- `v_read`, `window`: the operating point's read voltage and window; the window holds the
  conductances of cells as a verify read sees them (device, access transistor);
- `device_window`: the devices' own conductances at the window's ends (a 1T1R cell reads lower
  than its device: `circuitnn.tile.verify.verify_reads` of a lone cell without wires);
- `pulse_model`: the pulse-update law mapped onto the device window (`programming_laws` adds the
  device-to-device variation scale), from a pulse card or derived from the I-V card itself at
  the operating point's SET gate and RESET amplitude; with the incremental scheme one law per
  rung of the ramps (`ramp_models`);
- `read_range`: the conductances any programmed cell is read within: the device window widened
  by READ_MARGIN each way (device-to-device bounds and stuck cells fall outside it), inside what
  the card holds; circuit reads (and the surrogate's calibration) cover it;
- `summary`: the report's `device` entry (card files with sha256, pulse source, v_read, window,
  operating point).

The operating point of a card comes from one rule (`circuitnn.devices.choice.resolve`), decided
by the card's parameters, never by its path: the built-in Stanford-PKU HfOx card gets the
reference's (0.2 V, 6-24 uS) from the preset, so a byte copy of it gets the same. Without a
pulse card the pulse law is derived from the I-V card (`circuitnn fit-pulse --from-card`): one
chip is one device.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, load_device
from circuitnn.devices.card import ModelCard
from circuitnn.devices.choice import OperatingChoice, Window, resolve
from circuitnn.devices.operating import READ_MARGIN as V_READ_MARGIN
from circuitnn.devices.operating import operating_point, reachable_range, with_operating_point
from circuitnn.devices.profile import DeviceProfile, load_pulse_card
from circuitnn.devices.pulse import PulseModel, scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.io import file_sha256
from circuitnn.reference import REF
from circuitnn.tile.spec import TileSpec, Transistor
from circuitnn.tile.verify import verify_reads

BUILTIN_PATH = DEVICE_MODELS_DIR / BUILTIN_CARD
TAOX_PULSE_CARD = DEVICE_MODELS_DIR / "taox-pulse.json"  # measured TaOx ramps (ohmic cells)
READ_MARGIN = 1.25  # read_range = [g_min / 1.25, g_max * 1.25] inside the card's range
#: stuck-at-low and stuck-at-high fractions: the reference preset's yield, half each way
STUCK = (0.5 * (1 - REF.choices.cell_yield), 0.5 * (1 - REF.choices.cell_yield))
VARIATION_KEYS = ("device_spread", "read_noise", "stuck_low", "stuck_high")
SETTINGS = ("v_read", "g_window", "gate_set", "amplitude_reset", "tolerance_rel", "scheme")


@dataclass(frozen=True)
class ArrayDevice:
    """The device of every cell: operating point, I-V card for reads, window, pulse laws."""

    tile_card: ModelCard | None
    v_read: float
    window: Window
    pulse_model: PulseModel
    read_range: tuple[float, float]
    thresholds: tuple[float, float]  # V, (positive, negative) switching thresholds
    summary: dict[str, Any]
    choice: OperatingChoice
    device_window: tuple[float, float]
    ramp_models: tuple[PulseModel, ...] = ()  # rungs 1.. of the incremental scheme
    stuck: tuple[float, float] = STUCK  # fractions of cells stuck at the low, the high bound
    read_noise_rel: float = 0.0  # relative read noise of every cell, per read (`Variation`)

    @property
    def read_noise(self) -> tuple[float, float]:
        """(absolute in S, relative) standard deviation of one cell's conductance in one read:
        the pulse law's level noise (read-to-read fluctuation measured in pulse data) and the
        relative read noise."""
        return self.programming_model().sigma_level, self.read_noise_rel

    def programming_model(self, variation_scale: float = 1.0) -> PulseModel:
        """The pulse law on the device window, device-to-device spreads x `variation_scale`."""
        return self.programming_laws(variation_scale)[0]

    def programming_laws(self, variation_scale: float = 1.0) -> list[PulseModel]:
        """One law per rung of the scheme (one: fixed pulses), on the device window."""
        lo, hi = self.device_window
        return [scale_model(m, lo, hi, variation_scale)
                for m in (self.pulse_model, *self.ramp_models)]

    @property
    def tolerance(self) -> float:
        """Write-verify tolerance (S): the operating point's fraction of the level spacing."""
        return self.choice.tolerance_rel * self.window.unit

    @property
    def digest(self) -> str:
        """A short hash of everything that defines the device (for checkpoint keys)."""
        text = json.dumps([self.summary, self.window.levels, self.read_range], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cell_reads(card: ModelCard, v_read: float, g_device: Any) -> np.ndarray:
    """What a lone 1T1R cell (default transistor and read gate, no wires) reads (S) when its
    device reads `g_device` (S) on its own (`circuitnn.tile.verify.verify_reads`)."""
    g = np.atleast_1d(np.asarray(g_device, float))
    spec = TileSpec(conductance=g[None, :], device=with_operating_point(card), v_read=v_read,
                    r_row=0.0, r_col=0.0)
    return verify_reads(spec)[0]


def cell_window(card: ModelCard, v_read: float, window: tuple[float, float]
                ) -> tuple[float, float]:
    """The device conductances (S) whose lone 1T1R cell reads the window's ends (`cell_reads`);
    refused when the device cannot reach them."""
    dev = load_device(with_operating_point(card))
    lo, hi = sorted(float(x) for x in np.abs(dev.conductance(np.stack(dev.bounds()), v_read)))
    grid = np.geomspace(lo * 1.0001, hi * 0.9999, 400)
    seen = cell_reads(card, v_read, grid)
    if window[1] > seen.max() * (1 - 1e-6):
        raise CircuitnnError(f"window [{window[0] * 1e6:.4g}, {window[1] * 1e6:.4g}] uS is "
                             f"outside what the device reaches in its cell at v_read = "
                             f"{v_read:g} V (a cell reads at most {seen.max() * 1e6:.4g} uS)")
    out = np.interp(window, seen, grid)
    return float(out[0]), float(out[1])


def rule_window(card: ModelCard, v_read: float, window: tuple[float, float] | None
                ) -> tuple[float, float] | None:
    """The default rule's window (`circuitnn.devices.operating`, of the device alone) as its
    lone 1T1R cell reads it: the window of the rule's operating point."""
    if window is None:
        return None
    lo, hi = cell_reads(card, v_read, window)
    return float(lo), float(hi)


def check_read_voltage(card: ModelCard, v_read: float, where: str) -> None:
    """Refuse a read voltage above the safe limit (`circuitnn.devices.operating`: READ_MARGIN
    x the smaller switching threshold)."""
    thresholds = operating_point(card, where=where).thresholds
    safe = V_READ_MARGIN * min(thresholds)
    if v_read > safe * (1 + 1e-9):
        raise CircuitnnError(f"v_read = {v_read:g} V is above the safe limit {safe:.4g} V "
                             f"({V_READ_MARGIN:g} x the switching threshold "
                             f"{min(thresholds):.4g} V)")


def check_choice(choice: OperatingChoice, card: ModelCard, where: str) -> dict[str, Any]:
    """Refuse what the device or its transistor cannot take; returns the operating record."""
    vto = Transistor().vto
    if choice.gate_set <= vto:
        raise CircuitnnError(f"SET gate voltage {choice.gate_set:g} V leaves the access "
                             f"transistor off (threshold {vto:g} V)")
    check_read_voltage(card, choice.v_read, where)
    op = operating_point(card, v_read=choice.v_read, window=choice.g_window, where=where)
    return {"thresholds": op.thresholds, "g_range": op.g_range}


def device_windows(card: ModelCard, choice: OperatingChoice, where: str
                   ) -> tuple[tuple[float, float], tuple[float, float]]:
    """(device window, read range) of an operating point, in S (module doc), after refusing
    what the device or its transistor cannot take (fast: no pulse simulated)."""
    check = check_choice(choice, card, where)
    dev_window = cell_window(card, choice.v_read, choice.g_window)
    reach = reachable_range(card, choice.v_read, check["thresholds"])
    if dev_window[0] < reach[0] * (1 - 1e-6) or dev_window[1] > reach[1] * (1 + 1e-6):
        raise CircuitnnError(
            f"window [{choice.g_window[0] * 1e6:.4g}, {choice.g_window[1] * 1e6:.4g}] uS needs "
            f"devices at [{dev_window[0] * 1e6:.4g}, {dev_window[1] * 1e6:.4g}] uS, outside "
            f"what {where} reaches at v_read = {choice.v_read:g} V "
            f"([{reach[0] * 1e6:.4g}, {reach[1] * 1e6:.4g}] uS)")
    lo, hi = check["g_range"]
    return dev_window, (max(lo * 1.001, dev_window[0] / READ_MARGIN),
                        min(hi * 0.999, dev_window[1] * READ_MARGIN))


def resolve_device(iv_card: str | os.PathLike | None, mode: str | None = None,
                   given: dict[str, Any] | None = None, choice: OperatingChoice | None = None
                   ) -> tuple[Path, OperatingChoice, tuple[float, float], tuple[float, float]]:
    """(card path, operating point, device window, read range) of an I-V card (None: the
    built-in one) by the one rule (`circuitnn.devices.choice.resolve`, module doc), `given`
    settings overriding their axes, or `choice` as it is; checked, no pulse simulated. Used by
    every command that reads a device (`device check`, `fit-pulse --from-card`, the chain)."""
    path = Path(iv_card) if iv_card is not None else BUILTIN_PATH
    if not path.is_file():
        raise CircuitnnError(f"I-V card not found: {path}")
    card = with_operating_point(ModelCard.load(path), str(path))
    if choice is None:
        given = {k: v for k, v in (given or {}).items() if v is not None}
        v_read = given.get("v_read")
        if v_read is not None:
            check_read_voltage(card, v_read, path.name)
        op = operating_point(card, v_read=v_read, where=str(path))
        choice = resolve(card, (op.v_read, rule_window(card, op.v_read, op.window)), mode,
                         given)
    dev_window, read_range = device_windows(card, choice, path.name)
    return path, choice, dev_window, read_range


def array_device(iv_card: str | os.PathLike | None = None,
                 pulse_card: str | os.PathLike | None = None,
                 g_window: tuple[float, float] | None = None, v_read: float | None = None,
                 levels: int = REF.hardware.device_levels, mode: str | None = None,
                 settings: dict[str, Any] | None = None,
                 choice: OperatingChoice | None = None,
                 accept_read_error: bool = False,
                 variation: dict[str, Any] | None = None) -> ArrayDevice:
    """The device from card files, checked here (before any long work).

    iv_card: an I-V card (JSON), None for the built-in HfOx card, or "ohmic" (cells of exactly
    G; then a pulse card is needed, default the measured TaOx card). pulse_card: a
    `pulse-update` card; None derives the law from the I-V card. The operating point: `choice`
    as it is (a search's), else `circuitnn.devices.choice.resolve` with `mode` (None: what the
    card carries, else the rules; "rule": the rules) and the given g_window (S), v_read and
    `settings` (gate_set, amplitude_reset, tolerance_rel, scheme) overriding their axes.
    The I-V card is compared with its measured data at v_read and refused when off by more
    than 0.5 decade, unless `accept_read_error` (`circuitnn.fitting.readcheck`; the summary's
    `read_check` says which). variation: the user's `VARIATION_KEYS` (`device_variation`).
    """
    from circuitnn.fitting.readcheck import require_read_match

    options = check_variation(variation)
    given = dict(settings or {})
    given.update(v_read=v_read, g_window=None if g_window is None else tuple(g_window))
    if iv_card == "ohmic":
        return _ohmic(pulse_card, g_window, v_read, levels, given, options)
    path, choice, dev_window, read_range = resolve_device(iv_card, mode, given, choice)
    profile = DeviceProfile.load(path, pulse_card, v_read=choice.v_read, window=dev_window)
    summary = profile.summary()
    summary["read_check"] = require_read_match(profile.iv_card, profile.v_read, str(path),
                                               accept_read_error)
    summary["g_window"] = list(choice.g_window)
    summary["device_window"] = list(dev_window)
    summary["operating_point"] = {**choice.to_json(), "candidates": []}
    ramps: tuple[PulseModel, ...] = ()
    if profile.pulse is not None:
        pulse = profile.pulse
    else:
        pulse, summary["pulse"], ramps = derived_pulse_law(profile, choice)
    pulse, ramps, stuck, read_rel, summary["variation"] = device_variation(
        pulse, ramps, options, profile.iv_card, summary["pulse"].get("device_to_device"))
    return ArrayDevice(profile.iv_card, profile.v_read, choice.window(levels), pulse,
                       read_range, profile.operating.thresholds, summary, choice, dev_window,
                       ramps, stuck, read_rel)


def _fraction(value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CircuitnnError(f"{what} must be a number, got {value!r}") from None
    if not (math.isfinite(x) and 0 <= x < 1):
        raise CircuitnnError(f"{what} must be in [0, 1), got {value!r}")
    return x


def check_variation(options: dict[str, Any] | None) -> dict[str, float | None]:
    """The user's variation options (`VARIATION_KEYS`, None: not given) checked: a spread or
    read noise that is negative or not finite, or stuck fractions that leave no cell, refused."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(VARIATION_KEYS))
    if unknown:
        raise CircuitnnError(f"unknown variation options {unknown}; known: "
                             f"{', '.join(VARIATION_KEYS)}")
    out = {k: None if options.get(k) is None else _fraction(options[k], k.replace("_", " "))
           for k in VARIATION_KEYS}
    low, high = (out[k] if out[k] is not None else d for k, d in
                 zip(("stuck_low", "stuck_high"), STUCK, strict=True))
    if low + high >= 1:
        raise CircuitnnError(f"stuck fractions {low:g} + {high:g} leave no working cell")
    return out


def device_variation(law: PulseModel, ramps: tuple[PulseModel, ...], options: dict[str, Any],
                     card: ModelCard | None, measured: dict[str, Any] | None
                     ) -> tuple[PulseModel, tuple[PulseModel, ...], tuple[float, float], float,
                                dict[str, Any]]:
    """What differs between a chip's cells and between its reads, and the report's
    `device.variation` record:
    - device-to-device, the law's `d2d` (`circuitnn.devices.pulse.sample_devices`): "given" by
      `device_spread` (the standard deviation of each cell's bounds as a fraction of the window,
      and of the logarithm of its step scales); else "measured": the spread of the devices the
      I-V card was fitted to (`circuitnn.fitting.derive`, `measured`) or a pulse card's
      ramp-to-ramp spread; else "none";
    - stuck cells: `stuck_low`, `stuck_high` fractions (default: the reference preset's yield,
      half each way), which ignore every pulse;
    - read noise, per cell and read: the law's level noise (absolute, measured read-to-read in
      pulse data) and `read_noise` (relative; default the I-V card's
      variation.read_noise.sigma_rel, else 0)."""
    spread = options.get("device_spread")
    record: dict[str, Any]
    if spread is not None:
        span = law.g_max - law.g_min
        d2d = {"g_min_std": spread * span, "g_max_std": spread * span,
               "scale_p_std": spread, "scale_d_std": spread}
        law = replace(law, d2d=d2d)
        ramps = tuple(replace(m, d2d=d2d) for m in ramps)
        record = {"source": "given", "devices": None, "device_spread": spread}
    elif measured is not None and measured.get("source") == "measured":
        record = {k: measured[k] for k in ("source", "devices", "simulated", "basis",
                                           "distribution", "members") if k in measured}
    elif any(law.d2d.values()):
        record = {"source": "measured", "devices": None,
                  "basis": "the pulse card's ramp-to-ramp spread (its device_to_device record)"}
    else:
        record = {"source": "none", "devices": 1}
    span = law.g_max - law.g_min
    record["d2d"] = {"g_min_std_rel": law.d2d["g_min_std"] / span,
                     "g_max_std_rel": law.d2d["g_max_std"] / span,
                     "scale_p_std_log": law.d2d["scale_p_std"],
                     "scale_d_std_log": law.d2d["scale_d_std"]}
    stuck = tuple(options[k] if options.get(k) is not None else d
                  for k, d in zip(("stuck_low", "stuck_high"), STUCK, strict=True))
    read_rel, read_source = options.get("read_noise"), "option"
    if read_rel is None:
        rec = card.variation.get("read_noise") if card is not None and isinstance(
            card.variation, dict) else None
        read_rel, read_source = ((_fraction(rec.get("sigma_rel"), "card read_noise.sigma_rel"),
                                  "card") if isinstance(rec, dict) else (0.0, "none"))
    record["stuck"] = {"low": stuck[0], "high": stuck[1]}
    record["read_noise"] = {"relative": read_rel, "relative_source": read_source,
                            "absolute_S": law.sigma_level,
                            "absolute_source": "the pulse law's level noise"}
    return law, ramps, stuck, read_rel, record


def derived_pulse_law(profile: DeviceProfile, choice: OperatingChoice
                      ) -> tuple[PulseModel, dict[str, Any], tuple[PulseModel, ...]]:
    """The pulse law of a device without a pulse card, derived from its I-V card in its 1T1R
    cell (`circuitnn.fitting.derive`, cached per setting) at the operating point's SET gate and
    RESET amplitude, mapped onto the device window; the report's `pulse` entry; and, for the
    incremental scheme, the laws of the ramps' later rungs (the first rung's SET amplitude and
    width, each rung's gate and RESET amplitude; the ramp ends at the first rung whose pulses
    cross the window too coarsely to derive)."""
    from tqdm import tqdm

    from circuitnn.fitting.derive import DeriveSettings, derived_pulse

    base = DeriveSettings(gate_set=choice.gate_set, amplitude_reset=choice.amplitude_reset)
    with tqdm(desc=f"pulse law of {profile.iv_path.name}", unit="pulse", disable=None,
              leave=False) as bar:
        model, report = derived_pulse(profile, base, progress=bar.update)
        gates = choice.gates()
        resets = choice.reset_amplitudes(report["pulses"]["reset"]["amplitude"])
        ramps, rungs = [], [{"gate_set": gates[0], "amplitude_reset": resets[0]}]
        for gate, amp in zip(gates[1:], resets[1:], strict=True):
            rung = DeriveSettings(amplitude_set=report["pulses"]["set"]["amplitude"],
                                  width=report["settings"]["width"], gate_set=gate,
                                  amplitude_reset=amp, gate_reset=base.gate_reset)
            try:
                law, _ = derived_pulse(profile, rung, check_ngspice=False,
                                       progress=bar.update)
            except CircuitnnError as err:
                rungs.append({"gate_set": gate, "amplitude_reset": amp, "stopped": str(err)})
                break
            ramps.append(law)
            rungs.append({"gate_set": gate, "amplitude_reset": amp})
    g_min, g_max = profile.window
    keep = ("source", "path", "sha256", "settings", "pulses", "amplitude_rule", "width_rule",
            "ngspice_check", "noise_source", "device_to_device", "cached")
    out = {k: report[k] for k in keep if k in report}
    out["scheme"] = {"name": choice.scheme, "rungs": rungs}
    return (scale_model(model, g_min, g_max), out,
            tuple(scale_model(m, g_min, g_max) for m in ramps))


def _ohmic(pulse_card: str | os.PathLike | None, g_window: tuple[float, float] | None,
           v_read: float | None, levels: int, given: dict[str, Any],
           options: dict[str, Any]) -> ArrayDevice:
    """Ohmic cells (no I-V card): the window as given, a pulse card's law mapped onto it."""
    g_min, g_max = g_window or (REF.choices.g_min, REF.choices.g_max)
    v_read = REF.hardware.v_read if v_read is None else float(v_read)
    if not 0 < v_read <= 1.0:
        raise CircuitnnError(f"read voltage must be in (0, 1] V, got {v_read}")
    over = {k: v for k, v in given.items() if v is not None and k not in ("v_read", "g_window")}
    choice = replace(OperatingChoice(v_read, (g_min, g_max), source="given"), **over)
    path = Path(pulse_card) if pulse_card is not None else TAOX_PULSE_CARD
    pulse = scale_model(load_pulse_card(path)[1], g_min, g_max)
    summary = {"iv_card": None, "pulse": {"source": "card", "path": str(path),
                                          "sha256": file_sha256(path)},
               "v_read": v_read, "g_window": [g_min, g_max],
               "operating_point": {**choice.to_json(), "candidates": []}}
    pulse, _, stuck, read_rel, summary["variation"] = device_variation(pulse, (), options,
                                                                        None, None)
    return ArrayDevice(None, v_read, choice.window(levels), pulse,
                       (g_min / READ_MARGIN, g_max * READ_MARGIN), (math.inf, math.inf), summary,
                       choice, (g_min, g_max), (), stuck, read_rel)

"""The device a network is built from: one memristor for every cell, read and programmed alike.

`ArrayDevice` is what the network, transfer and hybrid stages need of a device
(`circuitnn.devices.DeviceProfile`: an I-V compact card with its operating point, plus its
programming behaviour), with the window's number of levels:
- `tile_card`: the I-V card of the cells for circuit reads (None = ohmic cells of exactly G);
- `v_read`: the card's safe read voltage (`circuitnn.devices.operating`), or as given;
- `window`: the programmable conductance window at v_read and the number of device states;
- `pulse_model`: the pulse-update law mapped onto the window (`programming_model` adds the
  device-to-device variation scale), from a pulse card or derived from the I-V card itself;
- `read_range`: the conductances any programmed cell is read within: the window widened by
  READ_MARGIN each way (device-to-device bounds and stuck cells fall outside the window), inside
  what the card holds; circuit reads (and the surrogate's calibration) cover it;
- `summary`: the report's `device` entry (card files with sha256, pulse source, v_read, window).

Defaults: the built-in Stanford-PKU HfOx card (the reference's device class) in the reference's
window (REF.choices: 6-24 uS, an open parameter of the paper); any other card in its own default
window (`circuitnn.devices.operating`). Without a pulse card the pulse law is derived from the
I-V card (`circuitnn fit-pulse --from-card`): one chip is one device.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR
from circuitnn.devices.card import ModelCard
from circuitnn.devices.profile import DeviceProfile, load_pulse_card
from circuitnn.devices.pulse import PulseModel, scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.io import file_sha256
from circuitnn.network.mapping import Window
from circuitnn.reference import REF

BUILTIN_PATH = DEVICE_MODELS_DIR / BUILTIN_CARD
TAOX_PULSE_CARD = DEVICE_MODELS_DIR / "taox-pulse.json"  # measured TaOx ramps (ohmic cells)
READ_MARGIN = 1.25  # read_range = [g_min / 1.25, g_max * 1.25] inside the card's range


@dataclass(frozen=True)
class ArrayDevice:
    """The device of every cell: I-V card for reads, read voltage, window, pulse law."""

    tile_card: ModelCard | None
    v_read: float
    window: Window
    pulse_model: PulseModel
    read_range: tuple[float, float]
    thresholds: tuple[float, float]  # V, (positive, negative) switching thresholds
    summary: dict[str, Any]

    def programming_model(self, variation_scale: float = 1.0) -> PulseModel:
        """The pulse law on the window, device-to-device spreads x `variation_scale`."""
        return scale_model(self.pulse_model, self.window.g_min, self.window.g_max,
                           variation_scale)

    @property
    def digest(self) -> str:
        """A short hash of everything that defines the device (for checkpoint keys)."""
        text = json.dumps([self.summary, self.window.levels, self.read_range], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def array_device(iv_card: str | os.PathLike | None = None,
                 pulse_card: str | os.PathLike | None = None,
                 g_window: tuple[float, float] | None = None, v_read: float | None = None,
                 levels: int = REF.hardware.device_levels,
                 accept_read_error: bool = False) -> ArrayDevice:
    """The device from card files, checked here (before any long work).

    iv_card: an I-V card (JSON), None for the built-in HfOx card, or "ohmic" (cells of exactly
    G; then a pulse card is needed, default the measured TaOx card). pulse_card: a
    `pulse-update` card; None derives the law from the I-V card. g_window: (g_min, g_max) in S
    at v_read; None: the reference's window for the built-in card, else the card's default.
    The I-V card is compared with its measured data at v_read and refused when off by more
    than 0.5 decade, unless `accept_read_error` (`circuitnn.fitting.readcheck`; the summary's
    `read_check` says which).
    """
    from circuitnn.fitting.readcheck import require_read_match

    if iv_card == "ohmic":
        return _ohmic(pulse_card, g_window, v_read, levels)
    path = Path(iv_card) if iv_card is not None else BUILTIN_PATH
    if not path.is_file():
        raise CircuitnnError(f"I-V card not found: {path}")
    if g_window is None and iv_card is None:
        g_window = (REF.choices.g_min, REF.choices.g_max)
    profile = DeviceProfile.load(path, pulse_card, v_read=v_read, window=g_window)
    summary = profile.summary()
    summary["read_check"] = require_read_match(profile.iv_card, profile.v_read, str(path),
                                               accept_read_error)
    if profile.pulse is not None:
        pulse = profile.pulse
    else:
        pulse, summary["pulse"] = derived_pulse_law(profile)
    g_min, g_max = profile.window
    lo, hi = profile.operating.g_range
    read_range = (max(lo * 1.001, g_min / READ_MARGIN), min(hi * 0.999, g_max * READ_MARGIN))
    return ArrayDevice(profile.iv_card, profile.v_read, Window(g_min, g_max, levels), pulse,
                       read_range, profile.operating.thresholds, summary)


def derived_pulse_law(profile: DeviceProfile) -> tuple[PulseModel, dict[str, Any]]:
    """The pulse law of a device without a pulse card, derived from its I-V card in its 1T1R
    cell (`circuitnn.fitting.derive`, cached), mapped onto the window; and the report's
    `pulse` entry."""
    from tqdm import tqdm

    from circuitnn.fitting.derive import derived_pulse

    with tqdm(desc=f"pulse law of {profile.iv_path.name}", unit="pulse", disable=None,
              leave=False) as bar:
        model, report = derived_pulse(profile, progress=bar.update)
    g_min, g_max = profile.window
    keep = ("source", "path", "sha256", "settings", "pulses", "amplitude_rule", "width_rule",
            "ngspice_check", "noise_source", "cached")
    return scale_model(model, g_min, g_max), {k: report[k] for k in keep if k in report}


def _ohmic(pulse_card: str | os.PathLike | None, g_window: tuple[float, float] | None,
           v_read: float | None, levels: int) -> ArrayDevice:
    """Ohmic cells (no I-V card): the window as given, a pulse card's law mapped onto it."""
    g_min, g_max = g_window or (REF.choices.g_min, REF.choices.g_max)
    window = Window(g_min, g_max, levels)
    v_read = REF.hardware.v_read if v_read is None else float(v_read)
    if not 0 < v_read <= 1.0:
        raise CircuitnnError(f"read voltage must be in (0, 1] V, got {v_read}")
    path = Path(pulse_card) if pulse_card is not None else TAOX_PULSE_CARD
    pulse = scale_model(load_pulse_card(path)[1], g_min, g_max)
    summary = {"iv_card": None, "pulse": {"source": "card", "path": str(path),
                                          "sha256": file_sha256(path)},
               "v_read": v_read, "g_window": [g_min, g_max]}
    return ArrayDevice(None, v_read, window, pulse, (g_min / READ_MARGIN, g_max * READ_MARGIN),
                       (math.inf, math.inf), summary)

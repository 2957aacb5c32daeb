"""The check of an exported card (`circuitnn export --check`): the exported file simulated in a
second simulator against the project's own simulation of the card, on the card's waveforms.

Waveforms: the card's own measured drives (`circuitnn.fitting.data.card_sweeps`), each through
the series element of its measurement (`series_element`), as the fit simulated them; or, for a
card without measured data (published parameters), a sine across the device (the card records
no series resistance then), of amplitude SINE_THRESHOLDS x its larger switching threshold
(`circuitnn.devices.operating`; 1 V when nothing switches) and period SINE_TRAVERSALS x the time
in which the state would cross its range at the rate it has at the peak voltage from mid-range.

Each waveform is compared over one period that starts from the periodic steady state: the
project's simulator runs the fit's warm-up periods from the middle of the state range, and its
state at the start of the last period is the initial state (`s0=`) of both simulations. (From
mid-range a device may first snap within picoseconds, which says nothing about the export and
which ngspice's time-step control may not follow; `circuitnn.fitting.iv.ngspice_check` starts
likewise.) The project's simulation runs at the fits' final tolerance (`FitSettings.rtol_check`).
Agreement: NRMSE = RMS(I_export - I_project) / (max I_project - min I_project) per waveform;
the check reports the largest and holds it to TARGETS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.operating import switching_thresholds
from circuitnn.devices.series import ExprElement
from circuitnn.fitting.data import card_sweeps
from circuitnn.fitting.iv import FitSettings, nrmse, periodic_drive, series_element
from circuitnn.spice.export import FORMATS, exportable, initial_state, simulate_export

#: largest NRMSE against the project's simulation, per format (issue 28)
TARGETS = {"spice": 1e-2, "verilog-a": 1e-3}
#: the sine drive of a card without measured data (see the module doc)
SINE_THRESHOLDS = 1.5
SINE_TRAVERSALS = 4.0
SINE_SAMPLES = 200


@dataclass
class Drive:
    """One compared period: sample times, applied volts, series element, initial state."""

    name: str
    t: np.ndarray
    v: np.ndarray
    series: ExprElement | None
    s0: float


@dataclass
class ExportCheck:
    """The outcome: simulator, worst NRMSE, the waveforms (described), NRMSE per waveform."""

    simulator: str
    nrmse: float
    waveform: str
    target: float
    per_waveform: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.nrmse <= self.target

    def to_json(self) -> dict[str, object]:
        """The keys `circuitnn export --check --json` prints."""
        return {"simulator": self.simulator, "nrmse": self.nrmse, "waveform": self.waveform}


def sine(device: Device) -> tuple[float, float]:
    """(amplitude V, frequency Hz) of the sine drive of a card without measured data."""
    thresholds = [x for x in switching_thresholds(device) if math.isfinite(x) and x > 0]
    amp = SINE_THRESHOLDS * max(thresholds) if thresholds else 1.0
    lo, hi = (float(b) for b in device.bounds())
    mid = initial_state(device)
    rate = max(abs(float(device.rate(a, mid))) for a in (amp, -amp))
    if not (math.isfinite(rate) and rate > 0):
        return amp, 1.0
    return amp, rate / (hi - lo) / SINE_TRAVERSALS


def drives(card: ModelCard, device: Device, where: str = "card") -> tuple[list[Drive], str]:
    """The compared periods of a card, and their description (see the module doc)."""
    warmup = FitSettings().warmup_periods
    sweeps = card_sweeps(card, where)
    if sweeps:
        raw = [(s.name, *periodic_drive(s, warmup + 1), series_element(s), s.n) for s in sweeps]
        desc = (f"measured: {', '.join(s.name for s in sweeps)} (one period each, after "
                f"{warmup} warm-up periods)")
    else:
        amp, freq = sine(device)
        n = SINE_SAMPLES
        t = np.arange((warmup + 1) * n) / (n * freq)
        v = amp * np.sin(2 * np.pi * freq * t)
        name = f"sine {amp:.4g} V {freq:.4g} Hz"
        raw = [(name, t, v, None, n)]
        desc = f"{name} across the device (one period, after {warmup} warm-up periods)"
    out = []
    for name, t, v, series, n in raw:
        trace = device.simulate(t, v, initial_state(device), series=series)
        out.append(Drive(name, t[-n:], v[-n:], series, float(trace.state[-n])))
    return out, desc


def check_export(card: ModelCard, text: str, kind: str, name: str, where: str = "card",
                 timeout: float = 300) -> ExportCheck:
    """Simulate the exported `text` (format `kind`, subcircuit or module `name`) of `card` in
    its second simulator on the card's waveforms and compare with the project's simulation."""
    device = exportable(card, where)
    rtol = FitSettings().rtol_check
    todo, desc = drives(card, device, where)
    errors = {}
    for d in tqdm(todo, desc=f"check in {FORMATS[kind]}", unit="waveform", leave=False):
        ref = device.simulate(d.t, d.v, d.s0, series=d.series, rtol=rtol, atol=rtol * 1e-3)
        got = simulate_export(device, text, kind, name, d.t, d.v, d.s0, d.series, timeout)
        errors[d.name] = float(nrmse(got.i, ref.i))
    return ExportCheck(FORMATS[kind], max(errors.values()), desc, TARGETS[kind], errors)

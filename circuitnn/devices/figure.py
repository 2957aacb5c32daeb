"""One figure of a device as a chain uses it: its I-V (linear and log |I|) and its pulse response.

I-V: the card simulated (`Device.simulate`) on a triangular sweep of period SWEEP_PERIOD from 0 V
to +V_top, back through 0 V to -V_bottom and back, where each V is SWEEP_OVERDRIVE x the card's
switching threshold of that polarity (capped at SWEEP_MAX; or the programming pulses' amplitudes
when given: a steep device barely moves at 1.5 x threshold in a slow sweep), starting from the
lower state bound
and plotted over the second period (steady state). The read voltage and the window's conductance
lines I = G v (g_min, g_max) are marked. Pulse response: the mean conductance after each pulse of
the pulse law, SET from g_min and RESET from g_max.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.pulse import PulseModel
from circuitnn.io import save_figure

SWEEP_PERIOD = 1.0  # s
SWEEP_OVERDRIVE = 1.5
SWEEP_MAX = 3.0  # V
SWEEP_SAMPLES = 400  # per period


def sweep_amplitudes(thresholds: tuple[float, float]) -> tuple[float, float]:
    """(+V, -V) magnitudes of the sweep for (positive, negative) switching thresholds."""
    return tuple(min(SWEEP_MAX, SWEEP_OVERDRIVE * t) if math.isfinite(t) and t > 0 else SWEEP_MAX
                 for t in thresholds)  # type: ignore[return-value]


def device_figure(card: ModelCard, thresholds: tuple[float, float], v_read: float,
                  window: tuple[float, float], pulse: PulseModel | None, title: str,
                  path: str | Path, drive: tuple[float, float] | None = None) -> Path:
    """Draw the figure (module text) into `path` (PNG). `drive`: (+V, -V) magnitudes of the
    sweep instead of the threshold rule (e.g. the programming pulses' amplitudes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev = Device.from_card(card)
    up, down = sweep_amplitudes(thresholds) if drive is None else drive
    corners = np.array([0.0, up, 0.0, -down, 0.0])
    u = np.linspace(0, 4, SWEEP_SAMPLES + 1)
    v_one = np.interp(u, np.arange(5), corners)
    t = np.concatenate([u[:-1], u + 4]) * SWEEP_PERIOD / 4
    v = np.concatenate([v_one[:-1], v_one])
    tr = dev.simulate(t, v, s0=dev.bounds()[0])
    keep = slice(SWEEP_SAMPLES, None)
    vv, ii = tr.v_device[keep], tr.i[keep]

    fig, axes = plt.subplots(1, 3 if pulse is not None else 2, figsize=(13, 3.8))
    for ax, log in zip(axes[:2], (False, True), strict=True):
        ax.plot(vv, np.abs(ii) if log else ii, color="tab:blue", lw=1.2, label="card, I-V sweep")
        vg = np.linspace(-down, up, 50)
        for g, name in zip(window, ("g_min", "g_max"), strict=True):
            line = np.abs(g * vg) if log else g * vg
            ax.plot(vg, line, ls=":", lw=0.9, color="grey", label=f"window {name} "
                    f"({g * 1e6:.3g} uS)" if not log else None)
        ax.axvline(v_read, color="tab:green", lw=0.9, ls="--", label=f"v_read {v_read:g} V")
        ax.set_xlabel("device voltage (V)")
        ax.set_ylabel("|I| (A)" if log else "I (A)")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(max(np.abs(ii).max() * 1e-7, 1e-15), None)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"I-V, {SWEEP_PERIOD:g} s triangular sweep (linear)", fontsize=9)
    axes[1].set_title("I-V (log |I|)", fontsize=9)
    if pulse is not None:
        ax = axes[2]
        for sign, name, colour, start in ((1, "SET", "tab:red", pulse.g_min),
                                          (-1, "RESET", "tab:blue", pulse.g_max)):
            n = _pulses_to_show(pulse)
            g = pulse.ramp(start, n, sign)
            ax.plot(np.arange(len(g)), np.asarray(g) * 1e6, color=colour, lw=1.2, label=name)
        ax.set_xlabel("pulse number")
        ax.set_ylabel("conductance at v_read (uS)")
        ax.set_title("pulse response (mean law)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _pulses_to_show(model: PulseModel) -> int:
    from circuitnn.devices.pulse import pulse_response

    r = pulse_response(model)
    counts = [r[k]["pulses"] for k in ("set", "reset") if r[k]["pulses"]]
    return int(min(2000, 1.2 * max(counts))) if counts else 200

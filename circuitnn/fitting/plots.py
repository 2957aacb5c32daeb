"""Figures of I-V fits: measured vs fitted, linear I-V and log|I| vs V, one panel pair per sweep.

The log panel marks the points left out of the log error (at or below the sweep's noise floor,
drawn as a dotted line), the read region (the points of the read-region error, and the band
|V| <= read range when the x axis is the device voltage) with its error in the title; both
panels mark readings at the instrument's compliance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from circuitnn.io import save_figure


def iv_fit_figure(fit, path: str | Path) -> Path:
    """Save the measured-vs-fitted figure of an `IVFit` as PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(fit.sweeps)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.2 * n), squeeze=False)
    r = fit.read_range_v
    for row, (sweep, pred, mask, rmask) in enumerate(zip(fit.sweeps, fit.predicted,
                                                         fit.log_masks, fit.read_masks,
                                                         strict=True)):
        ax_lin, ax_log = axes[row]
        m = fit.per_sweep[sweep.name]
        v, i = sweep.v, sweep.i
        comp = sweep.at_compliance
        ax_lin.plot(v, i * 1e6, ".", ms=3, color="k", label="measured")
        ax_lin.plot(v, pred * 1e6, "-", lw=1.3, color="tab:red", label=f"{fit.model} (simulated)")
        if comp.any():
            ax_lin.plot(v[comp], i[comp] * 1e6, "s", ms=4, mfc="none", color="tab:orange",
                        label="at compliance")
        setup = []
        if sweep.series_resistance_ohm > 0:
            setup.append(f"through {sweep.series_resistance_ohm:g} ohm")
        if sweep.compliance_a is not None:
            setup.append(f"{sweep.compliance_a * 1e6:g} uA compliance")
        xlabel = f"applied V ({', '.join(setup)}) (V)" if setup else "V (V)"
        ax_lin.set_xlabel(xlabel)
        ax_lin.set_ylabel("I (uA)")
        spice = "" if m.nrmse_ngspice is None else f" (ngspice {m.nrmse_ngspice:.3f})"
        ax_lin.set_title(f"{sweep.name}: NRMSE {m.nrmse:.3f}{spice}", fontsize=9)
        ax_lin.legend(fontsize=7)
        a = np.abs(i)
        floor = max(float(a[a > 0].min()) / 10 if np.any(a > 0) else 1e-15, 1e-15)
        if sweep.series_resistance_ohm == 0:  # the x axis is the device voltage
            ax_log.axvspan(-r, r, color="tab:blue", alpha=0.08, lw=0)
        rest = mask & ~rmask
        ax_log.semilogy(v[rest], np.maximum(a[rest], floor), ".", ms=3, color="k",
                        label="measured (in log error)")
        ax_log.semilogy(v[rmask], np.maximum(a[rmask], floor), "o", ms=3, color="tab:blue",
                        label=f"read region |V| <= {r:.3g} V")
        if (~mask).any():
            ax_log.semilogy(v[~mask], np.maximum(a[~mask], floor), "x", ms=3, color="0.6",
                            label="at or below the noise floor")
        if sweep.noise_floor_a > 0:
            ax_log.axhline(sweep.noise_floor_a, color="0.6", lw=0.8, ls=":")
        if comp.any():
            ax_log.semilogy(v[comp], a[comp], "s", ms=4, mfc="none", color="tab:orange")
        ax_log.semilogy(v, np.maximum(np.abs(pred), floor), "-", lw=1.3, color="tab:red")
        ax_log.set_xlabel(xlabel)
        ax_log.set_ylabel("|I| (A)")
        ax_log.set_title(f"log error {m.log_error_decades:.2f} decades; read region "
                         f"{m.read_error_decades:.2f} decades", fontsize=9)
        ax_log.legend(fontsize=7)
    spice = "" if fit.nrmse_ngspice is None else f", ngspice NRMSE {fit.nrmse_ngspice:.3f}"
    fig.suptitle(f"{fit.model} fit to device {fit.device}: NRMSE {fit.nrmse:.3f}, log error "
                 f"{fit.log_error:.2f}, read region (|V| <= {r:.3g} V) {fit.read_error:.2f} "
                 f"decades{spice} (polarity {fit.polarity:+.0f})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)

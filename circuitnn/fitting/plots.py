"""Figures of I-V fits: measured vs fitted, linear I-V and log|I| vs V, one panel pair per sweep."""

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
    for row, (sweep, pred) in enumerate(zip(fit.sweeps, fit.predicted, strict=True)):
        ax_lin, ax_log = axes[row]
        v = sweep.v
        ax_lin.plot(v, sweep.i * 1e6, ".", ms=3, color="k", label="measured")
        ax_lin.plot(v, pred * 1e6, "-", lw=1.3, color="tab:red", label="fitted")
        ax_lin.set_xlabel("V (V)")
        ax_lin.set_ylabel("I (uA)")
        ax_lin.set_title(f"{sweep.name}: NRMSE {fit.nrmse_per_sweep[sweep.name]:.3f}",
                         fontsize=9)
        ax_lin.legend(fontsize=8)
        nonzero = np.abs(sweep.i)[np.abs(sweep.i) > 0]
        floor = max(float(nonzero.min()) / 10 if nonzero.size else 1e-15, 1e-15)
        ax_log.semilogy(v, np.maximum(np.abs(sweep.i), floor), ".", ms=3, color="k")
        ax_log.semilogy(v, np.maximum(np.abs(pred), floor), "-", lw=1.3, color="tab:red")
        ax_log.set_xlabel("V (V)")
        ax_log.set_ylabel("|I| (A)")
    fig.suptitle(f"{fit.model} fit to device {fit.device}: overall NRMSE {fit.nrmse:.3f} "
                 f"(polarity {fit.polarity:+.0f})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)

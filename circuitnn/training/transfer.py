"""Weight transfer: closed-loop write-verify programming of every cell with the pulse-update model.

This is the one array-level write-verify; `circuitnn.tile.program.write_verify_cell` is the
circuit-level version of one cell (each pulse an ngspice transient of the tile).

Device model: the pulse-update model of the `ArrayDevice` (`circuitnn.network.device`), mapped
into the array's conductance window there.

Programming loop (Yao et al. 2020 used closed-loop write-verify; details are this project's
choice): every device starts at its own (device-to-device varied) low bound, then up to
`max_pulses` times: read with the card's level noise; a cell whose read is within the tolerance
of its target is done (it is not pulsed or verified again); the others get one SET (read below
target) or RESET (above) pulse through the pulse model with its cycle-to-cycle noise. A
fraction 1 - yield of the cells is stuck (half at the device's low
bound, half at its high bound) and ignores pulses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from circuitnn.devices.pulse import PulseModel
from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure


@dataclass
class ProgramConfig:
    """Write-verify settings (tolerance in siemens; yield = fraction of working cells)."""

    tolerance: float = 0.5e-6
    max_pulses: int = 400
    cell_yield: float = 0.995
    variation_scale: float = 1.0  # multiplies the card's device-to-device spreads

    def check(self) -> None:
        """Raise CircuitnnError on impossible values."""
        if not self.tolerance > 0:
            raise CircuitnnError(f"write-verify tolerance must be > 0 S, got {self.tolerance}")
        if self.max_pulses < 1:
            raise CircuitnnError(f"pulse budget must be >= 1, got {self.max_pulses}")
        if not 0 < self.cell_yield <= 1:
            raise CircuitnnError(f"cell yield must be in (0, 1], got {self.cell_yield}")
        if self.variation_scale < 0:
            raise CircuitnnError(f"variation scale must be >= 0, got {self.variation_scale}")


@dataclass
class ProgramResult:
    """Programmed state of every cell and how it got there."""

    conductance: np.ndarray  # true state after programming (S)
    target: np.ndarray
    pulses: np.ndarray  # pulses applied per cell
    stuck: np.ndarray  # bool
    converged: np.ndarray  # bool: last verify read within tolerance
    devices: dict[str, np.ndarray]

    @property
    def error(self) -> np.ndarray:
        """Programmed minus target conductance (S)."""
        return self.conductance - self.target

    def summary(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """Error statistics (uS) and pulse counts over the cells in `mask` (default all)."""
        m = np.ones(self.target.shape, bool) if mask is None else mask
        e = self.error[m] * 1e6
        p = self.pulses[m]
        return {"n_cells": int(m.sum()), "error_mean_uS": float(e.mean()),
                "error_std_uS": float(e.std()), "error_abs_p95_uS": float(np.percentile(
                    np.abs(e), 95)), "error_abs_max_uS": float(np.abs(e).max()),
                "pulses_mean": float(p.mean()), "pulses_max": int(p.max()),
                "pulses_total": int(p.sum()), "stuck_cells": int(self.stuck[m].sum()),
                "not_converged": int((~self.converged[m]).sum())}


def write_verify(target: np.ndarray, model: PulseModel, rng: np.random.Generator,
                 config: ProgramConfig | None = None, progress=None) -> ProgramResult:
    """Program every cell of `target` (S, any shape) by write-verify; see the module text."""
    cfg = config or ProgramConfig()
    cfg.check()
    target = np.asarray(target, float)
    devices = model.sample_devices(target.shape, rng)
    devices["g_min"] = np.maximum(devices["g_min"], 0.1 * model.g_min)  # no negative bounds
    devices["g_max"] = np.maximum(devices["g_max"], devices["g_min"] + 0.05 * (
        model.g_max - model.g_min))
    g = devices["g_min"].copy()
    stuck = rng.random(target.shape) > cfg.cell_yield
    stuck_high = rng.random(target.shape) < 0.5
    g[stuck & stuck_high] = devices["g_max"][stuck & stuck_high]
    pulses = np.zeros(target.shape, np.int64)
    converged = np.zeros(target.shape, bool)
    flat_g, flat_t, flat_p = g.reshape(-1), target.reshape(-1), pulses.reshape(-1)
    flat_dev = {k: np.broadcast_to(v, target.shape).reshape(-1) for k, v in devices.items()}
    active = np.flatnonzero(~stuck.reshape(-1))  # cells still being programmed
    for _ in range(cfg.max_pulses):
        err = model.read(flat_g[active], rng) - flat_t[active]
        done = np.abs(err) <= cfg.tolerance
        converged.reshape(-1)[active[done]] = True
        active, err = active[~done], err[~done]
        if active.size == 0:
            break
        direction = np.where(err < 0, 1, -1)
        flat_g[active] = model.step(flat_g[active], direction, rng,
                                    {k: v[active] for k, v in flat_dev.items()})
        flat_p[active] += 1
        if progress is not None:
            progress(int(active.size))
    else:  # the budget is spent: a last verify read of the cells still programming
        last = np.abs(model.read(flat_g[active], rng) - flat_t[active]) <= cfg.tolerance
        converged.reshape(-1)[active[last]] = True
    converged |= stuck & (np.abs(g - target) <= cfg.tolerance)
    return ProgramResult(g, target, pulses, stuck, converged, devices)


def update_pulses(g: np.ndarray, pulses: np.ndarray, model: PulseModel,
                  devices: dict[str, np.ndarray], stuck: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Apply signed open-loop pulse counts to cells (stuck cells do not move); returns new G."""
    moved = model.step(g, np.where(stuck, 0, pulses), rng, devices)
    return np.where(stuck | (pulses == 0), g, moved)


def plot_transfer(result: ProgramResult, mask: np.ndarray, error_path: str | os.PathLike,
                  pulses_path: str | os.PathLike, tolerance: float) -> None:
    """Histograms of the programming error (uS) and of the pulse counts of the used cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = result.error[mask] * 1e6
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(e, bins=120, color="tab:blue")
    ax.axvline(-tolerance * 1e6, color="k", ls="--", lw=0.8)
    ax.axvline(tolerance * 1e6, color="k", ls="--", lw=0.8, label="tolerance")
    ax.set_yscale("log")
    ax.set_xlabel("programmed - target conductance (uS)")
    ax.set_ylabel("cells")
    ax.set_title(f"write-verify error, {e.size} cells ({int(result.stuck[mask].sum())} stuck)",
                 fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, error_path)
    fig, ax = plt.subplots(figsize=(6, 4))
    p = result.pulses[mask]
    ax.hist(p, bins=np.arange(0, p.max() + 6, 5), color="tab:orange")
    ax.set_yscale("log")
    ax.set_xlabel("programming pulses per cell")
    ax.set_ylabel("cells")
    ax.set_title(f"pulse counts: mean {p.mean():.1f}, max {p.max()}", fontsize=9)
    save_figure(fig, pulses_path)

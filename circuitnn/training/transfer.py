"""Weight transfer: closed-loop write-verify programming of every cell with the pulse-update model.

The loop is `circuitnn.tile.verify.verify_loop`, the one that `circuitnn.tile.program
.write_verify_cell` also runs for one cell in ngspice; here each pulse is a step of the pulse law
and each verify read goes through the cell as the chain's tile sees it (`verify_read`, e.g.
`circuitnn.tile.verify.verify_reads`: device, access transistor, wires).

Device model: the pulse-update model of the `ArrayDevice` (`circuitnn.network.device`), mapped
into the array's conductance window there.

Programming loop (Yao et al. 2020 used closed-loop write-verify; details are this project's
choice): every device starts at its own (device-to-device varied) low bound, then up to
`max_pulses` times: read with the card's level noise (and the device's relative read noise); a
cell whose read is within the tolerance
of its target is done (it is not pulsed or verified again); the others get one SET (read below
target) or RESET (above) pulse through the pulse model with its cycle-to-cycle noise (with an
incremental scheme, the law of the pulse's rung: a higher SET gate or RESET amplitude for each
consecutive pulse of one kind). The fractions `stuck_low` and `stuck_high` of the cells are stuck
at the device's low and high bound and ignore pulses. With pair compensation (`partner`), a cell
that ends off its target has the other cell of its differential pair re-targeted to keep the
pair's difference, then verified again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from circuitnn.devices.pulse import PulseModel
from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure
from circuitnn.network.device import ArrayDevice
from circuitnn.tile.verify import VerifyOutcome, verify_loop


@dataclass
class ProgramConfig:
    """Write-verify settings (tolerance in siemens) and the chip's cells: fractions stuck at
    the low and at the high bound, relative read noise of a verify read."""

    tolerance: float = 0.5e-6
    max_pulses: int = 400
    stuck_low: float = 0.0025
    stuck_high: float = 0.0025
    variation_scale: float = 1.0  # multiplies the card's device-to-device spreads
    read_noise_rel: float = 0.0

    def check(self) -> None:
        """Raise CircuitnnError on impossible values."""
        if not self.tolerance > 0:
            raise CircuitnnError(f"write-verify tolerance must be > 0 S, got {self.tolerance}")
        if self.max_pulses < 1:
            raise CircuitnnError(f"pulse budget must be >= 1, got {self.max_pulses}")
        if not (0 <= self.stuck_low < 1 and 0 <= self.stuck_high < 1
                and self.stuck_low + self.stuck_high < 1):
            raise CircuitnnError(f"stuck fractions must be in [0, 1) and leave working cells, "
                                 f"got {self.stuck_low}, {self.stuck_high}")
        if self.variation_scale < 0:
            raise CircuitnnError(f"variation scale must be >= 0, got {self.variation_scale}")
        if not 0 <= self.read_noise_rel < 1:
            raise CircuitnnError(f"read noise must be in [0, 1), got {self.read_noise_rel}")


def program_config(device: ArrayDevice, max_pulses: int, variation_scale: float = 1.0
                   ) -> ProgramConfig:
    """The write-verify settings of a chip of `device`: its tolerance, stuck fractions and
    read noise."""
    return ProgramConfig(device.tolerance, max_pulses, device.stuck[0], device.stuck[1],
                         variation_scale, device.read_noise_rel)


@dataclass
class ProgramResult:
    """Programmed state of every cell and how it got there."""

    conductance: np.ndarray  # true state after programming (S)
    target: np.ndarray
    pulses: np.ndarray  # pulses applied per cell
    stuck: np.ndarray  # bool
    converged: np.ndarray  # bool: last verify read within tolerance
    devices: dict[str, np.ndarray]
    read: np.ndarray | None = None  # noise-free verify read of every cell after programming (S)
    #: cells re-targeted to make up for their failed pair partner (`write_verify`, partner)
    compensated: np.ndarray | None = None

    @property
    def error(self) -> np.ndarray:
        """Programmed (as the verify read sees it) minus target conductance (S)."""
        return (self.conductance if self.read is None else self.read) - self.target

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
                "not_converged": int((~self.converged[m]).sum()),
                "compensated": 0 if self.compensated is None else int(self.compensated[m].sum())}


def write_verify(target: np.ndarray, model: PulseModel | Sequence[PulseModel],
                 rng: np.random.Generator, config: ProgramConfig | None = None, progress=None,
                 verify_read: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 partner: np.ndarray | None = None) -> ProgramResult:
    """Program every cell of `target` (S, any shape) by write-verify; see the module text.

    model: the pulse law, or one law per rung of an incremental scheme (the k-th consecutive
    pulse of one kind uses law k, the last one repeating; every law has the devices of the
    first). verify_read(g, idx): the verify reads (S) of the flat cells idx when the devices
    read g (flat, S) on their own; default: the devices themselves.

    partner (same shape as target): the flat index of each cell's differential partner (the
    other cell of its G+ / G- pair, `Mapping.partners`), -1 for none. Given, a cell that ends
    outside its tolerance (stuck, or out of pulses) has its working partner re-targeted by the
    same offset, read as the chip reads it, within the window, and verified again: the pair's
    difference, which is the weight, holds where the window allows.
    """
    cfg = config or ProgramConfig()
    cfg.check()
    laws = [model] if isinstance(model, PulseModel) else list(model)
    if not laws or not all(isinstance(m, PulseModel) for m in laws):
        raise CircuitnnError("write-verify needs a pulse law or a list of them")
    first = laws[0]
    target = np.asarray(target, float)
    devices = first.sample_devices(target.shape, rng)
    devices["g_min"] = np.maximum(devices["g_min"], 0.1 * first.g_min)  # no negative bounds
    devices["g_max"] = np.maximum(devices["g_max"], devices["g_min"] + 0.05 * (
        first.g_max - first.g_min))
    g = devices["g_min"].copy()
    draw = rng.random(target.shape)
    stuck_high = draw >= 1 - cfg.stuck_high
    stuck = (draw < cfg.stuck_low) | stuck_high
    g[stuck_high] = devices["g_max"][stuck_high]
    flat_g = g.reshape(-1)
    flat_dev = {k: np.broadcast_to(v, target.shape).reshape(-1) for k, v in devices.items()}

    def measure(idx: np.ndarray) -> np.ndarray:
        noisy = flat_g.copy()
        noisy[idx] = first.read(flat_g[idx], rng)
        if cfg.read_noise_rel:
            noisy[idx] *= 1 + cfg.read_noise_rel * rng.standard_normal(idx.size)
        return noisy[idx] if verify_read is None else verify_read(noisy, idx)

    def pulse(idx: np.ndarray, up: np.ndarray, rung: np.ndarray) -> None:
        rung = np.minimum(rung, len(laws) - 1)
        for k in np.unique(rung):
            sel = idx[rung == k]
            flat_g[sel] = laws[k].step(flat_g[sel], np.where(up[rung == k], 1, -1), rng,
                                       {n: v[sel] for n, v in flat_dev.items()})

    out = verify_loop(target, cfg.tolerance, cfg.max_pulses, measure, pulse,
                      np.flatnonzero(~stuck.reshape(-1)),
                      None if progress is None else lambda n: progress(n))
    converged, pulses, compensated = out.converged, out.pulses, None
    if partner is not None:
        target, converged, pulses, compensated = _compensate_pairs(
            target, partner, stuck, converged, pulses, measure,
            lambda t, idx: verify_loop(t, cfg.tolerance, cfg.max_pulses, measure, pulse, idx),
            (first.g_min, first.g_max))
    read = g if verify_read is None else verify_read(flat_g, np.arange(g.size)).reshape(g.shape)
    converged = converged.reshape(target.shape)
    converged |= stuck & (np.abs(read - target) <= cfg.tolerance)
    return ProgramResult(g, target, pulses.reshape(target.shape), stuck, converged, devices,
                         read, compensated)


def _compensate_pairs(target: np.ndarray, partner: np.ndarray, stuck: np.ndarray,
                      converged: np.ndarray, pulses: np.ndarray,
                      measure: Callable[[np.ndarray], np.ndarray],
                      program: Callable[[np.ndarray, np.ndarray], VerifyOutcome],
                      window: tuple[float, float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`write_verify`'s second pass: the working partners of the cells that failed, re-targeted
    by the failed cell's verify read minus its target (clipped to the window) and programmed
    on from where they are. Returns the targets, converged flags and pulses of every cell
    (flat, the last two), and which cells were re-targeted."""
    mate = np.asarray(partner, np.int64).reshape(-1)
    if mate.size != target.size:
        raise CircuitnnError(f"pair partners: {mate.size} entries for {target.size} cells")
    flat_t = target.reshape(-1).copy()
    failed = np.flatnonzero(~converged & (mate >= 0))
    ok = converged[mate[failed]] & ~stuck.reshape(-1)[mate[failed]]
    failed = failed[ok]
    compensated = np.zeros(flat_t.size, bool)
    if failed.size == 0:
        return target, converged, pulses, compensated.reshape(target.shape)
    cells = mate[failed]
    flat_t[cells] = np.clip(flat_t[cells] + measure(failed) - flat_t[failed], *window)
    again = program(flat_t, cells)
    converged, pulses = converged.copy(), pulses + again.pulses
    converged[cells] = again.converged[cells]
    compensated[cells] = True
    return (flat_t.reshape(target.shape), converged, pulses,
            compensated.reshape(target.shape))


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

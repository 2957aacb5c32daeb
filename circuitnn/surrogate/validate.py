"""Validation against ngspice on fresh tiles: accuracy figures and parity plots.

Fresh tiles use seeds disjoint from calibration (`VALIDATION_SEED`), are read by real ngspice
runs (on Dask), and are compared with the surrogate and with the ideal V @ G.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices import ModelCard, builtin_card, with_operating_point
from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure
from circuitnn.surrogate.calibrate import TileSet, evaluate, generate
from circuitnn.surrogate.card import SurrogateCard

VALIDATION_SEED = 424_242
TARGETS = {"rms_pct": 0.5, "max_pct": 2.0, "captured_pct": 95.0}


def passes(m: dict[str, float]) -> bool:
    """True when metrics meet the accuracy targets."""
    return (m["rms_pct"] <= TARGETS["rms_pct"] and m["max_pct"] <= TARGETS["max_pct"]
            and m["captured_pct"] >= TARGETS["captured_pct"])


def validate(sc: SurrogateCard, tiles: TileSet, work_dir: str | Path, n_tiles: int = 3,
             card: ModelCard | None = None, engine: str = "ngspice", seed: int = VALIDATION_SEED,
             scheduler: Any = None, n_workers: int = 2, plot: str | Path | None = None,
             progress: bool = True, timeout: float = 600.0) -> dict[str, Any]:
    """Metrics of the surrogate (and of the ideal product) against `engine` on fresh tiles.

    The tiles need not lie in the card's domain (that is how its limits are charted): the
    card's theta is applied regardless; `in_domain` tells whether the card covers them.
    """
    if n_tiles < 1:
        raise CircuitnnError("validation needs at least one tile")
    card = with_operating_point(card or builtin_card())
    samples = generate(tiles, card, n_tiles, seed, Path(work_dir), engine, scheduler,
                       n_workers, progress, timeout)
    from circuitnn.surrogate.calibrate import spec_of

    in_domain = all(sc.why_not(spec_of(s, card, tiles.spec_kwargs)) is None for s in samples)
    m, pred, truth, ideal = evaluate(samples, card, tiles.spec_kwargs, sc.theta)
    out = {"tiles": n_tiles, "vectors": int(truth.shape[0]), "engine": engine,
           "shape": [tiles.rows, tiles.cols], "r_range": list(tiles.r_range),
           "in_domain": in_domain, "surrogate": m, "passes": passes(m)}
    if plot is not None:
        parity_plot(pred, truth, ideal, plot, f"{tiles.rows}x{tiles.cols}, r in "
                    f"[{tiles.r_range[0]:g}, {tiles.r_range[1]:g}] ohm", m, engine)
    return out


def parity_plot(pred: np.ndarray, truth: np.ndarray, ideal: np.ndarray, path: str | Path,
                title: str, m: dict[str, float], engine: str = "ngspice") -> Path:
    """Two panels: surrogate vs truth and ideal V.G vs truth (column currents in uA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.4))
    t = truth.ravel() * 1e6
    lim = [0, float(max(t.max(), ideal.max() * 1e6)) * 1.03]
    for ax, y, name in ((axes[0], pred, "surrogate"), (axes[1], ideal, "ideal V.G")):
        ax.plot(lim, lim, color="0.6", lw=1, label="y = x")
        ax.scatter(t, y.ravel() * 1e6, s=3, alpha=0.4, color="C0" if name == "surrogate"
                   else "C3", label=name)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel(f"{engine} column current (uA)")
        ax.set_ylabel(f"{name} (uA)")
        ax.set_aspect("equal")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_title(f"surrogate: RMS {m['rms_pct']:.3f}%, max {m['max_pct']:.3f}%, "
                      f"{m['captured_pct']:.1f}% captured", fontsize=9)
    axes[1].set_title(f"ideal: RMS deviation {m['ideal_rms_pct']:.2f}% of RMS current",
                      fontsize=9)
    fig.suptitle(f"Surrogate vs {engine} on fresh tiles ({title})", fontsize=10)
    return save_figure(fig, path)

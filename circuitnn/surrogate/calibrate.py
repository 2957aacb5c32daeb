"""Calibration: circuit solutions of network-like tiles (Dask sweep), a fit of theta, a card.

Tiles draw conductances like a mapped network (uniform, 8 device levels with many cells at the
low end as in differential pairs, mostly-high worst cases) and inputs like its reads (bit-serial
binary slots of random density, structured blocks, analog levels, 8-bit codes). Solutions come
from `circuitnn.tile.read` ("nodal" for the bulk: it matches ngspice to ~1e-11 relative; "ngspice"
for check sets) through `circuitnn.tile.sweep.run_sweep`, resumable. The four theta factors are
fitted by `scipy.optimize.least_squares` on currents relative to each tile's RMS current.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from circuitnn.cache import content_key
from circuitnn.devices import ModelCard, builtin_card, operating_point, with_operating_point
from circuitnn.errors import CircuitnnError
from circuitnn.surrogate.card import SurrogateCard, device_hash, fixed_settings
from circuitnn.surrogate.model import THETA_NAMES, SurrogateTile
from circuitnn.tile.spec import TileSpec

PATTERNS = ("uniform", "levels", "high")


@dataclass
class TileSet:
    """Settings of a set of calibration / validation tiles (everything but the draws)."""

    rows: int = 128
    cols: int = 16
    r_range: tuple[float, float] = (0.0, 3.0)  # ohm per segment, r_row and r_col drawn in it
    g_range: tuple[float, float] | None = None  # S; None: the device card's default window
    n_vectors: int = 48
    spec_kwargs: dict[str, Any] = field(default_factory=dict)  # other TileSpec settings

    def conductance_range(self, card: ModelCard) -> tuple[float, float]:
        """The conductance range of the tiles: `g_range`, else the card's default programmable
        window at the read voltage (`circuitnn.devices.operating`)."""
        if self.g_range is not None:
            return self.g_range
        op = operating_point(card, v_read=self.spec_kwargs.get("v_read"), where="device card")
        return op.require_window("device card")


def draw_conductances(rng: np.random.Generator, shape: tuple[int, int], pattern: str,
                      g_lo: float, g_hi: float) -> np.ndarray:
    """A conductance pattern like a mapped network's (see the module docstring)."""
    if pattern == "uniform":
        return rng.uniform(g_lo, g_hi, shape)
    if pattern == "levels":
        levels = np.linspace(g_lo, g_hi, 8)
        k = rng.integers(0, 8, shape)
        k[rng.random(shape) < 0.5] = 0
        return levels[k]
    if pattern == "high":
        g = rng.uniform(0.8 * g_hi + 0.2 * g_lo, g_hi, shape)
        low = rng.random(shape) < 0.15
        g[low] = rng.uniform(g_lo, g_hi, int(low.sum()))
        return g
    raise CircuitnnError(f"unknown conductance pattern {pattern!r}; use one of {PATTERNS}")


def draw_inputs(rng: np.random.Generator, n: int, rows: int, v_read: float) -> np.ndarray:
    """n input vectors: binary slots (half), structured blocks, analog levels, 8-bit codes."""
    nb, ns, na = n // 2, n // 8, n // 4
    nc = n - nb - ns - na
    p = rng.uniform(0.05, 0.95, (nb, 1))
    binary = (rng.random((nb, rows)) < p) * v_read
    blocks = np.zeros((ns, rows))
    for k in range(ns):
        a, b = np.sort(rng.integers(0, rows + 1, 2))
        blocks[k, a:max(b, a + 1)] = v_read
    if ns:
        blocks[0] = v_read  # all rows on: the worst IR drop
    analog = rng.uniform(0, v_read, (na, rows))
    codes = rng.integers(0, 256, (nc, rows)) * (rng.random((nc, rows)) < 0.6)
    return np.concatenate([binary, blocks, analog, codes / 255.0 * v_read])


def tile_task(engine: str, seed: int, rows: int, cols: int, pattern: str, g_lo: float,
              g_hi: float, r_lo: float, r_hi: float, n_vectors: int, card: dict,
              spec_kwargs: dict, timeout: float = 600.0) -> dict[str, np.ndarray]:
    """One drawn tile read by `engine` (a sweep task; top level so Dask can ship it)."""
    from circuitnn.tile.read import read

    rng = np.random.default_rng(seed)
    g = draw_conductances(rng, (rows, cols), pattern, g_lo, g_hi)
    r = rng.uniform(r_lo, r_hi, 2)
    spec = TileSpec(g, device=ModelCard.from_json(card), r_row=float(r[0]), r_col=float(r[1]),
                    **spec_kwargs)
    v = draw_inputs(rng, n_vectors, rows, float(spec.v_read))
    opts = {"timeout": timeout} if engine == "ngspice" else {}
    return {"G": g, "V": v, "I": read(spec, v, engine=engine, **opts), "r": r}


def generate(tiles: TileSet, card: ModelCard, n_tiles: int, seed: int, out_dir: str | Path,
             engine: str = "nodal", scheduler: Any = None, n_workers: int = 2,
             progress: bool = True, timeout: float = 600.0) -> list[dict[str, np.ndarray]]:
    """Draw and solve `n_tiles` tiles on Dask (resumable in `out_dir`; the file names carry a
    digest of the settings, so a changed setting is never served from an old file)."""
    from circuitnn.tile.sweep import run_sweep

    g_lo, g_hi = tiles.conductance_range(card)
    digest = content_key([g_lo, g_hi, list(tiles.r_range), tiles.n_vectors, tiles.spec_kwargs,
                          card.to_json()])
    tasks = []
    for k in range(n_tiles):
        s = seed * 100_003 + k
        tasks.append((f"{engine}-{tiles.rows}x{tiles.cols}-s{s}-{digest}", dict(
            engine=engine, seed=s, rows=tiles.rows, cols=tiles.cols,
            pattern=PATTERNS[k % len(PATTERNS)], g_lo=g_lo, g_hi=g_hi,
            r_lo=tiles.r_range[0], r_hi=tiles.r_range[1], n_vectors=tiles.n_vectors,
            card=card.to_json(), spec_kwargs=dict(tiles.spec_kwargs), timeout=timeout)))
    res = run_sweep(tasks, tile_task, out_dir=out_dir, scheduler=scheduler,
                    n_workers=n_workers, progress=progress, desc=f"{engine} tiles")
    return [res[k] for k, _ in tasks]


def spec_of(sample: dict[str, np.ndarray], card: ModelCard, spec_kwargs: dict) -> TileSpec:
    """The TileSpec of a generated sample."""
    r = sample["r"]
    return TileSpec(sample["G"], device=card, r_row=float(r[0]), r_col=float(r[1]),
                    **spec_kwargs)


def metrics(pred: np.ndarray, truth: np.ndarray, ideal: np.ndarray) -> dict[str, float]:
    """RMS and max error in % of the RMS current, and % of the ideal-vs-truth deviation captured
    (100 (1 - RMS(pred - truth) / RMS(ideal - truth)))."""
    rms = float(np.sqrt(np.mean(truth ** 2)))
    err = pred - truth
    e_rms = float(np.sqrt(np.mean(err ** 2)))
    dev = float(np.sqrt(np.mean((ideal - truth) ** 2)))
    return {"rms_pct": 100 * e_rms / rms, "max_pct": 100 * float(np.max(np.abs(err))) / rms,
            "captured_pct": 100 * (1 - e_rms / dev) if dev > 0 else 100.0,
            "ideal_rms_pct": 100 * dev / rms}


def fit_theta(samples: list[dict[str, np.ndarray]], card: ModelCard, spec_kwargs: dict,
              progress: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """Least-squares theta over all samples; returns (theta, training metrics)."""
    from tqdm import tqdm

    bases, terms, truths, scales, ideals, rr = [], [], [], [], [], []
    for s in tqdm(samples, desc="programming tiles", file=__import__("sys").stderr,
                  disable=not progress):
        spec = spec_of(s, card, spec_kwargs)
        tile = SurrogateTile(spec)
        base, t = tile.terms(s["V"])
        bases.append(base)
        terms.append(np.stack([t[k] for k in THETA_NAMES], axis=-1))
        truths.append(s["I"])
        ideals.append(s["V"] @ s["G"])
        rr.append(np.broadcast_to(s["r"], s["I"].shape + (2,)))
        scales.append(np.full(s["I"].shape, math.sqrt(float(np.mean(s["I"] ** 2)))))
    base, term, truth, scale, ideal, r = (np.concatenate(x) for x in
                                          (bases, terms, truths, scales, ideals, rr))
    # theta_k = a_k + b_row,k r_row + b_col,k r_col; a term that is zero on every sample (the
    # kink of a smooth I-V) keeps theta = 1
    active = np.flatnonzero(np.any(term != 0, axis=tuple(range(term.ndim - 1))))
    term = term[..., active]
    feats = np.concatenate([term, term * r[..., :1], term * r[..., 1:]], axis=-1)
    na = active.size

    def resid(th: np.ndarray) -> np.ndarray:
        return ((base + feats @ th - truth) / scale).ravel()

    start = np.concatenate([np.ones(na), np.zeros(2 * na)])
    sol = least_squares(resid, start, method="lm")
    if not sol.success or not np.all(np.isfinite(sol.x)):
        raise CircuitnnError(f"surrogate fit failed: {sol.message}")
    theta = {k: [1.0, 0.0, 0.0] for k in THETA_NAMES}
    for i, k in enumerate(active):
        theta[THETA_NAMES[k]] = [float(sol.x[i]), float(sol.x[na + i]), float(sol.x[2 * na + i])]
    return theta, metrics(base + feats @ sol.x, truth, ideal)


def evaluate(samples: list[dict[str, np.ndarray]], card: ModelCard, spec_kwargs: dict,
             theta: dict[str, float]) -> tuple[dict[str, float], np.ndarray, np.ndarray,
                                                np.ndarray]:
    """Metrics of the surrogate on solved samples; also (pred, truth, ideal) flattened."""
    preds, truths, ideals = [], [], []
    for s in samples:
        tile = SurrogateTile(spec_of(s, card, spec_kwargs), theta)
        preds.append(tile.read(s["V"], binary=False))
        truths.append(s["I"])
        ideals.append(s["V"] @ s["G"])
    p, t, i = (np.concatenate(x) for x in (preds, truths, ideals))
    return metrics(p, t, i), p, t, i


def build(tiles: TileSet, work_dir: str | Path, card: ModelCard | None = None,
          card_file: str = "builtin", n_tiles: int = 24, n_check: int = 2, seed: int = 1,
          scheduler: Any = None, n_workers: int = 2, progress: bool = True) -> SurrogateCard:
    """Generate data, fit theta, check against ngspice on fresh tiles; the card, not saved."""
    card = with_operating_point(card or builtin_card(), card_file)
    work = Path(work_dir)
    train = generate(tiles, card, n_tiles, seed, work / "train", "nodal", scheduler,
                     n_workers, progress)
    theta, train_m = fit_theta(train, card, tiles.spec_kwargs, progress)
    fit: dict[str, Any] = {"train_nodal": train_m}
    if n_check > 0:
        check = generate(tiles, card, n_check, seed + 7919, work / "check", "ngspice",
                         scheduler, n_workers, progress)
        fit["check_ngspice"] = evaluate(check, card, tiles.spec_kwargs, theta)[0]
    g_lo, g_hi = tiles.conductance_range(card)
    probe = TileSpec(np.full((tiles.rows, tiles.cols), g_hi), device=card, **tiles.spec_kwargs)
    domain = {
        "device_hash": device_hash(card), "device_model": card.model,
        "shape": [tiles.rows, tiles.cols],
        "r_row": list(tiles.r_range), "r_col": list(tiles.r_range),
        "r_driver": [probe.r_driver, probe.r_driver],
        "conductance": [g_lo, g_hi], "inputs": [0.0, float(probe.v_read)],
        "fixed": fixed_settings(probe),
    }
    from circuitnn import __version__ as version

    prov = {
        "device_card": card_file, "created": _dt.datetime.now(_dt.UTC).isoformat(
            timespec="seconds"), "created_by": f"circuitnn {version}",
        "data": {"engine": "nodal", "tiles": n_tiles, "vectors_per_tile": tiles.n_vectors,
                 "reads": n_tiles * tiles.n_vectors, "check_engine": "ngspice",
                 "check_tiles": n_check, "seed": seed, "patterns": list(PATTERNS)},
        "model": "first-order IR-drop expansion around the exact small-signal tile "
                 "(circuitnn.surrogate.model)",
    }
    return SurrogateCard(theta, domain, prov, fit)


def calibrate(tiles: TileSet, out: str | Path, work_dir: str | Path, card: ModelCard | None = None,
              card_file: str = "builtin", n_tiles: int = 24, n_check: int = 2, seed: int = 1,
              scheduler: Any = None, n_workers: int = 2, progress: bool = True
              ) -> SurrogateCard:
    """`build` a card and write it to `out` (atomically)."""
    sc = build(tiles, work_dir, card, card_file, n_tiles, n_check, seed, scheduler, n_workers,
               progress)
    sc.save(out)
    return sc

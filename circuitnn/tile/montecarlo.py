"""Monte Carlo device variation of a tile's programmed conductances, read through Dask sweeps.

Variation statistics come from the card's ``variation`` object (keys below), overridden by the
`variation` argument; a key missing from both takes its default:

* ``g_sigma_rel`` (default 0.05): programmed conductance is lognormal around its target,
  G = G_target * exp(g_sigma_rel * z), z ~ N(0, 1) (median-preserving; ~ relative sigma for
  small values). 5 % is our default for the spread left by write-verify programming.
* ``gap_sigma_m`` (default 0): for state-based models, an extra normal spread of the device
  state (in the state's own unit, metres for the Stanford-PKU gap) added after the conductance
  spread; applied only when the tile has a device card.
* ``stuck_fraction`` (default 0): fraction of cells, chosen at random, that are stuck.
* ``stuck_g`` (default "min"): the conductance of stuck cells: "min" or "max" (the card's
  range at v_read; for ohmic tiles the tile's smallest or largest target) or a value in S.

Sampled conductances are clipped to the card's range (TileSpec refuses values outside it).
Sample k depends only on (seed, k) (``SeedSequence(seed).spawn``), so a rerun with a larger `n`
reuses the finished samples of `monte_carlo_read`'s resumable sweep.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_json
from circuitnn.tile.spec import TileSpec, check_inputs
from circuitnn.tile.sweep import run_sweep

DEFAULT_VARIATION: dict[str, Any] = {
    "g_sigma_rel": 0.05,
    "gap_sigma_m": 0.0,
    "stuck_fraction": 0.0,
    "stuck_g": "min",
}


def variation_of(spec: TileSpec, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variation statistics in force: defaults < card's `variation` < `override`; checked."""
    var = dict(DEFAULT_VARIATION)
    card = spec.device.variation if spec.device is not None else {}
    where = "card variation"
    for src, name in ((card, where), (override or {}, "variation argument")):
        if not isinstance(src, dict):
            raise CircuitnnError(f"{name} must be a dict")
        for k, val in src.items():
            if k in DEFAULT_VARIATION:
                var[k] = val
            elif name == "variation argument":
                raise CircuitnnError(f"unknown variation key {k!r}; known: "
                                     f"{', '.join(DEFAULT_VARIATION)}")
            # other card keys (notes, pulse statistics) are not ours: ignored
    for k in ("g_sigma_rel", "gap_sigma_m", "stuck_fraction"):
        val = var[k]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not (
                math.isfinite(val) and val >= 0):
            raise CircuitnnError(f"variation {k!r} must be a finite number >= 0, got {val!r}")
        var[k] = float(val)
    if var["stuck_fraction"] > 1:
        raise CircuitnnError(
            f"variation 'stuck_fraction' must be <= 1, got {var['stuck_fraction']}")
    sg = var["stuck_g"]
    ok_num = not isinstance(sg, bool) and isinstance(sg, (int, float)) and math.isfinite(sg) and (
        sg > 0)
    if sg not in ("min", "max") and not ok_num:
        raise CircuitnnError(f"variation 'stuck_g' must be 'min', 'max' or a conductance > 0 S, "
                             f"got {sg!r}")
    return var


def _limits(spec: TileSpec) -> tuple[float, float]:
    if spec.device is not None:
        return spec.device_model.g_range
    g = spec.conductance
    return float(g.min()), float(g.max())


def sample_conductance(spec: TileSpec, rng: np.random.Generator,
                       var: dict[str, Any]) -> np.ndarray:
    """One (rows, cols) sample of programmed conductances (module doc)."""
    g = spec.conductance * np.exp(var["g_sigma_rel"] * rng.standard_normal(spec.shape))
    lo, hi = _limits(spec)
    if spec.device is not None and var["gap_sigma_m"] > 0:
        dev = spec.device_model
        s = dev.state_for_conductance(np.clip(g, lo, hi), spec.v_read)
        s = s + var["gap_sigma_m"] * rng.standard_normal(spec.shape)
        s_lo, s_hi = dev.bounds()
        g = dev.conductance(np.clip(s, s_lo, s_hi), spec.v_read)
    stuck = rng.random(spec.shape) < var["stuck_fraction"]
    sg = var["stuck_g"]
    g = np.where(stuck, lo if sg == "min" else hi if sg == "max" else float(sg), g)
    if spec.device is not None:
        g = np.clip(g, lo, hi)
    return g


def _rng(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(k + 1)[k])


def _check_seed_n(n, seed) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise CircuitnnError(f"n must be an integer in 1..100000, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CircuitnnError(f"seed must be a non-negative integer, got {seed!r}")


def sample_tiles(spec: TileSpec, n: int, seed: int = 0,
                 variation: dict[str, Any] | None = None) -> list[TileSpec]:
    """`n` copies of the tile with sampled conductances (sample k depends on seed and k only)."""
    if not isinstance(spec, TileSpec):
        raise CircuitnnError(f"spec must be a TileSpec, got {type(spec).__name__}")
    _check_seed_n(n, seed)
    var = variation_of(spec, variation)
    return [spec.with_(conductance=sample_conductance(spec, _rng(seed, k), var))
            for k in range(n)]


def mc_read_task(spec: TileSpec, inputs: np.ndarray, k: int, seed: int,
                 variation: dict[str, Any], engine: str) -> dict[str, np.ndarray]:
    """Sweep task: read sample k (k = -1: the nominal tile); returns currents and conductances."""
    from circuitnn.tile.read import read

    tile = spec if k < 0 else spec.with_(
        conductance=sample_conductance(spec, _rng(seed, k), variation))
    return {"current": np.asarray(read(tile, inputs, engine=engine), dtype=float),
            "conductance": np.asarray(tile.conductance)}


@dataclass
class MonteCarloResult:
    """currents: (n, batch, cols) A; nominal: (batch, cols) A; conductances: (n, rows, cols) S;
    error_mean / error_std: (batch, cols) mean and std over samples of (current - nominal);
    rel_rms: sqrt(mean(error^2)) / sqrt(mean(nominal^2)) over everything."""

    currents: np.ndarray
    nominal: np.ndarray
    conductances: np.ndarray = field(repr=False)
    error_mean: np.ndarray = field(repr=False)
    error_std: np.ndarray = field(repr=False)
    rel_rms: float
    variation: dict[str, Any]


def _fingerprint(spec: TileSpec, v: np.ndarray, seed: int, var: dict, engine: str) -> str:
    h = hashlib.sha256()
    fields = {
        "cell": spec.cell, "r_row": spec.r_row, "r_col": spec.r_col, "r_wl": spec.r_wl,
        "r_driver": spec.r_driver, "v_gate": spec.v_gate, "sense": spec.sense,
        "transistor": asdict(spec.transistor), "tia": asdict(spec.tia), "gmin": spec.gmin,
        "v_read": spec.v_read, "device": None if spec.device is None else spec.device.to_json(),
        "seed": seed, "variation": var, "engine": engine,
        "row_mask": None if spec.row_mask is None else spec.row_mask.tolist(),
    }
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for arr in (spec.conductance, v):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
    return h.hexdigest()


def monte_carlo_read(spec: TileSpec, inputs, n: int, *, out_dir: str | Path,
                     engine: str = "nodal", seed: int = 0,
                     variation: dict[str, Any] | None = None, scheduler: Any = None,
                     n_workers: int = 2, progress: bool = True) -> MonteCarloResult:
    """Read `n` sampled tiles (and the nominal one) with `read(..., engine)` on Dask.

    Each sample's result is saved in `out_dir` as it finishes (resumable, see
    `circuitnn.tile.sweep.run_sweep`); `out_dir/manifest.json` fingerprints the run, and an
    `out_dir` that holds a different run is refused.
    """
    if not isinstance(spec, TileSpec):
        raise CircuitnnError(f"spec must be a TileSpec, got {type(spec).__name__}")
    _check_seed_n(n, seed)
    from circuitnn.tile.read import check_engine

    check_engine(engine)
    var = variation_of(spec, variation)
    v, _ = check_inputs(spec, inputs)
    out = Path(out_dir)
    fp = _fingerprint(spec, v, seed, var, engine)
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != fp:
            raise CircuitnnError(f"{out} holds results of a different Monte Carlo run "
                                 "(tile, inputs, seed, variation or engine differ): use a new "
                                 "out_dir")
    else:
        write_json(manifest, {"fingerprint": fp, "seed": seed, "variation": var,
                              "engine": engine})
    common = {"spec": spec, "inputs": v, "seed": seed, "variation": var, "engine": engine}
    tasks = [("nominal", {**common, "k": -1})]
    tasks += [(f"sample{k:05d}", {**common, "k": k}) for k in range(n)]
    res = run_sweep(tasks, mc_read_task, out_dir=out, scheduler=scheduler, n_workers=n_workers,
                    progress=progress, desc="Monte Carlo reads")
    nominal = res["nominal"]["current"]
    cur = np.stack([res[f"sample{k:05d}"]["current"] for k in range(n)])
    cond = np.stack([res[f"sample{k:05d}"]["conductance"] for k in range(n)])
    err = cur - nominal[None]
    denom = math.sqrt(float(np.mean(nominal ** 2)))
    rel = math.sqrt(float(np.mean(err ** 2))) / denom if denom > 0 else math.inf
    return MonteCarloResult(cur, nominal, cond, err.mean(axis=0), err.std(axis=0), rel, var)

"""Automatic surrogate cards: for a device card, tile size, wire range, window and read voltage,
the shipped or cached card that covers them, else a new card calibrated on nodal solutions (on
Dask), validated against ngspice on fresh tiles and cached. `surrogate_for` is the entry point.

Cache: a `circuitnn.cache.entry` in the folder "surrogate", one file
`surrogate-<model>-<rows>x<cols>-<key>.json` per request, where key is the content key of
everything that defines the card: the device card's parameters, geometry, wire range,
conductance window, every fixed tile setting (v_read, cell, gate, transistor, sense, gmin), the
calibration and validation sizes and seeds, and the versions of this procedure and of
circuitnn. The entry's lock makes a concurrent request wait for the first one and then load its
card. The card is written (atomically) only after it passed
validation, so an interrupted or failed calibration leaves no card; its solved tiles stay in
`work-<key>/` and a rerun resumes from them (they are removed once the card is written).

Validation: `circuitnn.surrogate.validate.validate` on `validate_tiles` fresh tiles read by
ngspice; refused when the RMS error exceeds MAX_RMS_ERROR = 1% of the RMS column current.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

import numpy as np

from circuitnn.cache import entry
from circuitnn.devices import ModelCard, operating_point, with_operating_point
from circuitnn.devices.card import parameters_hash
from circuitnn.errors import CircuitnnError
from circuitnn.io import file_sha256
from circuitnn.surrogate.calibrate import TileSet, build
from circuitnn.surrogate.card import (
    CACHE_SUB,
    CARD_GLOB,
    SCHEMA,
    SurrogateCard,
    card_folders,
    fixed_settings,
)
from circuitnn.surrogate.validate import VALIDATION_SEED, validate
from circuitnn.tile.spec import TileSpec
from circuitnn.tile.sweep import dask_client

CALIBRATION_VERSION = 2  # bump when the calibration or validation procedure changes
MAX_RMS_ERROR = 0.01  # fraction of the RMS column current


def recorded_validation(sc: SurrogateCard) -> dict[str, Any] | None:
    """A card's validation against ngspice as {rms_error, max_error (fractions of the RMS
    current), tiles, vectors}: from an automatic card's record, or from a `surrogate fit` card's
    ngspice check; None when it has neither."""
    if "validation" in sc.fit:
        v = sc.fit["validation"]
        return {k: v[k] for k in ("rms_error", "max_error", "tiles", "vectors")}
    check, data = sc.fit.get("check_ngspice"), sc.provenance.get("data", {})
    if not check or not data.get("check_tiles"):
        return None
    return {"rms_error": check["rms_pct"] / 100, "max_error": check["max_pct"] / 100,
            "tiles": int(data["check_tiles"]),
            "vectors": int(data["check_tiles"]) * int(data["vectors_per_tile"])}


def _report(sc: SurrogateCard, calibrated: bool) -> dict[str, Any]:
    assert sc.path is not None
    return {"card_sha256": file_sha256(sc.path),
            "calibrated": calibrated, "validation": recorded_validation(sc),
            "path": str(sc.path)}


def _covers(sc: SurrogateCard, probes: list[TileSpec]) -> bool:
    if any(sc.why_not(p) is not None for p in probes):
        return False
    val = recorded_validation(sc)
    return val is None or val["rms_error"] <= MAX_RMS_ERROR


def _covering(probes: list[TileSpec]) -> SurrogateCard | None:
    for folder in card_folders():
        for path in sorted(folder.glob(CARD_GLOB)) if folder.is_dir() else []:
            try:
                sc = SurrogateCard.load(path)
            except CircuitnnError:  # a cached card of an older format: calibrate anew
                continue
            if _covers(sc, probes):
                return sc
    return None


def surrogate_for(card: ModelCard, rows: int, cols: int,
                  r_range: tuple[float, float] = (0.0, 3.0), window: Any = None,
                  v_read: float | None = None, spec_kwargs: dict[str, Any] | None = None,
                  card_name: str = "device card", n_tiles: int = 24, n_vectors: int = 48,
                  validate_tiles: int = 3, seed: int = 1, scheduler: Any = None,
                  n_workers: int = 2, progress: bool = True
                  ) -> tuple[SurrogateCard, dict[str, Any]]:
    """The surrogate card for a device and tile, and a plain dict for a report.

    card: the I-V card (an operating point is computed if it has none); window: (g_min, g_max)
    in S, default the card's default window at v_read; v_read: default the card's; r_range:
    ohm per wire segment (r_row and r_col); spec_kwargs: other TileSpec settings. Returns
    (card, {card_sha256, calibrated: True if made by this call, validation: {rms_error,
    max_error (fractions of the RMS current), tiles, vectors}, path}). Every input is checked
    before any calibration starts.
    """
    import multiprocessing

    if multiprocessing.parent_process() is not None or getattr(
            multiprocessing.current_process(), "_inheriting", False):
        raise CircuitnnError("surrogate_for runs in the main process only (a script that "
                             "starts Dask must guard its work with `if __name__ == "
                             "'__main__':`)")
    card = with_operating_point(card, card_name)
    if rows < 2 or cols < 1:
        raise CircuitnnError(f"tile must have rows >= 2 and cols >= 1, got {rows} x {cols}")
    r_lo, r_hi = (float(r) for r in r_range)
    if not (math.isfinite(r_hi) and 0 <= r_lo <= r_hi):
        raise CircuitnnError(f"wire range needs 0 <= r_min <= r_max, got {r_range}")
    if n_tiles < 1 or n_vectors < 8 or validate_tiles < 1:
        raise CircuitnnError("need >= 1 calibration tile, >= 8 vectors and >= 1 validation tile")
    kwargs = dict(spec_kwargs or {})
    if v_read is not None:
        kwargs["v_read"] = float(v_read)
    op = operating_point(card, v_read=kwargs.get("v_read"), window=window, where=card_name)
    g_lo, g_hi = op.require_window(card_name)
    g = np.full((rows, cols), g_lo)
    g[0, 0] = g_hi
    probes = [TileSpec(g, device=card, r_row=r, r_col=r, **kwargs) for r in (r_lo, r_hi)]
    found = _covering(probes)
    if found is not None:
        return found, _report(found, calibrated=False)

    identity = {"version": CALIBRATION_VERSION, "schema": SCHEMA,
                "device": parameters_hash(card), "shape": [rows, cols], "r_range": [r_lo, r_hi],
                "g_range": [g_lo, g_hi], "fixed": fixed_settings(probes[0]),
                "r_driver": probes[0].r_driver, "n_tiles": n_tiles, "n_vectors": n_vectors,
                "seed": seed, "validate_tiles": validate_tiles, "validation_seed": VALIDATION_SEED}
    from circuitnn import __version__

    identity["circuitnn"] = __version__
    with entry(CACHE_SUB, identity, f"surrogate-{card.model}-{rows}x{cols}-{{key}}.json") as e:
        path, key = e.path, e.key
        if path.is_file():  # made by a concurrent request while this one waited
            sc = SurrogateCard.load(path)
            return sc, _report(sc, calibrated=False)
        tiles = TileSet(rows, cols, (r_lo, r_hi), (g_lo, g_hi), n_vectors, kwargs)
        work = e.folder / f"work-{key}"
        with dask_client(scheduler, n_workers) as client:  # one for calibration and validation
            sc = build(tiles, work, card, card_name, n_tiles, 0, seed, client, n_workers,
                       progress)
            res = validate(sc, tiles, work / "validate", validate_tiles, card, "ngspice",
                           scheduler=client, n_workers=n_workers, progress=progress)
        m = res["surrogate"]
        val = {"engine": "ngspice", "rms_error": m["rms_pct"] / 100,
               "max_error": m["max_pct"] / 100, "tiles": res["tiles"], "vectors": res["vectors"],
               "captured_pct": m["captured_pct"], "seed": VALIDATION_SEED}
        if val["rms_error"] > MAX_RMS_ERROR:
            raise CircuitnnError(
                f"automatic surrogate for {card_name} ({rows}x{cols}, r {r_lo:g}-{r_hi:g} ohm, "
                f"G {g_lo * 1e6:.4g}-{g_hi * 1e6:.4g} uS) fails validation against ngspice: RMS "
                f"error {val['rms_error']:.2%} of the RMS current > {MAX_RMS_ERROR:.0%}; read "
                "this tile with engine 'nodal' or 'ngspice'")
        sc.fit["validation"] = val
        sc.provenance["automatic"] = {"cache_key": key, "identity": identity}
        sc.save(path)
        shutil.rmtree(work, ignore_errors=True)
    return sc, _report(sc, calibrated=True)

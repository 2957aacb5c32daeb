"""A fitted card against its own measured data where a network reads it: at the read voltage.

Before a card is used (`circuitnn device check`, and every `--iv-card` of the chain through
`circuitnn.network.device.array_device`), `require_read_match` compares the card's conductance
range at v_read with the measured low-bias conductance of each state, and refuses a card off by
more than MAX_READ_OFF (0.5) decade in one line that says by how much, unless the user accepts it
(`--accept-read-error`; the check's record then says so).

Measured data: the samples a fit records in the card (`read_region_record`: every sample of each
sweep whose device voltage |V - I R_series| is at most the record's range, which covers the read
range and every read voltage below the card's switching thresholds, and the samples next to
them), else the sweeps of the card's device in the manifest the card points to
(`provenance.manifest`), when that file exists. A card with neither (published parameters) is
not checked, and the record says so.

Measured low-bias conductance of each state at v_read: in each sweep, every pair of consecutive
samples (in time order; a periodic sweep wraps round) whose device voltage crosses +v_read or
-v_read gives the current there by linear interpolation and a conductance I / V. A crossing
whose |I| is at or below the sweep's noise floor, or whose I has the sign opposite to V (an
offset), cannot be read: it only says that a state conducts at most noise floor / v_read. The
high state is the largest conductance read; the low state the smallest, or that bound when a
crossing could not be read (a bound the card's low state may lie below).

The card's conductance range at v_read: |I(v_read)| / v_read of the card at the two ends of its
reachable state range (`circuitnn.devices.operating.reachable_states`: the states programming
can reach). Off (decades) = log10(card / measured) for each state; the check fails when either
state is off by more than MAX_READ_OFF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.operating import (
    OperatingPoint,
    reachable_states,
    switching_thresholds,
)
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import Sweep, group_by_device, load_manifest

#: a card whose read conductance of a state is further than this from the measured one (in
#: decades) is refused unless accepted
MAX_READ_OFF = 0.5


def read_region_record(sweeps: Sequence[Sweep], cover_v: float) -> dict[str, Any]:
    """The measured low-bias samples a card records (module doc): per sweep, the samples with
    |device voltage| <= cover_v and their neighbours, with their indices in time order."""
    out: dict[str, Any] = {}
    for s in sweeps:
        v = s.v_device
        near = (np.abs(v) <= cover_v) & ~s.at_compliance
        keep = near.copy()
        keep[:-1] |= near[1:]
        keep[1:] |= near[:-1]
        if s.periodic:
            keep[-1] |= near[0]
            keep[0] |= near[-1]
        idx = np.flatnonzero(keep)
        out[s.name] = {"source": s.source, "samples": s.n, "periodic": s.periodic,
                       "noise_floor_a": s.noise_floor_a,
                       "noise_floor_source": s.noise_floor_source,
                       "index": [int(k) for k in idx], "v_device": [float(x) for x in v[idx]],
                       "i": [float(x) for x in s.i[idx]]}
    return {"range_v": float(cover_v), "sweeps": out}


def _crossings(rec: dict[str, Any], v_read: float) -> list[tuple[float, bool]]:
    """(conductance, readable) at every crossing of +-v_read in one sweep's record."""
    idx = np.asarray(rec["index"], dtype=int)
    v = np.asarray(rec["v_device"], dtype=float)
    i = np.asarray(rec["i"], dtype=float)
    n = int(rec["samples"])
    pos = {int(k): j for j, k in enumerate(idx)}
    out = []
    for j, k in enumerate(idx):
        nxt = (k + 1) % n if rec["periodic"] else k + 1
        if nxt not in pos:
            continue
        a, b = j, pos[nxt]
        for target in (v_read, -v_read):
            da, db = v[a] - target, v[b] - target
            if not (da * db < 0 or (db == 0 and da != 0)):  # a sample at it counts once
                continue
            cur = i[a] + (i[b] - i[a]) * (target - v[a]) / (v[b] - v[a])
            readable = abs(cur) > rec["noise_floor_a"] and cur * target > 0
            out.append((cur / target, readable))
    return out


def measured_read_states(record: dict[str, Any], v_read: float) -> dict[str, Any] | None:
    """The measured low-bias conductance of each state at v_read (module doc), or None when no
    sweep of the record crosses +-v_read."""
    read, bounds, crossings = [], [], 0
    for rec in record["sweeps"].values():
        found = _crossings(rec, v_read)
        crossings += len(found)
        read += [g for g, ok in found if ok]
        bounds += [rec["noise_floor_a"] / v_read for _, ok in found if not ok]
    if not crossings:
        return None
    if not read:
        bound = max(bounds)
        return {"low_S": bound, "high_S": bound, "low_is_bound": True, "high_is_bound": True,
                "crossings": crossings, "readable": 0}
    low, high = min(read), max(read)
    bound = max(bounds, default=0.0)
    low_is_bound = bool(bounds) and bool(bound < low)
    return {"low_S": bound if low_is_bound else low, "high_S": high,
            "low_is_bound": low_is_bound, "high_is_bound": False, "crossings": crossings,
            "readable": len(read)}


def card_read_states(card: ModelCard, v_read: float) -> tuple[float, float]:
    """(low, high) read conductance of the card at v_read at the ends of its reachable state
    range."""
    device = Device.from_card(card)
    try:
        thresholds = OperatingPoint.from_json(card.model, card.operating).thresholds
    except (KeyError, TypeError, ValueError):
        thresholds = switching_thresholds(device)
    lo, hi = reachable_states(device, thresholds)
    g = np.abs(device.conductance(np.array([lo, hi]), v_read))
    return float(g.min()), float(g.max())


def _record_of(card: ModelCard) -> tuple[dict[str, Any] | None, str]:
    """(measured record, where it comes from) of a card, or (None, why there is none)."""
    rec = card.fit.get("read_region") if isinstance(card.fit, dict) else None
    if isinstance(rec, dict) and rec.get("sweeps"):
        return rec, "the measured samples the card records"
    prov = card.provenance if isinstance(card.provenance, dict) else {}
    manifest = prov.get("manifest")
    if isinstance(manifest, str) and Path(manifest).is_file():
        groups = group_by_device(load_manifest(manifest))
        sweeps = groups.get(prov.get("device"), [])
        if sweeps:
            return read_region_record(sweeps, math.inf), f"the manifest {manifest}"
    if prov.get("source") or not prov.get("data"):
        return None, "the card records no measured data (published parameters)"
    return None, ("the card records no measured low-bias samples and its manifest is not "
                  "found")


def read_check(card: ModelCard, v_read: float) -> dict[str, Any]:
    """The card against its measured data at v_read (module doc), as plain JSON: checked,
    measured and card conductances, off per state and worst (decades), limit, passes."""
    out: dict[str, Any] = {"v_read": v_read, "limit_decades": MAX_READ_OFF}
    record, source = _record_of(card)
    if record is None:
        return {**out, "checked": False, "passes": True, "reason": source}
    measured = measured_read_states(record, v_read)
    if measured is None:
        return {**out, "checked": False, "passes": True,
                "reason": f"{source} never cross |V| = {v_read:g} V"}
    low, high = card_read_states(card, v_read)
    off_low = math.log10(low / measured["low_S"]) if low > 0 else -math.inf
    if measured["low_is_bound"]:
        off_low = max(off_low, 0.0)
    off_high = math.log10(high / measured["high_S"]) if high > 0 else -math.inf
    if measured["high_is_bound"]:
        off_high = max(off_high, 0.0)
    worst = max(abs(off_low), abs(off_high))
    return {**out, "checked": True, "source": source, "measured": measured,
            "card_S": {"low": low, "high": high},
            "off_decades": {"low": off_low, "high": off_high}, "worst_decades": worst,
            "passes": bool(worst <= MAX_READ_OFF)}


def require_read_match(card: ModelCard, v_read: float, where: str, accept: bool = False
                       ) -> dict[str, Any]:
    """`read_check`, refused in one line when the card is off by more than MAX_READ_OFF at
    v_read, unless `accept` (then the record says `accepted`)."""
    res = read_check(card, v_read)
    res["accepted"] = bool(accept and not res["passes"])
    if res["passes"] or accept:
        return res
    m, c, off = res["measured"], res["card_S"], res["off_decades"]
    low = ("at most " if m["low_is_bound"] else "") + f"{m['low_S'] * 1e6:.4g}"
    raise CircuitnnError(
        f"{where}: the card is off by {res['worst_decades']:.2g} decades in the read region at "
        f"v_read = {v_read:g} V: it holds [{c['low'] * 1e6:.4g}, {c['high'] * 1e6:.4g}] uS "
        f"where its measured data read [{low}, {m['high_S'] * 1e6:.4g}] uS (low state "
        f"{off['low']:+.2g}, high state {off['high']:+.2g} decades; limit {MAX_READ_OFF:g}); "
        "refit it (circuitnn fit weighs the read region: see --read-range) or pass "
        "--accept-read-error to use it anyway")


def read_check_line(res: dict[str, Any]) -> str:
    """One line of text for a `read_check` record."""
    if not res["checked"]:
        return f"read region: not checked ({res['reason']})"
    m, c = res["measured"], res["card_S"]
    low = ("<= " if m["low_is_bound"] else "") + f"{m['low_S'] * 1e6:.4g}"
    verdict = ("pass" if res["passes"] else
               "ACCEPTED despite the error (--accept-read-error)" if res["accepted"]
               else "FAIL")
    return (f"read region at {res['v_read']:g} V: card [{c['low'] * 1e6:.4g}, "
            f"{c['high'] * 1e6:.4g}] uS, measured [{low}, {m['high_S'] * 1e6:.4g}] uS: off by "
            f"{res['worst_decades']:.2g} decades (limit {res['limit_decades']:g}): {verdict}")

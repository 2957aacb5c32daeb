"""The devices a card was fitted to, each as a card of its own.

A fit of several devices (`circuitnn fit` on a manifest with several `device` names) writes one
card per device and records in each card's `variation.device_to_device` every device's fitted
values of the free parameters and its terminal orientation (`polarity`). `members` rebuilds one
card per device from that record (the free parameters from the record, everything else from the
card), so the chain can ask how each measured device behaves in its cell
(`circuitnn.fitting.derive.measured_spread`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.errors import CircuitnnError


def _finite(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise CircuitnnError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def members(card: ModelCard, where: str = "card") -> list[tuple[str, ModelCard]]:
    """(device name, its card) of every device in the card's device-to-device record; [] when
    the card records none. A record that is malformed, or holds a spread (`std`) that is
    negative or not finite, is refused in one line."""
    rec = card.variation.get("device_to_device") if isinstance(card.variation, dict) else None
    if not rec or not isinstance(rec, dict) or "parameters" not in rec:
        return []
    devices, polarity, params = rec.get("devices"), rec.get("polarity"), rec.get("parameters")
    if not (isinstance(devices, list) and isinstance(polarity, list) and isinstance(params, dict)
            and len(devices) == len(polarity) >= 2):
        raise CircuitnnError(f"{where}: variation.device_to_device needs lists 'devices' and "
                             "'polarity' of equal length (>= 2) and a 'parameters' object")
    n = len(devices)
    values = card.values()
    for name, entry in params.items():
        if name not in values or not isinstance(entry, dict):
            raise CircuitnnError(f"{where}: device-to-device parameter {name!r} is not one of "
                                 "the card's parameters")
        std = _finite(entry.get("std", 0.0), f"{where}: device-to-device spread of {name}")
        if std < 0:
            raise CircuitnnError(f"{where}: device-to-device spread of {name} is negative "
                                 f"({std:g})")
        vals = entry.get("values")
        if not isinstance(vals, list) or len(vals) != n:
            raise CircuitnnError(f"{where}: device-to-device values of {name} must list one "
                                 f"value per device ({n})")
        for v in vals:
            _finite(v, f"{where}: device-to-device value of {name}")
    out = []
    for k, device in enumerate(devices):
        pol = _finite(polarity[k], f"{where}: polarity of device {device!r}")
        if pol not in (1.0, -1.0):
            raise CircuitnnError(f"{where}: polarity of device {device!r} must be +1 or -1")
        p = dict(card.parameters)
        for name, entry in params.items():
            old = p[name]
            p[name] = Parameter(float(entry["values"][k]), old.unit, None, old.description)
        p["polarity"] = replace(p["polarity"], value=pol, stderr=None) if "polarity" in p \
            else Parameter(pol, "", None, "terminal orientation")
        member = replace(card, parameters=p, variation={}, operating={},
                         provenance={**card.provenance, "device": str(device),
                                     "rebuilt_from": "variation.device_to_device"})
        out.append((str(device), member))
    return out

"""A device = its I-V compact card (read physics) + its programming behaviour (a pulse-update
card), loaded from files and checked together at the read voltage.

Consistency: the I-V card sets the read voltage and the programmable window at it (by the rules
of `circuitnn.devices.operating`, or as given); the pulse card's conductance range (in siemens)
must overlap that window, or the pair is refused. The pulse law is then mapped linearly by
relative position onto the window (`circuitnn.devices.pulse.scale_model`): pulse counts and
nonlinearity are kept, conductance noise scales with the span ratio `pulse_scale`. The pulse
card's conductances are taken as measured at its own read voltage (the TaOx card: 0.1 V); the
overlap is checked on the numbers as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from circuitnn.devices.card import ModelCard
from circuitnn.devices.models import MODELS
from circuitnn.devices.operating import (
    PULSE_MODEL,
    OperatingPoint,
    check_window,
    operating_point,
    with_operating_point,
)
from circuitnn.devices.pulse import PulseModel, pulse_response, scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.io import file_sha256


def load_pulse_card(path: str | Path) -> tuple[ModelCard, PulseModel]:
    """A pulse-update card and its law in siemens; anything else refused in one line."""
    pcard = ModelCard.load(path)
    if pcard.model != PULSE_MODEL:
        raise CircuitnnError(f"{path} is an I-V card (model {pcard.model!r}); a pulse-update "
                             "card is expected here (see circuitnn fit-pulse)")
    model = PulseModel.from_card(pcard)
    if model.unit != "S":
        raise CircuitnnError(f"{path}: pulse card conductances are in {model.unit!r} units, "
                             "not siemens; its range cannot be checked against a window")
    return pcard, model


@dataclass(frozen=True)
class DeviceProfile:
    """One device: I-V card with its operating point, and its pulse law mapped onto the window."""

    iv_card: ModelCard  # with its `operating` record (computed on load for older cards)
    iv_path: Path
    operating: OperatingPoint
    operating_source: str  # where v_read comes from: "card", "computed on load" or "given"
    pulse: PulseModel | None = None  # mapped onto the window
    pulse_card: ModelCard | None = None  # as on file
    pulse_path: Path | None = None
    pulse_scale: float | None = None  # window span / pulse card span

    @property
    def v_read(self) -> float:
        return self.operating.v_read

    @property
    def window(self) -> tuple[float, float]:
        """(g_min, g_max) in S at v_read."""
        return self.operating.require_window(str(self.iv_path))

    @classmethod
    def load(cls, iv_card: str | Path, pulse_card: str | Path | None = None,
             v_read: float | None = None, window: Any = None) -> DeviceProfile:
        """Build and check a device from its card files (v_read and window override the rules)."""
        iv_path = Path(iv_card)
        raw = ModelCard.load(iv_path)
        card = with_operating_point(raw, str(iv_path))
        source = "card" if card is raw else "computed on load"
        op = OperatingPoint.from_json(card.model, card.operating)
        if v_read is not None:
            op = operating_point(card, v_read=v_read, window=window, where=str(iv_path))
            source = "given"
        elif window is not None:
            op = replace(op, window=check_window(window, op.g_range, op.v_read),
                         window_rule="given")
        g_min, g_max = op.require_window(str(iv_path))
        if pulse_card is None:
            return cls(card, iv_path, op, source)
        p_path = Path(pulse_card)
        pcard, model = load_pulse_card(p_path)
        lo, hi = max(model.g_min, g_min), min(model.g_max, g_max)
        if not lo < hi:
            raise CircuitnnError(
                f"{p_path}: pulse card range [{model.g_min * 1e6:.4g}, {model.g_max * 1e6:.4g}] "
                f"uS does not overlap the window [{g_min * 1e6:.4g}, {g_max * 1e6:.4g}] uS of "
                f"{iv_path.name} at v_read = {op.v_read:g} V")
        k = (g_max - g_min) / (model.g_max - model.g_min)
        return cls(card, iv_path, op, source, scale_model(model, g_min, g_max), pcard, p_path, k)

    def summary(self) -> dict[str, Any]:
        """Plain JSON naming the device: card files (path, sha256), model, v_read, window."""
        pulse = None
        if self.pulse_path is not None:
            pulse = {"source": "card", "path": str(self.pulse_path),
                     "sha256": file_sha256(self.pulse_path), "pulse_scale": self.pulse_scale}
        return {"iv_card": {"path": str(self.iv_path), "sha256": file_sha256(self.iv_path),
                            "model": self.iv_card.model},
                "pulse": pulse, "v_read": self.v_read, "g_window": list(self.window)}

    def report(self) -> dict[str, Any]:
        """`summary` plus the card's citation and source, the operating point and, with a pulse
        card, `pulse_response` of the mapped law (what `circuitnn device check` prints)."""
        card = self.iv_card
        model = MODELS.get(card.model)
        prov = card.provenance
        data = [d.get("public_source", {}).get("dataset") for d in prov.get("data", [])]
        source = {"device": prov.get("device"), "datasets": sorted({d for d in data if d}),
                  "nrmse": card.fit.get("nrmse"), "published": prov.get("source")}
        out = self.summary()
        out["citation"] = model.citation if model else None
        out["source"] = {k: v for k, v in source.items() if v}
        out["operating"] = self.operating.to_json()
        out["operating"]["source"] = self.operating_source
        out["pulse_response"] = None if self.pulse is None else pulse_response(self.pulse)
        return out

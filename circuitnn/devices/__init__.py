"""Compact memristor models: one definition per model, simulated in numpy and ngspice alike."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.device import Device, Trace
from circuitnn.devices.models import MODELS, CompactModel, get_model
from circuitnn.devices.operating import OperatingPoint, operating_point, with_operating_point

#: folder of the shipped cards (the package `circuitnn.device_models`; a wheel installs it unpacked)
DEVICE_MODELS_DIR = Path(str(resources.files("circuitnn.device_models")))
BUILTIN_CARD = "stanford-pku-hfox.json"


def builtin_card() -> ModelCard:
    """The built-in card for the reference system's device class: Stanford-PKU, HfOx parameters."""
    return with_operating_point(ModelCard.load(DEVICE_MODELS_DIR / BUILTIN_CARD), BUILTIN_CARD)


def load_device(card: ModelCard | str | Path | None = None) -> Device:
    """A `Device` from an I-V card, a card path, or the built-in card when None; a card without
    an operating record gets its safe v_read on load (`circuitnn.devices.operating`)."""
    if card is None:
        card = builtin_card()
    elif not isinstance(card, ModelCard):
        where = str(card)
        card = with_operating_point(ModelCard.load(card), where)
    return Device.from_card(with_operating_point(card))


__all__ = ["MODELS", "CompactModel", "Device", "ModelCard", "OperatingPoint", "Parameter", "Trace",
           "builtin_card", "get_model", "load_device", "operating_point", "with_operating_point"]

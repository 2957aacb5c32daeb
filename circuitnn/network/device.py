"""The device a network is built from: one small typed object, the seam to the device layer.

`ArrayDevice` carries what the network, transfer and hybrid stages need of a memristor:
- `tile_card`: the I-V card of the cells for circuit reads (None = ohmic cells of exactly G);
- `v_read`: the read voltage (the card's own when it carries one, else the reference's 0.2 V);
- `window`: the programmable conductance window and number of device states;
- `pulse_model`: the pulse-update model (in its own card's window; `programming_model` maps it
  into `window` for write-verify and hybrid updates).

`array_device` builds it from card files (default: today's behaviour: the built-in Stanford-PKU
HfOx card at 0.2 V, window REF.choices, the fitted TaOx pulse card scaled into it).
DEVICE-LAYER SEAM: `array_device` is the single place where a device profile of
`circuitnn.devices` (I-V card + pulse card, safe read voltage, programmable window) plugs in.

Pulse card scaling: `circuitnn.devices.pulse.scale_model` maps the card linearly by relative
position onto the window (the TaOx card's 1.6-2.5 mS at 0.1 V onto the array's uS window).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, load_device
from circuitnn.devices.card import ModelCard
from circuitnn.devices.pulse import PulseModel, scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.network.mapping import Window
from circuitnn.reference import REF

DEFAULT_PULSE_CARD = DEVICE_MODELS_DIR / "taox-pulse.json"
DEFAULT_TILE_CARD = DEVICE_MODELS_DIR / BUILTIN_CARD


@dataclass(frozen=True)
class ArrayDevice:
    """The device of every cell: I-V card for reads, read voltage, window, pulse model."""

    tile_card: ModelCard | None
    v_read: float
    window: Window
    pulse_model: PulseModel
    sources: dict

    def programming_model(self, variation_scale: float = 1.0) -> PulseModel:
        """The pulse model mapped into the window (device-to-device spreads x variation)."""
        return scale_model(self.pulse_model, self.window.g_min, self.window.g_max,
                           variation_scale)

    @property
    def digest(self) -> str:
        """A short hash of everything that defines the device (for checkpoint keys)."""
        text = repr((self.sources, self.v_read, self.window))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def array_device(iv_card: str | os.PathLike | None = None,
                 pulse_card: str | os.PathLike | None = None, window: Window | None = None,
                 v_read: float | None = None) -> ArrayDevice:
    """The device from card files (None: the defaults described in the module text).

    iv_card: an I-V card (JSON) for the cells of circuit reads, or "ohmic"; its `v_read`
    parameter, when present, is the read voltage unless `v_read` is given. pulse_card: a
    `pulse-update` card. Checks everything here, before any long work.
    """
    # --- DEVICE-LAYER SEAM: replace the body below by the device layer's profile loader ------
    if iv_card == "ohmic":
        card, iv_source = None, "ohmic"
    else:
        path = Path(iv_card) if iv_card is not None else DEFAULT_TILE_CARD
        if not path.is_file():
            raise CircuitnnError(f"I-V card not found: {path}")
        card = ModelCard.load(path)
        if card.model == "pulse-update":
            raise CircuitnnError(f"{path}: a pulse-update card is not an I-V card (give it as "
                                 "the pulse card)")
        load_device(card)  # builds and checks the model
        iv_source = f"{path.name} ({_file_sha(path)})"
    if v_read is None:
        v_read = float(card.values().get("v_read", REF.hardware.v_read)) if card is not None \
            else REF.hardware.v_read
    if not 0 < v_read <= 1.0:
        raise CircuitnnError(f"read voltage must be in (0, 1] V, got {v_read}")
    pulse, pulse_source = load_pulse_model(pulse_card)
    window = window or Window()
    if card is not None:
        lo, hi = load_device(card).g_range
        if window.g_min < lo * 0.999 or window.g_max > hi * 1.001:
            raise CircuitnnError(
                f"conductance window {window.g_min * 1e6:g}-{window.g_max * 1e6:g} uS lies "
                f"outside the I-V card's range {lo * 1e6:.3g}-{hi * 1e6:.3g} uS")
    # -------------------------------------------------------------------------------------------
    return ArrayDevice(card, float(v_read), window, pulse,
                       {"iv_card": iv_source, "pulse_card": pulse_source})


def load_pulse_model(card: str | os.PathLike | None = None) -> tuple[PulseModel, str]:
    """The pulse model of a card file (None: the default TaOx card, fitted in memory from the
    measured data if the card file is missing). Returns (model, description of the source)."""
    if card is None and DEFAULT_PULSE_CARD.is_file():
        card = DEFAULT_PULSE_CARD
    if card is None:
        from circuitnn.fitting.pulse import fit_pulse, load_pulse_dataset

        fit = fit_pulse(load_pulse_dataset("taox-pulse"), n_sim=2)
        return fit.model, "taox-pulse (fitted in memory: device_models/taox-pulse.json missing)"
    path = Path(card)
    if not path.is_file():
        raise CircuitnnError(f"pulse card not found: {path}")
    model_card = ModelCard.load(path)
    if model_card.model != "pulse-update":
        raise CircuitnnError(f"{path}: device card model is '{model_card.model}', the weight "
                             "transfer needs a 'pulse-update' card (see circuitnn fit-pulse)")
    return PulseModel.from_card(model_card), f"{path.name} ({_file_sha(path)})"

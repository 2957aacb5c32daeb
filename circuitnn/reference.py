"""The reference system's numbers (Yao et al., Nature 2020), read once from a TOML preset.

`reference_yao2020.toml` (shipped inside the package) holds every number of the reference
memristor CNN that circuitnn uses, with the status of each (confirmed, unconfirmed, or this
project's choice). This module reads it into frozen dataclasses; every layer takes its defaults
from `REF` instead of retyping a number. It imports nothing of circuitnn but the error type, so
any layer may use it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

from circuitnn.errors import CircuitnnError

PRESET = "reference_yao2020.toml"


@dataclass(frozen=True)
class Hardware:
    """The chip as built: PEs, read voltage, bit widths, device levels, pulses."""

    n_pes: int
    pe_rows: int
    pe_cols: int
    v_read: float
    input_bits: int
    adc_bits: int
    device_levels: int
    convolver_groups: int
    read_pulse_s: float
    program_pulse_s: float
    set_pulse_v: float
    reset_pulse_v: float
    read_disturb_pulses: float

    @property
    def weight_levels(self) -> int:
        """Largest |weight level| of a differential pair: device_levels - 1 (levels -7..+7)."""
        return self.device_levels - 1


@dataclass(frozen=True)
class Choices:
    """Numbers the paper leaves open, chosen by this project (each a parameter everywhere)."""

    g_min: float
    g_max: float
    write_tolerance: float
    max_pulses: int
    cell_yield: float
    adc_fraction: float
    r_wire: float
    set_gate: float
    reset_gate: float
    hybrid_threshold: float
    hybrid_lr: float


@dataclass(frozen=True)
class Hybrid:
    """In-situ training of the FC layer as the reference ran it."""

    batches: int
    batch_size: int
    train_fraction: float


@dataclass(frozen=True)
class Energy:
    """Periphery energies of the reference's efficiency estimate (J per event)."""

    macro: int
    array_j: float
    drivers_j: float
    sample_hold_j: float
    adc_j: float
    add_j: float


@dataclass(frozen=True)
class Published:
    """Results reported by the paper (fractions, not percent)."""

    software_test_accuracy: float
    transfer_test_accuracy: float
    hybrid_test_accuracy: float
    train_error_before: float
    train_error_after: float
    three_group_before: float
    three_group_after: float
    per_group_error_before: dict[str, float]
    per_group_error_after: dict[str, float]
    gops_per_w: float
    gops_per_mm2: float
    resnet56_cifar10_accuracy: float
    resnet56_cifar10_std: float
    resnet56_replicate_first: int
    resnet56_hybrid_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Reference:
    """The whole preset."""

    hardware: Hardware
    choices: Choices
    hybrid: Hybrid
    energy: Energy
    published: Published


def _section(cls: type, table: Any, name: str) -> Any:
    if not isinstance(table, dict):
        raise CircuitnnError(f"{PRESET}: [{name}] must be a table")
    want = {f.name: f.type for f in fields(cls)}
    missing = sorted(set(want) - set(table))
    extra = sorted(set(table) - set(want))
    if missing or extra:
        raise CircuitnnError(f"{PRESET}: [{name}] missing {missing} / unknown {extra}")
    out = {}
    for key, typ in want.items():
        value = table[key]
        if typ == "int":
            value = int(value)
        elif typ == "float":
            value = float(value)
        out[key] = value
    return cls(**out)


def load_reference(text: str | None = None) -> Reference:
    """Parse the preset (the shipped file, or `text`) into a `Reference`."""
    if text is None:
        text = resources.files("circuitnn").joinpath(PRESET).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CircuitnnError(f"{PRESET}: not valid TOML ({exc})") from None
    sections = {"hardware": Hardware, "choices": Choices, "hybrid": Hybrid, "energy": Energy,
                "published": Published}
    return Reference(**{k: _section(cls, data.get(k), k) for k, cls in sections.items()})


#: the reference system, loaded once
REF = load_reference()

"""The ADC of every array read: uniform, `bits` bits on [0, full_scale] amperes.

Currents are rounded to the nearest code and saturate at both ends (negative currents read as
0, currents above full scale as full scale); the reconstructed current code x LSB is what the
shift-and-add sees. Reference hardware: 8-bit ADCs (Yao et al., Nature 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF

MAX_ADC_BITS = 24
FLOAT32_BITS = 16  # float32 currents are digitised in float32 up to this many bits


def adc_step(bits: int, full_scale: float) -> tuple[float, int]:
    """(the current of one code step in A, the top code 2**bits - 1), checked."""
    if not 1 <= bits <= MAX_ADC_BITS or not full_scale > 0:
        raise CircuitnnError(f"ADC needs bits in 1..{MAX_ADC_BITS} and full scale > 0 (got "
                             f"{bits}, {full_scale})")
    top = 2 ** bits - 1
    return full_scale / top, top


def adc_codes(current: np.ndarray, bits: int, full_scale: float) -> tuple[np.ndarray, float]:
    """Digitise currents (A): (codes 0..2**bits-1 as floats of the currents' float type, the
    current of one code step in A). Reconstructed currents are codes x step. (The compiled
    block read, `circuitnn.periphery.slotkernel`, converts the same way.)"""
    lsb, top = adc_step(bits, full_scale)
    cur = np.asarray(current)
    if cur.dtype == np.float32 and bits <= FLOAT32_BITS:  # codes stay exact integers in float32
        codes = cur * np.float32(1.0 / lsb)
    else:
        codes = np.asarray(cur, dtype=float) / lsb
    np.rint(codes, out=codes)
    np.clip(codes, 0, top, out=codes)
    return codes, lsb


def adc_convert(current: np.ndarray, bits: int, full_scale: float) -> np.ndarray:
    """Digitise currents (A) and return the reconstructed currents (A)."""
    codes, lsb = adc_codes(current, bits, full_scale)
    return np.asarray(codes, dtype=float) * lsb


@dataclass(frozen=True)
class ADC:
    """A uniform saturating ADC: `bits` bits on [0, full_scale] amperes."""

    bits: int = REF.hardware.adc_bits
    full_scale: float = 1e-4

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not (
                1 <= self.bits <= MAX_ADC_BITS):
            raise CircuitnnError(f"ADC bits must be an integer in 1..{MAX_ADC_BITS}, got "
                                 f"{self.bits!r}")
        fs = self.full_scale
        if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not (
                np.isfinite(fs) and fs > 0):
            raise CircuitnnError(f"ADC full_scale must be a positive current in A, got {fs!r}")

    @property
    def lsb(self) -> float:
        """Current of one code step (A)."""
        return self.full_scale / (2 ** self.bits - 1)

    def __call__(self, current: np.ndarray) -> np.ndarray:
        """Digitise and reconstruct currents (A)."""
        return adc_convert(np.asarray(current, dtype=float), self.bits, float(self.full_scale))

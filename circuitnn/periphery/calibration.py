"""Per-column digital gain and offset, as chips calibrate their columns after programming.

A column's digitised output (after ADC, shift-and-add and G+ minus G-) is measured for a few
calibration inputs and compared with the product the column should give (the inputs times the
intended weights). A straight line per column, target ~ gain x measured + offset, fitted by
least squares, is then applied digitally to every later output of that column, before partial
sums of a split layer are added. It removes what is linear in the column's output: the
attenuation of the column current by wire resistance (IR drop), a programming error common to
the column, the zero-input current. What depends on the input pattern (more rows driven, more
IR drop) is corrected on average over the calibration inputs only.
"""

from __future__ import annotations

import numpy as np

from circuitnn.errors import CircuitnnError

GAIN_RANGE = (0.25, 4.0)  # the digital multiplier's range: outside it the column is faulty


def fit_column_gains(measured: np.ndarray, target: np.ndarray,
                     gain_range: tuple[float, float] = GAIN_RANGE) -> np.ndarray:
    """(2, cols): gain and offset per column fitted so that gain x measured + offset ~ target
    (least squares over the calibration inputs, rows of measured and target (n, cols)).

    A column whose measurement does not vary (no input reaches it) keeps gain 1; gains are
    clipped to `gain_range` (the offset is refitted for the clipped gain)."""
    m, t = np.asarray(measured, float), np.asarray(target, float)
    if m.shape != t.shape or m.ndim != 2 or m.shape[0] < 2:
        raise CircuitnnError(f"column calibration needs measured and target of the same shape "
                             f"(n >= 2, cols), got {m.shape} and {t.shape}")
    mm, tm = m.mean(axis=0), t.mean(axis=0)
    dm = m - mm
    var = np.einsum("ij,ij->j", dm, dm)
    cov = np.einsum("ij,ij->j", dm, t - tm)
    scale = max(float(np.abs(m).max()), 1e-300) ** 2 * m.shape[0]
    ok = var > 1e-12 * scale
    gain = np.ones_like(mm)
    gain[ok] = cov[ok] / var[ok]
    gain = np.clip(gain, *gain_range)
    return np.stack([gain, tm - gain * mm])


def apply_column_gains(y: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """gain x y + offset per column, in place, for outputs y (n, cols) and gains (2, cols)."""
    y *= gains[0]
    y += gains[1]
    return y


def relative_error(y: np.ndarray, target: np.ndarray) -> float:
    """RMS of y - target over the RMS of target (0 when target is all zero and y equals it)."""
    t = float(np.sqrt(np.mean(np.square(target))))
    e = float(np.sqrt(np.mean(np.square(np.asarray(y) - target))))
    return e / t if t > 0 else e

"""Per-column digital gain/offset calibration (`circuitnn.periphery.calibration`): it undoes
the IR-drop attenuation of a real circuit read (nodal solver) on inputs it was not fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.periphery import bit_serial_matmul
from circuitnn.periphery.calibration import (
    apply_column_gains,
    fit_column_gains,
    relative_error,
)
from circuitnn.tile.read import read
from circuitnn.tile.spec import TileSpec

G_MIN, UNIT = 2e-6, 1e-6


def _nodal_product(codes: np.ndarray, levels: np.ndarray, r_wire: float) -> np.ndarray:
    """Bit-serial differential product of a 16-row tile through the nodal circuit solver."""
    gp = G_MIN + UNIT * np.maximum(levels, 0)
    gm = G_MIN + UNIT * np.maximum(-levels, 0)

    def column_read(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        spec = TileSpec(conductance=g, cell="passive", r_row=r_wire, r_col=r_wire, v_read=0.2)
        return read(spec, v, engine="nodal")

    return bit_serial_matmul(codes, gp, gm, g_unit=UNIT, v_read=0.2, adc_bits=None,
                             column_read=column_read)


def test_calibration_undoes_ir_drop_on_held_out_inputs():
    rng = np.random.default_rng(0)
    levels = rng.integers(-15, 16, (16, 4))
    calib, held_out = rng.integers(0, 256, (24, 16)), rng.integers(0, 256, (24, 16))
    measured = _nodal_product(calib, levels, r_wire=400.0)
    gains = fit_column_gains(measured, calib @ levels)
    assert np.all(gains[0] > 1.02)  # the wires attenuate every column: gains above one
    y, want = _nodal_product(held_out, levels, r_wire=400.0), held_out @ levels
    before = relative_error(y, want)
    after = relative_error(apply_column_gains(y.copy(), gains), want)
    assert before > 0.03 and after < 0.5 * before
    # no wire resistance: nothing to correct, the fit stays at unit gain
    ideal = _nodal_product(calib, levels, r_wire=1e-6)
    np.testing.assert_allclose(fit_column_gains(ideal, calib @ levels)[0], 1.0, atol=1e-3)


def test_fit_edge_cases():
    m = np.zeros((5, 3))
    m[:, 0] = np.arange(5)
    t = 2 * m + 1
    g = fit_column_gains(m, t)
    np.testing.assert_allclose(g[:, 0], [2.0, 1.0])
    np.testing.assert_allclose(g[:, 1:], [[1.0, 1.0], [1.0, 1.0]])  # no signal: unit gain
    assert fit_column_gains(m, 100 * m)[0, 0] == 4.0  # clipped to the multiplier's range
    with pytest.raises(CircuitnnError, match="same shape"):
        fit_column_gains(m, t[:, :2])

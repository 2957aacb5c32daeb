"""Programming transients and write-verify on small 1T1R tiles in real ngspice."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.devices import builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.tile.program import (
    measure_cell,
    program_netlist,
    program_pulse,
    write_verify_cell,
)
from circuitnn.tile.spec import TileSpec

CARD = builtin_card()


def tile(g: float, shape=(4, 4), **kw) -> TileSpec:
    return TileSpec(conductance=np.full(shape, g), device=CARD, **kw)


def _far(shape, row, col):
    far = np.ones(shape, dtype=bool)
    far[row, :] = False
    far[:, col] = False
    return far


@pytest.mark.ngspice
def test_set_pulse_raises_selected_cell_only():
    spec = tile(20e-6)
    r = program_pulse(spec, 1, 2, kind="set", v_pulse=2.5, v_gate=1.8, dt=2e-9)
    rel = (r.g_after - r.g_before) / r.g_before
    assert rel[1, 2] > 2.0  # 20 uS -> ~80 uS
    far = _far(spec.shape, 1, 2)
    assert np.max(np.abs(rel[far])) < 1e-9  # gates off: untouched to numerical noise
    half = np.ones(4, dtype=bool)
    half[2] = False
    assert np.max(np.abs(rel[1, half])) < 0.01 * rel[1, 2]  # V/2 inhibit protects the row
    # waveforms: current flows only while the pulse is on, state moves monotonically down
    assert abs(r.i_cell[0]) < 1e-9 and r.i_cell.max() > 1e-4
    assert np.all(np.diff(r.states_t[1, 2]) <= 1e-15)
    assert r.states_t.shape == (4, 4, r.t.size)
    np.testing.assert_allclose(r.spec_after.conductance[1, 2], r.g_after[1, 2], rtol=1e-9)
    # the next pulse starts from the state this one left
    r2 = program_pulse(r.spec_after, 1, 2, kind="set", v_pulse=2.5, v_gate=1.8,
                       states=r.states_after)
    np.testing.assert_array_equal(r2.states_before, r.states_after)
    assert r2.g_after[1, 2] >= r.g_after[1, 2] * 0.999


@pytest.mark.ngspice
def test_reset_pulse_lowers_selected_and_half_selected_change_less():
    spec = tile(50e-6, shape=(3, 3))
    r = program_pulse(spec, 1, 1, kind="reset", v_pulse=2.8, v_gate=3.6)
    drop = (r.g_before - r.g_after) / r.g_before
    assert drop[1, 1] > 0.8  # RESET: conductance falls
    half = drop[1, [0, 2]]
    assert np.all(half > 1e-3)  # visible disturb of the half-selected row neighbours ...
    assert np.all(half < 0.5 * drop[1, 1])  # ... but much less than the selected cell
    assert np.max(np.abs(drop[_far(spec.shape, 1, 1)])) < 1e-9
    assert r.i_cell.min() < -1e-4  # current flows from source line to bit line
    # inhibit at 0 V: in RESET the row neighbours see 0 V, in SET the full pulse
    z = program_pulse(spec, 1, 1, kind="reset", v_pulse=2.8, v_gate=3.6, inhibit="zero")
    zdrop = (z.g_before - z.g_after) / z.g_before
    assert np.max(np.abs(zdrop[1, [0, 2]])) < 1e-9
    spec = tile(20e-6, shape=(3, 3))
    z = program_pulse(spec, 1, 1, kind="set", v_pulse=2.5, v_gate=1.8, inhibit="zero")
    zrise = (z.g_after - z.g_before) / z.g_before
    np.testing.assert_allclose(zrise[1, [0, 2]], zrise[1, 1], rtol=0.05)


@pytest.mark.ngspice
def test_cross_dynamic_cells_match_all_dynamic():
    spec = tile(50e-6, shape=(3, 4))
    kw = {"kind": "reset", "v_pulse": 2.8, "v_gate": 3.6}
    cross = program_pulse(spec, 1, 2, **kw)
    full = program_pulse(spec, 1, 2, dynamic="all", **kw)
    np.testing.assert_allclose(cross.g_after, full.g_after, rtol=1e-6)
    np.testing.assert_allclose(cross.i_cell, full.i_cell, rtol=1e-5, atol=1e-9)
    text = program_netlist(spec, 1, 2)
    assert text.count(".ic v(x") == 3 + 4 - 1  # selected row and column only
    dyn = [ln for ln in text.splitlines() if ln.startswith("Xc") and ln.endswith(" celldyn")]
    assert len(dyn) == 3 + 4 - 1 and ".subckt celldyn" in text


@pytest.mark.ngspice
def test_time_step_and_netlist_content():
    spec = tile(20e-6, shape=(2, 2))
    text = program_netlist(spec, 0, 1, dt=1e-9)
    assert ".options noinit" in text and ".tran 1e-09" in text
    assert text.count(".ic v(x") == 3 and "Vs1 s1 0 PWL(" in text
    assert "Vs0 s0 0 DC 0" not in text
    coarse = program_pulse(spec, 0, 1, v_pulse=2.5, v_gate=1.8, dt=5e-9)
    fine = program_pulse(spec, 0, 1, v_pulse=2.5, v_gate=1.8, dt=1e-9)
    assert fine.t.size > 2 * coarse.t.size
    np.testing.assert_allclose(coarse.g_after[0, 1], fine.g_after[0, 1], rtol=0.05)


@pytest.mark.ngspice
def test_write_verify_set_and_reset_reach_targets():
    spec = tile(20e-6)
    up = write_verify_cell(spec, 2, 1, 60e-6, tol=0.05, max_pulses=20)
    assert up.success and 1 < up.n_pulses <= 20
    assert abs(up.g_trace[-1] - 60e-6) <= 0.05 * 60e-6
    assert up.g_trace.size == up.n_pulses + 1 and up.kinds.count("set") >= 3
    assert up.kinds[0] == "set" and np.all(np.diff(up.v_gates[:3]) > 0)  # gate ramp
    # the read-back agrees with the nodal engine on the final tile
    g_nodal = measure_cell(up.spec, 2, 1, up.states, engine="nodal")
    np.testing.assert_allclose(g_nodal, up.g_trace[-1], rtol=1e-5)
    # the measured (cell) conductance is below the device's own: the transistor is in series
    assert up.g_trace[-1] < up.g_device[-1]
    down = write_verify_cell(tile(150e-6), 0, 0, 40e-6, tol=0.05, max_pulses=20, engine="nodal")
    assert down.success and down.kinds[0] == "reset"
    assert abs(down.g_trace[-1] - 40e-6) <= 0.05 * 40e-6


@pytest.mark.ngspice
def test_write_verify_reports_failure_for_unreachable_target():
    spec = tile(20e-6, shape=(2, 2))
    g_max = spec.device_model.g_range[1]
    res = write_verify_cell(spec, 0, 0, 2 * g_max, tol=0.02, max_pulses=3, measure="device")
    assert not res.success and res.n_pulses == 3 and res.kinds == ["set"] * 3
    assert res.g_trace[-1] < 2 * g_max * 0.98
    done = write_verify_cell(spec, 0, 0, 20e-6, tol=0.05, measure="device")
    assert done.success and done.n_pulses == 0  # already within tolerance


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"row": 4}, "row must be"),
        ({"col": -1}, "col must be"),
        ({"kind": "form"}, "unknown pulse kind"),
        ({"inhibit": "third"}, "unknown inhibit"),
        ({"v_pulse": 9.0}, "v_pulse must be"),
        ({"v_pulse": float("nan")}, "v_pulse must be"),
        ({"dt": -1e-9}, "dt must be"),
        ({"width": "50n"}, "width must be"),
        ({"states": np.zeros((2, 2))}, "states must be"),
        ({"dynamic": "some"}, "unknown dynamic"),
    ],
)
def test_bad_pulse_inputs(kwargs, match):
    args = {"row": 0, "col": 0, **kwargs}
    row, col = args.pop("row"), args.pop("col")
    with pytest.raises(CircuitnnError, match=match):
        program_netlist(tile(20e-6), row, col, **args)


def test_bad_write_verify_inputs():
    spec = tile(20e-6, shape=(2, 2))
    with pytest.raises(CircuitnnError, match="device card"):
        program_netlist(TileSpec(conductance=np.full((2, 2), 1e-5)), 0, 0)
    for kw, match in [({"g_target": -1e-6}, "g_target"), ({"tol": 0.0}, "tol"),
                      ({"max_pulses": -1}, "max_pulses"), ({"measure": "guess"}, "measure"),
                      ({"set_gate": 0.0}, "set_gate"), ({"engine": "spectre"}, "unknown engine")]:
        args = {"g_target": 30e-6, **kw}
        with pytest.raises(CircuitnnError, match=match):
            write_verify_cell(spec, 0, 0, **args)


@pytest.mark.ngspice
def test_passive_tile_set_has_no_compliance():
    spec = tile(20e-6, shape=(3, 3), cell="passive")
    r = program_pulse(spec, 1, 1, kind="set", v_pulse=2.0)
    g_max = spec.device_model.g_range[1]
    assert r.g_after[1, 1] == pytest.approx(g_max, rel=1e-6)  # runaway SET without a transistor
    others = np.ones((3, 3), dtype=bool)
    others[1, 1] = False
    # row and column neighbours are half-selected at 1 V: below the switching threshold
    np.testing.assert_allclose(r.g_after[others], r.g_before[others], rtol=1e-6)

"""Nodal solver: closed-form circuits, element equations, large tiles (no ngspice needed)."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.devices import builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.tile import TIA, TileSpec, read
from circuitnn.tile.nodal import CellModel, NodalSolver, assemble_network, mos1_current
from circuitnn.tile.spec import Transistor

pytestmark = pytest.mark.ngspice


def test_single_ohmic_cell_is_a_series_resistance():
    g, r_row, r_col, r_drv = 1e-4, 3.0, 5.0, 7.0
    spec = TileSpec(np.array([[g]]), cell="passive", r_row=r_row, r_col=r_col, r_driver=r_drv)
    i = read(spec, np.array([[0.2], [-0.1]]), engine="nodal")
    np.testing.assert_allclose(i[:, 0], np.array([0.2, -0.1]) / (r_drv + r_row + 1 / g + r_col),
                               rtol=1e-13)


def test_one_row_ladder_matches_hand_solution():
    rng = np.random.default_rng(1)
    g = rng.uniform(1e-5, 1e-3, 9)
    r_row, r_col, v = 20.0, 7.0, 0.2
    spec = TileSpec(g[None, :], cell="passive", r_row=r_row, r_col=r_col)
    branch = 1 / g + r_col  # each column: cell + its one column segment to ground
    z = np.empty(9)  # input resistance looking right from node j
    z[-1] = branch[-1]
    for j in range(7, -1, -1):
        z[j] = 1 / (1 / branch[j] + 1 / (r_row + z[j + 1]))
    vn = np.empty(9)
    vn[0] = v * z[0] / (r_row + z[0])
    for j in range(1, 9):
        vn[j] = vn[j - 1] * z[j] / (r_row + z[j])
    np.testing.assert_allclose(read(spec, [v], engine="nodal"), vn / branch, rtol=1e-12)


def test_one_column_matches_thevenin_recursion():
    rng = np.random.default_rng(2)
    g = rng.uniform(1e-5, 1e-3, 7)
    v = rng.uniform(-0.2, 0.2, 7)
    r_row, r_col = 4.0, 9.0
    spec = TileSpec(g[:, None], cell="passive", r_row=r_row, r_col=r_col)
    vth, rth = v[0], r_row + 1 / g[0]
    for i in range(1, 7):
        ra, ri = rth + r_col, r_row + 1 / g[i]
        vth = (vth / ra + v[i] / ri) / (1 / ra + 1 / ri)
        rth = 1 / (1 / ra + 1 / ri)
    np.testing.assert_allclose(read(spec, v, engine="nodal"), [vth / (rth + r_col)], rtol=1e-12)


def test_ideal_wires_give_v_dot_g():
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-5, 1e-4, (6, 5))
    v = rng.uniform(0, 0.2, (4, 6))
    spec = TileSpec(g, cell="passive", r_row=0, r_col=0)
    np.testing.assert_allclose(read(spec, v, engine="nodal"), v @ g, rtol=1e-13)


def test_mos1_derivatives_and_symmetry():
    t = Transistor()
    vgs = np.linspace(0, 1.2, 13)[:, None]
    vds = np.linspace(-0.6, 0.6, 25)[None, :]
    ids, dg, dd = mos1_current(vgs, vds, t.beta, t.vto, t.lam)
    h = 1e-7
    num_g = (mos1_current(vgs + h, vds, t.beta, t.vto, t.lam)[0]
             - mos1_current(vgs - h, vds, t.beta, t.vto, t.lam)[0]) / (2 * h)
    num_d = (mos1_current(vgs, vds + h, t.beta, t.vto, t.lam)[0]
             - mos1_current(vgs, vds - h, t.beta, t.vto, t.lam)[0]) / (2 * h)
    np.testing.assert_allclose(dg, num_g, atol=1e-9)
    np.testing.assert_allclose(dd, num_d, atol=1e-9)
    off = (vgs <= t.vto) & (vds >= 0)  # (with vds < 0 the gate-drain voltage counts)
    assert np.all(np.broadcast_to(ids, off.shape)[off] == 0)
    # swapping drain and source reverses the current
    rev = mos1_current(vgs - vds, -vds, t.beta, t.vto, t.lam)[0]
    np.testing.assert_allclose(rev, -ids, atol=1e-18)
    # linear region at small vds: ids ~ beta (vgs - vto) vds
    small = mos1_current(1.2, 1e-6, t.beta, t.vto, t.lam)[0]
    assert small == pytest.approx(t.beta * 0.8 * 1e-6, rel=1e-5)


def test_1t1r_single_cell_matches_cell_current():
    card = builtin_card()
    spec = TileSpec(np.array([[1.5e-5]]), device=card, r_row=0, r_col=0)
    cells = CellModel(spec)
    expect = cells.cell_current(0.2, 0.0)
    got = read(spec, [0.2], engine="nodal")
    assert got[0] == pytest.approx(float(np.ravel(expect)[0]), rel=1e-10)
    # the transistor costs a little current: below the device alone, above half of it
    alone = float(spec.device_model.current(0.2, spec.states)[0, 0])
    assert 0.9 * alone < got[0] < alone


def test_row_mask_and_tia_in_nodal():
    g = np.full((3, 2), 1e-5)
    spec = TileSpec(g, row_mask=np.array([True, False, True]))
    i_masked = read(spec, np.full(3, 0.2), engine="nodal")
    i_two = read(TileSpec(g[:2]), np.full(2, 0.2), engine="nodal")
    assert i_masked == pytest.approx(i_two, rel=2e-3)
    tia = TileSpec(g, sense="tia", tia=TIA(gain=1e3, r_f=1e3, v_offset=1e-3))
    i_tia = read(tia, np.full(3, 0.2), engine="nodal")
    ideal = read(TileSpec(g), np.full(3, 0.2), engine="nodal")
    # the offset adds -V_os/R_f (1 uA) to the estimate, and lifts the column lines by ~1 mV
    # (cells then see 1 mV less: 3 cells x 1 mV x 1e-5 S = 30 nA less)
    np.testing.assert_allclose(i_tia, ideal - 1e-6 - 3e-8, rtol=2e-3)


def test_128x128_nonlinear_tile_converges():
    rng = np.random.default_rng(5)
    spec = TileSpec(rng.uniform(5e-6, 2e-5, (128, 128)), device=builtin_card())
    v = 0.2 * rng.integers(0, 2, (2, 128))
    i = NodalSolver(spec).solve(v)
    ideal = v @ spec.conductance
    assert i.shape == (2, 128)
    assert np.all(i < ideal) and np.all(i > 0.5 * ideal)


def test_network_merges_zero_resistances():
    spec = TileSpec(np.full((2, 3), 1e-5), r_row=0, r_col=2.0)
    net = assemble_network(spec)
    # row nodes merge into the known driver node: only mid and column nodes are unknown
    assert net.n == 2 * 3 + 2 * 3
    assert np.all(net.top.reshape(2, 3) == net.driver[:, None])


def test_bad_solver_inputs():
    spec = TileSpec(np.full((2, 2), 1e-5), cell="passive")
    with pytest.raises(CircuitnnError, match="shape"):
        NodalSolver(spec).solve(np.zeros((1, 3)))

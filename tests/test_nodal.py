"""Nodal solver: closed-form circuits, element equations, large tiles (no ngspice needed)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from circuitnn.devices import builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.tile import TIA, TileSpec, read
from circuitnn.tile.nodal import CellModel, NodalSolver, assemble_network, mos1_current
from circuitnn.tile.spec import Transistor


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


def _direct_linear_read(spec, v):
    """Reference for ohmic passive tiles: the full node network solved by a sparse direct LU."""
    net = assemble_network(spec)
    n, total = net.n, net.n + net.nk
    g = spec.conductance.ravel()
    a, b = net.top, net.bot
    lap = (net.lap + sp.csr_matrix((np.concatenate([g, g, -g, -g]), (
        np.concatenate([a, b, a, b]), np.concatenate([a, b, b, a]))), shape=(total, total))).tocsr()
    known = np.zeros((v.shape[0], net.nk))
    known[:, net.driver - n] = v
    rhs = -(lap[:n, n:] @ known.T) - net.i_const[:n, None]
    x = np.concatenate([np.atleast_2d(spla.spsolve(lap[:n, :n].tocsc(), rhs).T)
                        .reshape(v.shape[0], n), known], axis=1)
    if spec.sense == "ideal":
        return (g * (x[:, a] - x[:, b])).reshape(v.shape[0], *spec.shape).sum(axis=1)
    t = spec.tia
    return -t.gain * (t.v_offset - x[:, net.sense]) / t.r_f


TIA1 = TIA(gain=1e3, r_f=1e3, v_offset=1e-3)


@pytest.mark.parametrize("shape, g_range, kw", [
    ((12, 9), (1e-5, 1e-4), dict(r_row=2.0, r_col=3.0)),
    ((12, 9), (1e-5, 1e-4), dict(r_row=0.0, r_col=3.0, r_driver=10.0)),
    ((12, 9), (1e-5, 1e-4), dict(r_row=2.0, r_col=0.0, sense="tia", tia=TIA1)),
    ((12, 9), (1e-5, 1e-4), dict(r_row=2.0, r_col=5.0, r_driver=7.0, sense="tia", tia=TIA1)),
    ((12, 9), (1e-5, 1e-4), dict(r_row=0.0, r_col=0.0, r_driver=3.0, sense="tia", tia=TIA1)),
    ((40, 40), (1e-4, 1e-3), dict(r_row=50.0, r_col=50.0)),  # IR drop of the order of V
    ((1, 300), (1e-3, 1e-2), dict(r_row=1e5, r_col=1.0)),  # lines far beyond the closed form
    ((300, 2), (1e-3, 1e-2), dict(r_row=1.0, r_col=1e4)),
])
def test_linear_tiles_match_a_direct_sparse_solve(shape, g_range, kw):
    rng = np.random.default_rng(12)
    spec = TileSpec(rng.uniform(*g_range, shape), cell="passive", **kw)
    v = rng.uniform(-0.2, 0.2, (3, shape[0]))
    ref = _direct_linear_read(spec, v)
    # relative to the tile's current scale: mixed-sign inputs leave some columns near zero, and
    # along the extreme lines the currents fall by ~1e3 per cell
    np.testing.assert_allclose(read(spec, v, engine="nodal"), ref, rtol=1e-10,
                               atol=1e-10 * np.max(np.abs(ref)))


def test_extreme_lines_use_the_node_by_node_sweep():
    spec = TileSpec(np.full((1, 300), 1e-2), cell="passive", r_row=1e5)
    solve = NodalSolver(spec).rows.factor(spec.conductance)
    assert solve.s is not None  # attenuation out of the closed form's range


@pytest.mark.parametrize("kw", [
    dict(),
    dict(r_driver=30.0, r_col=0.5),
    dict(sense="tia", tia=TIA1),
    dict(r_row=0.0, r_driver=5.0),
    dict(r_col=0.0, sense="tia", tia=TIA1),
    dict(row_mask=np.array([True, False] * 4 + [True])),
])
def test_1t1r_node_voltages_satisfy_kcl_everywhere(kw):
    rng = np.random.default_rng(13)
    spec = TileSpec(rng.uniform(5e-6, 4e-5, (9, 5)), device=builtin_card(), **kw)
    v = rng.uniform(-0.2, 0.2, (3, 9))
    sol = NodalSolver(spec)
    x = sol.node_voltages(v)
    net, cells, shape = sol.net, sol.cells, (3, 9, 5)
    i_mem = cells.memristor((x[:, net.top] - x[:, net.mid]).reshape(shape))[0].reshape(3, -1)
    i_ds = cells.transistor(x[:, net.mid].reshape(shape), x[:, net.bot].reshape(shape))[0]
    i_ds = i_ds.reshape(3, -1)
    f = (net.lap @ x.T).T + net.i_const  # current leaving each node
    for k in range(3):
        np.add.at(f[k], net.top, i_mem[k])
        np.add.at(f[k], net.mid, i_ds[k] - i_mem[k])
        np.add.at(f[k], net.bot, -i_ds[k])
    assert np.max(np.abs(f[:, :net.n])) < 1e-14  # A; cell currents are ~1e-6 A
    np.testing.assert_allclose(sol.column_currents(x), sol.solve(v), rtol=1e-10)


def test_cell_current_is_exact_at_microvolts():
    spec = TileSpec(np.random.default_rng(2).uniform(5e-6, 25e-6, (4, 3)), device=builtin_card())
    cells = CellModel(spec)
    for vt in (1e-6, -1e-6, 0.2):
        top = np.full(spec.shape, vt)
        lo, hi = np.full(spec.shape, min(vt, 0.0)), np.full(spec.shape, max(vt, 0.0))
        for _ in range(200):  # reference: plain bisection of the internal node's KCL
            m = 0.5 * (lo + hi)
            f = cells.memristor(top - m)[0] - cells.transistor(m, 0.0)[0] - spec.gmin * m
            lo, hi = np.where(f > 0, m, lo), np.where(f > 0, hi, m)
        ref = cells.transistor(0.5 * (lo + hi), 0.0)[0]
        np.testing.assert_allclose(cells.cell_current(top, 0.0), ref, rtol=1e-12)


def test_unconverged_solve_and_bad_options_fail_in_one_line():
    spec = TileSpec(np.full((8, 4), 1e-5), device=builtin_card())
    v = np.full(8, 0.2)
    with pytest.raises(CircuitnnError, match="did not converge in 1 Newton") as err:
        read(spec, v, engine="nodal", max_iter=1)
    assert "\n" not in str(err.value)
    for opts, match in [({"tol": 0.0}, "tol"), ({"max_iter": 0}, "max_iter"),
                        ({"max_iter": 2.5}, "max_iter")]:
        with pytest.raises(CircuitnnError, match=match):
            read(spec, v, engine="nodal", **opts)

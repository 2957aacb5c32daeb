"""Surrogate of a tile whose cells have an asymmetric I-V (a slope jump at 0 V, as the fitted
Knowm M1 Yakopcic card): one-sided small-signal conductance plus the kink term, against nodal."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.devices import DEVICE_MODELS_DIR, builtin_card
from circuitnn.devices.profile import DeviceProfile
from circuitnn.surrogate.calibrate import draw_conductances, draw_inputs
from circuitnn.surrogate.model import UNIT_THETA, SurrogateTile
from circuitnn.surrogate.physics import cell_curves
from circuitnn.tile.read import read
from circuitnn.tile.spec import TileSpec

YAKOPCIC = DEVICE_MODELS_DIR / "knowm-m1-yakopcic.json"


@pytest.fixture(scope="module")
def tile():
    """A 16 x 8 tile in the card's default window, 2 ohm wires, read by nodal."""
    prof = DeviceProfile.load(YAKOPCIC)
    rng = np.random.default_rng(4)
    g = draw_conductances(rng, (16, 8), "uniform", *prof.window)
    spec = TileSpec(g, device=prof.iv_card, r_row=2.0, r_col=2.0, v_read=prof.v_read)
    v = draw_inputs(rng, 32, 16, spec.v_read)
    return spec, v, read(spec, v, engine="nodal")


def _rms_err(pred, truth):
    return float(np.sqrt(np.mean((pred - truth) ** 2) / np.mean(truth ** 2)))


def test_kink_is_measured_one_sided():
    prof = DeviceProfile.load(YAKOPCIC)
    a1, a2 = (prof.iv_card.values()[k] for k in ("a1", "a2"))
    g = np.full((2, 2), prof.window[0])
    cc = cell_curves(TileSpec(g, device=prof.iv_card, v_read=prof.v_read))
    # the memristor's slope ratio a2 / a1 below 0 V, seen through the series transistor
    assert np.all(cc.kink > 0.5 * (1 - a2 / a1) * cc.p1)
    assert np.all(cc.p1 > cc.gch * 0.98)  # one-sided slope, not the mean of both branches
    hfox = cell_curves(TileSpec(np.full((2, 2), 10e-6), device=builtin_card()))
    assert not np.any(hfox.kink)  # a smooth I-V has no kink


def test_asymmetric_tile_matches_nodal(tile):
    spec, v, truth = tile
    sur = SurrogateTile(spec)  # unit theta: pure first order, no calibration
    assert _rms_err(sur.read(v, binary=False), truth) < 0.01
    no_kink = SurrogateTile(spec, dict(UNIT_THETA, kink=0.0))
    assert _rms_err(no_kink.read(v, binary=False), truth) > 0.005  # the term is needed
    vb = (np.random.default_rng(1).random((8, 16)) < 0.5) * spec.v_read
    np.testing.assert_allclose(sur.read(vb, binary=True), sur.read(vb, binary=False),
                               rtol=1e-10, atol=1e-18)
    assert _rms_err(sur.read(vb), read(spec, vb, engine="nodal")) < 0.01


def test_asymmetric_tile_input_gradient(tile):
    spec, v, _ = tile
    sur = SurrogateTile(spec)
    w = np.random.default_rng(2).normal(size=(v.shape[0], spec.cols))
    d_v, _ = sur.vjp(v, w, wrt_g=False)
    b, i = np.argwhere(v > 0.1 * spec.v_read)[3]  # away from 0 V, where the kink mask flips
    h = 1e-7
    vp, vm = v.copy(), v.copy()
    vp[b, i] += h
    vm[b, i] -= h
    fd = float(np.sum(w * (sur.read(vp, binary=False) - sur.read(vm, binary=False)))) / (2 * h)
    assert d_v[b, i] == pytest.approx(fd, rel=1e-5)


def test_asymmetric_tile_conductance_gradient(tile):
    """dL/dG within 5% of finite differences: the kink term's reverse-bias transfer of the
    linear tile is held fixed in the gradient (its own dependence on G is left out)."""
    spec, v, _ = tile
    sur = SurrogateTile(spec)
    w = np.random.default_rng(2).normal(size=(v.shape[0], spec.cols))
    _, d_g = sur.vjp(v, w)
    g0 = spec.conductance

    def loss(g):
        return float(np.sum(w * SurrogateTile(spec.with_(conductance=g)).read(v, binary=False)))

    for i, j in [(0, 0), (5, 3), (15, 7)]:
        e = 1e-4 * g0[i, j]
        gp, gm = g0.copy(), g0.copy()
        gp[i, j] += e
        gm[i, j] -= e
        assert d_g[i, j] == pytest.approx((loss(gp) - loss(gm)) / (2 * e), rel=0.05)

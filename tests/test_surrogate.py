"""Surrogate of 1T1R tile reads: calibration, accuracy against ngspice, domain, gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest

import circuitnn.surrogate  # noqa: F401  (registers the "surrogate" engine)
from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.surrogate.calibrate import TileSet, calibrate, draw_inputs, tile_task
from circuitnn.surrogate.card import SurrogateCard, find_card
from circuitnn.surrogate.model import SurrogateTile
from circuitnn.surrogate.read import read
from circuitnn.surrogate.validate import TARGETS, validate
from circuitnn.tile.spec import TileSpec

SHIPPED = DEVICE_MODELS_DIR / "surrogate-stanford-pku-hfox-128x16.json"


@pytest.fixture(scope="module")
def small_card(tmp_path_factory):
    """A surrogate calibrated in the test for 16 x 8 tiles (nodal data on Dask)."""
    work = tmp_path_factory.mktemp("sur")
    tiles = TileSet(rows=16, cols=8, r_range=(0.0, 3.0), g_range=(5e-6, 25e-6), n_vectors=24)
    card = calibrate(tiles, work / "surrogate-test-16x8.json", work / "data", n_tiles=4,
                     n_check=0, seed=3, progress=False)
    return card, tiles, work


def _spec(rows=16, cols=8, seed=0, **kw):
    g = np.random.default_rng(seed).uniform(6e-6, 20e-6, (rows, cols))
    return TileSpec(g, device=builtin_card(), **kw)


@pytest.mark.ngspice
def test_small_card_accuracy_against_ngspice(small_card):
    card, tiles, work = small_card
    assert card.fit["train_nodal"]["rms_pct"] < 0.1
    res = validate(card, tiles, work / "val", n_tiles=2, engine="ngspice", progress=False,
                   plot=work / "parity.png")
    m = res["surrogate"]
    assert res["in_domain"] and res["vectors"] == 48
    assert m["rms_pct"] <= TARGETS["rms_pct"]
    assert m["max_pct"] <= TARGETS["max_pct"]
    assert m["captured_pct"] >= TARGETS["captured_pct"]
    assert m["ideal_rms_pct"] > 1.0  # the circuit effects are really there
    assert (work / "parity.png").stat().st_size > 10_000


def test_read_engine_and_binary_path(small_card):
    card, _, _ = small_card
    spec = _spec(r_row=2.0, r_col=1.0)
    rng = np.random.default_rng(5)
    vb = (rng.random((20, 16)) < 0.5) * spec.v_read
    i_sur = read(spec, vb, engine="surrogate", card=card.path)
    i_nod = read(spec, vb, engine="nodal")
    rms = np.sqrt(np.mean(i_nod ** 2))
    assert np.sqrt(np.mean((i_sur - i_nod) ** 2)) < 0.005 * rms
    tile = SurrogateTile(spec, card.theta)
    assert tile.is_binary(vb)
    np.testing.assert_allclose(tile.read(vb, binary=True), tile.read(vb, binary=False),
                               rtol=1e-10, atol=1e-18)
    one = read(spec, vb[0], engine="surrogate", card=card.path)
    assert one.shape == (8,)


@pytest.mark.parametrize("change, words", [
    (dict(r_row=4.0), "r_row"),
    (dict(r_col=3.5), "r_col"),
    (dict(v_gate=1.0), "v_gate"),
    (dict(sense="tia"), "sense"),
    (dict(row_mask=np.arange(16) < 8), "row_mask"),
    (dict(conductance=np.full((16, 8), 40e-6)), "conductances"),
    (dict(conductance=np.full((8, 8), 10e-6)), "geometry"),
    (dict(device=None), "ohmic"),
])
def test_refuses_specs_outside_domain(small_card, change, words):
    card, _, _ = small_card
    spec = _spec().with_(**change)
    with pytest.raises(CircuitnnError, match="circuitnn surrogate fit") as err:
        read(spec, np.zeros(spec.rows), engine="surrogate", card=card.path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_refuses_other_device_card_and_inputs(small_card, tmp_path):
    card, _, _ = small_card
    obj = builtin_card().to_json()
    obj["parameters"]["V0"]["value"] = 0.3
    other = ModelCard.from_json(obj)
    spec = _spec().with_(device=other)
    with pytest.raises(CircuitnnError, match="device card differs"):
        read(spec, np.zeros(16), engine="surrogate", card=card.path)
    with pytest.raises(CircuitnnError, match="outside calibrated"):
        read(_spec(), np.full(16, 0.25), engine="surrogate", card=card.path)
    with pytest.raises(CircuitnnError, match="outside calibrated"):
        read(_spec(), np.full(16, -0.05), engine="surrogate", card=card.path)
    # no card anywhere covers a 16 x 8 tile when searching an empty folder
    with pytest.raises(CircuitnnError, match="no calibrated surrogate covers"):
        find_card(_spec(), tmp_path)


def test_bad_card_files(tmp_path):
    p = tmp_path / "surrogate-bad.json"
    p.write_text("{not json")
    with pytest.raises(CircuitnnError, match="cannot read"):
        SurrogateCard.load(p)
    p.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(CircuitnnError, match="not a surrogate card"):
        SurrogateCard.load(p)
    p.write_text(json.dumps({"schema": "circuitnn.surrogate/2", "theta": {"nl": 1}}))
    with pytest.raises(CircuitnnError, match="theta"):
        SurrogateCard.load(p)
    with pytest.raises(CircuitnnError, match="not found"):
        SurrogateCard.load(tmp_path / "missing.json")


@pytest.mark.ngspice
def test_shipped_card_against_ngspice():
    assert SHIPPED.exists()
    card = SurrogateCard.load(SHIPPED)
    assert card.domain["shape"] == [128, 16]
    assert card.provenance["data"]["reads"] >= 1000
    out = tile_task("ngspice", 987_654, 128, 16, "uniform", *card.domain["conductance"],
                    1.5, 2.5, 16, builtin_card().to_json(), {})
    spec = TileSpec(out["G"], device=builtin_card(), r_row=float(out["r"][0]),
                    r_col=float(out["r"][1]))
    pred = read(spec, out["V"], engine="surrogate")  # finds the shipped card
    truth, ideal = out["I"], out["V"] @ out["G"]
    rms = np.sqrt(np.mean(truth ** 2))
    err = pred - truth
    assert np.sqrt(np.mean(err ** 2)) <= 0.005 * rms
    assert np.max(np.abs(err)) <= 0.02 * rms
    assert 1 - np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean((ideal - truth) ** 2)) >= 0.95


@pytest.mark.parametrize("sense", ["ideal", "tia"])
def test_gradients_match_finite_differences(sense):
    rng = np.random.default_rng(11)
    spec = _spec(rows=8, cols=4, seed=2, r_row=2.0, r_col=3.0, sense=sense)
    theta = {"nl": 0.9, "row": 0.8, "diag": 3.0, "bil": 0.7, "kink": 1.0}
    tile = SurrogateTile(spec, theta)
    v = np.concatenate([draw_inputs(rng, 8, 8, spec.v_read)])
    w = rng.normal(size=(v.shape[0], 4))

    def loss(vv, gg=None):
        t = tile if gg is None else SurrogateTile(spec.with_(conductance=gg), theta)
        return float(np.sum(w * t.read(vv, binary=False)))

    d_v, d_g = tile.vjp(v, w)
    h = 1e-6
    for b, i in [(0, 0), (3, 5), (7, 7)]:
        vp, vm = v.copy(), v.copy()
        vp[b, i] += h
        vm[b, i] -= h
        fd = (loss(vp) - loss(vm)) / (2 * h)
        assert d_v[b, i] == pytest.approx(fd, rel=1e-5, abs=1e-12)
    g0 = spec.conductance
    for i, j in [(0, 0), (4, 2), (7, 3)]:
        e = 1e-4 * g0[i, j]
        gp, gm = g0.copy(), g0.copy()
        gp[i, j] += e
        gm[i, j] -= e
        fd = (loss(v, gp) - loss(v, gm)) / (2 * e)
        assert d_g[i, j] == pytest.approx(fd, rel=2e-4)


def test_cli_rejects_bad_arguments():
    from click.testing import CliRunner

    from circuitnn.cli.surrogate import surrogate

    r = CliRunner().invoke(surrogate, ["fit", "--rows", "1"])
    assert r.exit_code != 0 and "rows >= 2" in str(r.exception)
    r = CliRunner().invoke(surrogate, ["fit", "--r-min", "2", "--r-max", "1"])
    assert r.exit_code != 0 and "--r-max" in str(r.exception)
    r = CliRunner().invoke(surrogate, ["validate", "--help"])
    assert r.exit_code == 0 and "ngspice" in r.output

"""Tile reads: ngspice and the nodal solver agree; netlists are deterministic; bad input fails.

Agreement bounds: 1e-10 relative on ohmic tiles, 1e-8 with the card (ten times ngspice's own
reltol of 1e-9 in the read netlists); measured agreement is ~1e-12 or better.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest

from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, builtin_card, load_device
from circuitnn.errors import CircuitnnError
from circuitnn.spice import read_raw
from circuitnn.surrogate.read import ENGINES, check_engine
from circuitnn.surrogate.read import read as read_any
from circuitnn.tile import TIA, TILE_ENGINES, TileSpec, read
from circuitnn.tile.netlist import output_vectors, read_netlist

ROOT = Path(__file__).resolve().parents[1]
CARD = builtin_card()


def _g(shape, seed=0):
    return np.random.default_rng(seed).uniform(5e-6, 20e-6, shape)


def _v(batch, rows, seed=1):
    return np.random.default_rng(seed).uniform(0, 0.2, (batch, rows))


def _agree(spec, v, rtol):
    a = read(spec, v, engine="ngspice")
    b = read(spec, v, engine="nodal")
    assert a.shape == b.shape == (v.shape[0], spec.cols)
    np.testing.assert_allclose(b, a, rtol=rtol, atol=0)
    return a


@pytest.mark.ngspice
@pytest.mark.parametrize("shape", [(4, 4), (16, 16)])
@pytest.mark.parametrize("cell", ["passive", "1t1r"])
def test_ohmic_tiles_agree_1e10(shape, cell):
    spec = TileSpec(_g(shape), cell=cell, device=None, r_row=2.5, r_col=1.5)
    _agree(spec, _v(3, shape[0]), 1e-10)


@pytest.mark.ngspice
@pytest.mark.parametrize("shape", [(4, 4), (16, 16)])
def test_1t1r_card_tiles_agree_1e8(shape):
    _agree(TileSpec(_g(shape, 2), device=CARD), _v(4, shape[0], 3), 1e-8)


@pytest.mark.ngspice
def test_reference_128x16_agrees_1e8():
    spec = TileSpec(_g((128, 16), 4), device=CARD)
    v = np.vstack([np.full(128, 0.2), _v(1, 128, 5)])
    i = _agree(spec, v, 1e-8)
    ideal = v @ spec.conductance
    assert np.all(i < ideal) and np.all(i > 0.8 * ideal)


@pytest.mark.ngspice
def test_driver_resistance_merged_wires_and_negative_inputs_agree():
    spec = TileSpec(_g((5, 3), 6), device=CARD, r_driver=50.0, r_row=0.0, r_col=3.0,
                    r_wl=0.0)
    _agree(spec, np.array([[0.2, -0.2, 0.1, 0.0, -0.05]]), 1e-8)


@pytest.mark.ngspice
def test_passive_vs_1t1r():
    g = _g((8, 4), 7)
    v = np.full((1, 8), 0.2)
    p = read(TileSpec(g, cell="passive", device=CARD), v, engine="ngspice")
    t = read(TileSpec(g, cell="1t1r", device=CARD), v, engine="ngspice")
    # the access transistor (~0.94 kOhm on) in series with 50-200 kOhm cells costs a few %
    ratio = t / p
    assert np.all(ratio < 1) and np.all(ratio > 0.97)


@pytest.mark.ngspice
def test_row_mask_in_both_engines():
    g = _g((6, 3), 8)
    mask = np.array([True, False, True, True, False, True])
    spec = TileSpec(g, device=CARD, row_mask=mask)
    v = np.full((1, 6), 0.2)
    masked = _agree(spec, v, 1e-8)
    only = read(TileSpec(g[mask], device=CARD), v[:, mask], engine="nodal")
    np.testing.assert_allclose(masked, only, rtol=1e-4)  # off rows carry ~0 (gmin) current


@pytest.mark.ngspice
def test_tia_in_both_engines():
    tia = TIA(gain=2e3, r_f=2e3, v_offset=2e-3)
    spec = TileSpec(_g((4, 4), 9), device=CARD, sense="tia", tia=tia)
    i = _agree(spec, _v(2, 4, 10), 1e-8)
    ideal = read(TileSpec(_g((4, 4), 9), device=CARD), _v(2, 4, 10), engine="nodal")
    # offset: -V_os / R_f = -1 uA, plus ~2 mV less across each cell (column lines lifted)
    assert np.all(np.abs(i - (ideal - 1e-6)) < 0.04 * ideal)


def test_netlist_is_deterministic_and_validated():
    spec = TileSpec(_g((3, 2)), device=CARD)
    v = _v(2, 3)
    a = read_netlist(spec, v)
    assert a == read_netlist(TileSpec(_g((3, 2)), device=CARD), v.copy())
    assert ".save i(vs0) i(vs1)" in a and ".dc Vbatch_idx 0 1 1" in a
    with pytest.raises(CircuitnnError, match="title"):
        read_netlist(spec, v, title="x\n.control\nshell rm -rf /")


@pytest.mark.ngspice
def test_example_netlists_run_with_plain_ngspice(tmp_path):
    sp = importlib.util.spec_from_file_location("examples", ROOT / "netlists" / "generate.py")
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    for name, (spec, v) in mod.examples().items():
        path = ROOT / "netlists" / f"{name}.cir"
        text = path.read_text()
        assert text == read_netlist(spec, v, title=name), f"{path} is stale: rerun generate.py"
        raw = tmp_path / f"{name}.raw"
        proc = subprocess.run(["ngspice", "-b", "-r", str(raw), str(path)], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-500:]
        plot = next(p for p in read_raw(raw) if p.plotname.lower().startswith("dc"))
        got = np.stack([plot.data[k].real for k in output_vectors(spec)], axis=1)
        rtol = 1e-10 if spec.device is None else 1e-8
        np.testing.assert_allclose(read(spec, v, engine="nodal"), got, rtol=rtol, atol=1e-18)


def test_engine_registry():
    spec = TileSpec(_g((2, 2)), cell="passive", r_row=0.0, r_col=0.0)
    # one record per engine: the tile layer's three are the registry's own records
    assert set(TILE_ENGINES) == {"ideal", "nodal", "ngspice"}
    assert set(ENGINES) == {"ideal", "quantised", "surrogate", "nodal", "ngspice"}
    assert all(ENGINES[name] is rec for name, rec in TILE_ENGINES.items())
    assert [e for e, rec in ENGINES.items() if rec.circuit] == ["surrogate", "nodal", "ngspice"]
    assert [e for e, rec in ENGINES.items() if not rec.chain] == ["ngspice"]
    want = np.array([0.1, 0.2]) @ spec.conductance
    # without wires a passive ohmic tile is the ideal crossbar, whatever the engine
    for engine in ("ideal", "nodal"):
        np.testing.assert_allclose(read(spec, [0.1, 0.2], engine=engine), want, rtol=1e-12)
        np.testing.assert_allclose(read_any(spec, [0.1, 0.2], engine=engine), want, rtol=1e-12)
    with pytest.raises(CircuitnnError, match="unknown engine 'spice'"):
        read(spec, [0.1, 0.2], engine="spice")
    with pytest.raises(CircuitnnError, match="the surrogate's included"):
        read(spec, [0.1, 0.2], engine="surrogate")
    with pytest.raises(CircuitnnError, match="'quantised' reads no tile by itself"):
        read_any(spec, [0.1, 0.2], engine="quantised")
    with pytest.raises(CircuitnnError, match="unknown engine 'spice'; known: ideal, quantised"):
        check_engine("spice")


@pytest.mark.parametrize("kwargs, match", [
    ({"conductance": np.ones(3)}, "2-D"),
    ({"conductance": np.array([[1e-5, -1e-5]])}, "finite and > 0"),
    ({"conductance": np.array([[1e-5, np.nan]])}, "finite and > 0"),
    ({"conductance": np.array([[1e-5, 0.0]])}, "finite and > 0"),
    ({"conductance": np.array([[1e-5, 1.0]]), "device": CARD}, "outside the card's range"),
    ({"conductance": np.array([[1e-5]]), "cell": "2t2r"}, "unknown cell"),
    ({"conductance": np.array([[1e-5]]), "r_row": -1.0}, "r_row"),
    ({"conductance": np.array([[1e-5]]), "r_col": np.inf}, "r_col"),
    ({"conductance": np.array([[1e-5]]), "row_mask": np.array([1, 1])}, "row_mask"),
    ({"conductance": np.array([[1e-5]]), "sense": "adc"}, "unknown sense"),
    ({"conductance": np.array([[1e-5]]), "v_gate": 9.0}, "v_gate"),
])
def test_bad_specs(kwargs, match):
    with pytest.raises(CircuitnnError, match=match):
        TileSpec(**kwargs)


@pytest.mark.parametrize("engine", ["ngspice", "nodal"])
@pytest.mark.parametrize("v, match", [
    (np.zeros((2, 3)), "shape"),
    (np.zeros((2, 2, 2)), "shape"),
    (np.array([[0.1, np.nan]]), "not finite"),
    (np.array([[0.1, np.inf]]), "not finite"),
    (np.array([[0.1, 6.0]]), "within"),
    (np.array([[0.1, 1.5]]), "switching threshold"),
    ("0.1,0.2", "not a string"),
])
def test_bad_inputs(engine, v, match):
    spec = TileSpec(np.array([[1e-5], [2e-5]]), device=CARD)
    with pytest.raises(CircuitnnError, match=match):
        read(spec, v, engine=engine)


def test_disturb_threshold_from_card():
    spec = TileSpec(np.array([[1e-5]]), device=CARD)
    assert 0.5 < spec.disturb_voltage < 1.5  # Stanford-PKU: field threshold F_min
    assert TileSpec(np.array([[1e-5]])).disturb_voltage == np.inf


@pytest.mark.parametrize("name", ["stanford-pku-hfox", "knowm-m1-yakopcic", "bipolar-vteam"])
def test_a_first_read_below_the_cards_threshold_computes_no_cell_state(name):
    card = ModelCard.load(DEVICE_MODELS_DIR / f"{name}.json")
    lo, hi = load_device(card).g_range
    spec = TileSpec(np.random.default_rng(4).uniform(lo, hi, (8, 4)), device=card)
    read(spec, np.full(8, spec.v_read), engine="ideal")
    assert "states" not in spec.__dict__  # no bisection of every cell's state for the check
    # the card's threshold (any state of its range) never lies above the tile's own
    assert 0 < spec.card_threshold <= spec.disturb_voltage
    with pytest.raises(CircuitnnError, match="reaches the device's switching threshold"):
        read(spec, np.full(8, spec.disturb_voltage), engine="ideal")


@pytest.mark.parametrize("name", ["stanford-pku-hfox", "knowm-m1-yakopcic", "bipolar-vteam"])
def test_disturb_threshold_is_where_states_start_to_move(name):
    card = ModelCard.load(DEVICE_MODELS_DIR / f"{name}.json")
    lo, hi = load_device(card).g_range
    spec = TileSpec(np.random.default_rng(3).uniform(lo, hi, (4, 3)), device=card)
    # the definition for these hard-threshold models: the first point of the whole 1 mV grid up
    # to V_MAX where a state moves, refined below it (to 1 uV): nothing moves just under it
    s = np.quantile(spec.states, [0, 0.25, 0.5, 0.75, 1.0])
    v = np.arange(1, 5001) * 1e-3
    vv = np.concatenate([v, -v])[:, None]
    rate = spec.device_model.rate
    first = np.min(np.abs(vv[np.any(rate(vv, s[None, :]) != 0, axis=1), 0]))
    vd = spec.disturb_voltage
    assert first - 1e-3 < vd <= first
    below = np.array([[vd - 2e-6], [-(vd - 2e-6)]])
    assert not np.any(rate(below, s[None, :]) != 0)


def test_states_shared_by_equal_conductances_are_exact():
    g = np.linspace(5e-6, 20e-6, 5)[np.random.default_rng(4).integers(0, 5, (6, 4))]
    spec = TileSpec(g, device=CARD)
    assert np.array_equal(spec.states, spec.device_model.state_for_conductance(g, spec.v_read))

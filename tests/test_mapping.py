"""Tests of the mapping onto tiles, the conductance encoding and the bit-serial engines."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn import periphery as P
from circuitnn.errors import CircuitnnError
from circuitnn.network import engines as E
from circuitnn.network import graph, layers, presets, quantise
from circuitnn.network import mapping as M
from circuitnn.network.data import load_dataset
from circuitnn.network.device import array_device
from circuitnn.training import exsitu

CNN5 = presets.cnn5()
UNIT = M.Window().unit


def _levels(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(-7, 8, CNN5.weight_shape(k)).astype(np.int8)
            for k in CNN5.weight_layers}


def _rebuild(m: M.Mapping, levels: dict, layer: str, group: int) -> np.ndarray:
    g = M.target_conductances(m, levels)
    return np.rint(M.effective_levels(m, g, layer, group, UNIT)).astype(int)


@pytest.mark.parametrize("n_groups", [1, 2, 3])
def test_reference_map_places_every_weight_once(n_groups):
    q = _levels()
    mp = M.reference_map(n_groups)
    for layer in mp.shapes:
        for g in range(mp.groups[layer]):
            assert np.array_equal(_rebuild(mp, q, layer, g), q[layer])
    cells = sum((p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start)
                for p in mp.placements)
    assert cells == 2 * (n_groups * (72 + 864) + 1920)
    assert mp.tiles_used == 2 * n_groups + 2 <= 8
    for p in mp.placements:
        assert 0 <= p.tile < 8 and p.rows.stop <= 128 and p.cols.stop <= 16
    # the hand placement is data: it survives a JSON round trip
    assert M.Mapping.from_dict(mp.to_dict()).to_dict() == mp.to_dict()


def test_auto_map_resnet_with_replication(tmp_path):
    net = presets.preset("resnet20", (28, 28, 1))
    shapes = {k: net.weight_shape(k) for k in net.weight_layers}
    mp = M.auto_map(shapes, {"conv1": 4})
    rng = np.random.default_rng(1)
    q = {k: rng.integers(-7, 8, s).astype(np.int8) for k, s in shapes.items()}
    for layer in ("conv1", "s1b0c1", "s3b2c2", "fc"):
        for g in range(mp.groups[layer]):
            assert np.array_equal(_rebuild(mp, q, layer, g), q[layer])
    assert mp.groups["conv1"] == 4 and len(mp.of("conv1", 3)) == 2  # 16 outputs: 2 x 8 pairs
    # a 576 x 64 layer: 5 row blocks (128 rows) x 8 column blocks (8 pairs per tile)
    assert len(mp.of("s3b2c2", 0)) == 40
    weights = 4 * 9 * 16 + sum(k * n for k, n in list(shapes.values())[1:])
    assert mp.used_cells().sum() == 2 * weights
    assert mp.tiles_used == mp.n_tiles and 0.5 < mp.utilisation() <= 1.0
    assert mp.chips == -(-mp.n_tiles // 8)
    text = M.describe_mapping(mp)
    assert "conv1" in text and f"{mp.tiles_used} tiles" in text
    M.plot_mapping(mp, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mp.save(tmp_path / "map.json")
    assert M.Mapping.load(tmp_path / "map.json").to_dict() == mp.to_dict()
    small = M.auto_map({"a": (10, 3), "b": (5, 2)}, rows=16, cols=8)
    assert small.n_tiles == 1  # both blocks share one tile
    with pytest.raises(CircuitnnError, match="more than 2 tiles"):
        M.auto_map(shapes, max_tiles=2)
    with pytest.raises(CircuitnnError, match="unknown layer"):
        M.auto_map(shapes, {"conv9": 2})


def test_pair_partners_are_the_neighbouring_columns():
    mp = M.auto_map({"a": (10, 3), "b": (5, 2)}, rows=16, cols=8)  # b sits at odd columns
    part = mp.partners()
    used = mp.used_cells()
    flat = np.flatnonzero(used)
    assert np.array_equal(part.reshape(-1) >= 0, used.reshape(-1))
    assert np.array_equal(part.reshape(-1)[part.reshape(-1)[flat]], flat)  # pairs are mutual
    assert np.all(np.abs(part.reshape(-1)[flat] - flat) == 1)  # same row, next column
    for p in mp.placements:  # G+ (even offset in the block) pairs with the G- after it
        first = np.ravel_multi_index((p.tile, p.rows.start, p.cols.start), part.shape)
        assert part.reshape(-1)[first] == first + 1


def test_pe_cells_encode_the_weights_with_pairs():
    q = _levels(1)
    mp = M.reference_map(3)
    w = M.Window(1e-6, 15e-6, 8)
    g = M.target_conductances(mp, q, w)
    assert g.shape == (8, 128, 16)
    assert g.min() >= 1e-6 - 1e-18 and g.max() <= 15e-6 + 1e-18
    for p in mp.placements:
        cells = g[p.tile, p.rows, p.cols]
        lv = M.conductance_to_weights(cells[:, 0::2], cells[:, 1::2], w, rounded=True)
        assert np.array_equal(lv, q[p.layer][p.w_rows, p.w_cols])
    pair_min = np.minimum(g[..., 0::2], g[..., 1::2])
    assert np.allclose(pair_min, 1e-6)


def test_weights_to_conductance_levels():
    w = np.arange(-7, 8)
    win = M.Window(2e-6, 16e-6, 8)
    gp, gm = M.weights_to_conductance(w, win)
    assert gp[-1] == pytest.approx(16e-6) and gm[0] == pytest.approx(16e-6)
    assert np.allclose(gp[:8], 2e-6) and np.allclose(gm[7:], 2e-6)
    states = np.unique(np.concatenate([gp, gm]))
    assert len(states) == 8 and np.allclose(np.diff(states), 2e-6)
    assert np.allclose(M.conductance_to_weights(gp, gm, win), w)


def test_mapping_bad_inputs():
    q = _levels()
    with pytest.raises(CircuitnnError, match="n_groups"):
        M.reference_map(4)
    mp = M.reference_map(1)
    with pytest.raises(CircuitnnError, match="shape"):
        M.target_conductances(mp, {**q, "C3": np.zeros((12, 72), int)})
    with pytest.raises(CircuitnnError, match="shape"):
        M.target_conductances(mp, {k: v for k, v in q.items() if k != "FC"})
    with pytest.raises(CircuitnnError, match="integers"):
        M.weights_to_conductance(np.array([0.5]))
    with pytest.raises(CircuitnnError, match="integers"):
        M.weights_to_conductance(np.array([8]))
    with pytest.raises(CircuitnnError, match="g_min"):
        M.Window(5e-6, 5e-6)
    with pytest.raises(CircuitnnError, match="overlap"):
        mp.placements.append(mp.placements[0])
        M.check_mapping(mp)
    with pytest.raises(CircuitnnError, match="bad mapping"):
        M.Mapping.from_dict({"placements": [[1]]})


# ----------------------------------------------------------------------------- bit-serial
def test_bit_serial_many_bit_adc_equals_float_matmul():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 72))
    w = rng.integers(-7, 8, (72, 12))
    gp, gm = M.weights_to_conductance(w)
    unit = UNIT
    exact = P.bit_serial_matmul(x, gp, gm, g_unit=unit, adc_bits=None)
    assert np.allclose(exact, x @ w, atol=1e-6)
    fine = P.bit_serial_matmul(x, gp, gm, g_unit=unit, adc_bits=24, chunk=7)
    # 24-bit step over a 288 uA range ~ 3e-5 weight levels per slot: error < 0.01 after 8 slots
    assert np.allclose(fine, x @ w, atol=0.01)
    coarse = P.bit_serial_matmul(x, gp, gm, g_unit=unit, adc_bits=4)
    assert np.abs(coarse - x @ w).max() > np.abs(fine - x @ w).max()


def test_adc_saturates_and_rounds():
    i = np.array([-1.0, 0.0, 0.26, 0.5, 2.0])
    out = P.adc_convert(i, 2, 0.9)  # codes 0..3, step 0.3
    assert np.allclose(out, [0.0, 0.0, 0.3, 0.6, 0.9])


def test_column_read_is_pluggable():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 9))
    gp, gm = M.weights_to_conductance(rng.integers(-7, 8, (9, 8)))
    calls = []

    def lossy(v, g):
        calls.append((v.shape, g.shape))
        assert set(np.unique(v)) <= {0.0, 0.2}
        return 0.9 * (v @ g)

    y = P.bit_serial_matmul(x, gp, gm, g_unit=UNIT, adc_bits=None,
                            column_read=lossy)
    ref = P.bit_serial_matmul(x, gp, gm, g_unit=UNIT, adc_bits=None)
    assert calls == [((80, 9), (9, 16))] and np.allclose(y, 0.9 * ref)
    with pytest.raises(CircuitnnError, match="column_read"):
        P.bit_serial_matmul(x, gp, gm, g_unit=1e-6, column_read=lambda v, g: v)


def test_bit_serial_bad_inputs():
    gp, gm = M.weights_to_conductance(np.zeros((4, 2), int))
    with pytest.raises(CircuitnnError, match="integers"):
        P.bit_serial_matmul(np.full((2, 4), 0.5), gp, gm, g_unit=1e-6)
    with pytest.raises(CircuitnnError, match="integers"):
        P.bit_serial_matmul(np.full((2, 4), 256), gp, gm, g_unit=1e-6)
    with pytest.raises(CircuitnnError, match="match"):
        P.bit_serial_matmul(np.zeros((2, 5), int), gp, gm, g_unit=1e-6)
    with pytest.raises(CircuitnnError):
        P.bit_serial_matmul(np.zeros((2, 4), int), gp, gm, g_unit=0.0)
    with pytest.raises(CircuitnnError, match="ADC"):
        P.adc_convert(np.zeros(3), 0, 1.0)


# ----------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def trained():
    data = load_dataset()
    cfg = exsitu.TrainConfig(epochs=3, batch_size=32, lr=5e-3, seed=0)
    sub = np.random.default_rng(0).permutation(len(data.y_train))[:600]
    res = exsitu.train(CNN5, data.x_train[sub], data.y_train[sub], cfg, progress=False)
    return data, res.params


def _chip(params, calib, n_groups=1, adc_bits=8):
    q, scales = quantise.quantise_params(CNN5, params)
    m = M.reference_map(n_groups)
    return E.ChipState(CNN5, m, M.target_conductances(m, q), scales,
                       E.calibrate_activation_scales(CNN5, params, calib), array_device(),
                       adc_bits=adc_bits), q, scales


@pytest.mark.ngspice
def test_quantised_engine_without_adc_is_exact_integer_arithmetic(trained):
    data, params = trained
    chip, q, scales = _chip(params, data.x_train[:100], adc_bits=None)
    eng = E.build_engine(chip, "quantised")
    x = np.random.default_rng(0).random((4, 11, 11, 72)) * 3
    codes = eng.quantise_input("C3", x)
    assert codes.max() <= 255 and codes.min() >= 0
    want = (codes @ q["C3"].astype(float)) * eng.chip.act_scales["C3"] * scales["C3"]
    # float32 array products: within 1e-5 of the largest output (one level is ~3e-3 of it)
    np.testing.assert_allclose(eng("C3", x, params["C3"]), want, rtol=0,
                               atol=1e-5 * np.abs(want).max())
    pix = data.x_test[:2]
    cols = layers.im2col(graph.preprocess(CNN5, pix), 3)
    assert np.array_equal(eng.quantise_input("C1", cols), layers.im2col(pix[..., None], 3))


@pytest.mark.ngspice
def test_three_groups_match_one_group_on_ideal_arrays(trained):
    data, params = trained
    one = E.build_engine(_chip(params, data.x_train[:100], 1)[0], "quantised")
    three = E.build_engine(_chip(params, data.x_train[:100], 3)[0], "quantised")
    x = graph.preprocess(CNN5, data.x_test[:20])
    assert np.allclose(graph.forward(CNN5, params, x, one),
                       graph.forward(CNN5, params, x, three))
    # corrupting group 2's C1 cells changes only the bottom third of C1's output rows
    three.chip.conductances[4, 72:81, :] = M.Window().g_min
    cols = layers.im2col(x, 3)
    y1, y3 = one("C1", cols, params["C1"]), three("C1", cols, params["C1"])
    assert np.allclose(y1[:, :18], y3[:, :18]) and not np.allclose(y1[:, 18:], y3[:, 18:])
    # group=2 alone: every row computed by the corrupted replica
    alone = E.build_engine(three.chip, "quantised", group=2)
    assert not np.allclose(alone("C1", cols)[:, :9], y1[:, :9])


@pytest.mark.ngspice
def test_engine_accuracies_close_to_software(trained):
    data, params = trained
    xt, yt = data.x_test[:300], data.y_test[:300]
    chip = _chip(params, data.x_train[:200])[0]
    soft = graph.accuracy(CNN5, params, xt, yt)
    hw = graph.accuracy(CNN5, params, xt, yt, E.build_engine(chip, "quantised"))
    ideal = graph.accuracy(CNN5, params, xt, yt, E.build_engine(chip, "ideal"))
    assert soft > 0.6 and hw > soft - 0.08 and ideal > soft - 0.08


@pytest.mark.ngspice
def test_engine_bad_inputs(trained):
    data, params = trained
    chip = _chip(params, data.x_train[:10])[0]
    with pytest.raises(CircuitnnError, match="unknown engine"):
        E.build_engine(chip, "spice")
    with pytest.raises(CircuitnnError, match="circuit engine"):
        E.build_engine(chip, "quantised", tile_options={"r_row": 1.0})
    with pytest.raises(CircuitnnError, match="negative inputs"):
        net = graph.Network("neg", (28, 28, 1), 10, [
            graph.Node("flat", "flatten", ("input",)),
            graph.Node("a", "linear", ("flat",), {"out": 16}),
            graph.Node("b", "linear", ("a",), {"out": 10})])
        p = net.init_params(0)
        p["b_a"] -= 5.0
        E.calibrate_activation_scales(net, p, data.x_train[:5])

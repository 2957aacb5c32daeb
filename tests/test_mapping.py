"""Tests of the PE mapping, the conductance encoding and the bit-serial engines."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn import periphery as P
from circuitnn.errors import CircuitnnError
from circuitnn.network import cnn, quantise
from circuitnn.network import engines as E
from circuitnn.network import mapping as M
from circuitnn.network.data import load_dataset
from circuitnn.training import exsitu


def _levels(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(-7, 8, s).astype(np.int8) for k, s in M.LAYER_SHAPES.items()}


@pytest.mark.parametrize("n_groups", [1, 2, 3])
def test_every_weight_placed_exactly_once(n_groups):
    q = _levels()
    mp = M.map_weights(q, n_groups)
    for layer in M.LAYER_SHAPES:
        for g in range(n_groups if layer != "FC" else 1):
            assert np.array_equal(M.reconstruct(mp, layer, g), q[layer])
    # count cells: C1 + C3 per group, FC once, two cells per weight
    cells = sum((p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start)
                for p in mp.placements)
    assert cells == 2 * (n_groups * (72 + 864) + 1920)
    assert mp.pes_used == 2 * n_groups + 2 <= 8
    for p in mp.placements:
        assert 0 <= p.pe < 8 and p.rows.stop <= 128 and p.cols.stop <= 16
        assert p.cols.stop - p.cols.start == 2 * (p.w_cols.stop - p.w_cols.start)


def test_pe_cells_encode_the_weights_with_pairs():
    q = _levels(1)
    mp = M.map_weights(q, 3)
    g = M.pe_conductances(mp, 8, 1e-6, 15e-6)
    assert g.shape == (8, 128, 16)
    assert g.min() >= 1e-6 - 1e-18 and g.max() <= 15e-6 + 1e-18
    # decode every PE back to weights and compare with the layer matrices
    for p in mp.placements:
        cells = g[p.pe, p.rows, p.cols]
        w = M.conductance_to_weights(cells[:, 0::2], cells[:, 1::2], 8, 1e-6, 15e-6, rounded=True)
        assert np.array_equal(w, q[p.layer][p.w_rows, p.w_cols])
    # one cell of each pair stays at g_min
    pair_min = np.minimum(g[..., 0::2], g[..., 1::2])
    assert np.allclose(pair_min, 1e-6)


def test_weights_to_conductance_levels():
    w = np.arange(-7, 8)
    gp, gm = M.weights_to_conductance(w, 8, 2e-6, 16e-6)
    assert gp[-1] == pytest.approx(16e-6) and gm[0] == pytest.approx(16e-6)
    assert np.allclose(gp[:8], 2e-6) and np.allclose(gm[7:], 2e-6)
    states = np.unique(np.concatenate([gp, gm]))
    assert len(states) == 8 and np.allclose(np.diff(states), 2e-6)
    assert np.allclose(M.conductance_to_weights(gp, gm, 8, 2e-6, 16e-6), w)


def test_mapping_bad_inputs():
    q = _levels()
    with pytest.raises(CircuitnnError, match="n_groups"):
        M.map_weights(q, 4)
    with pytest.raises(CircuitnnError, match="shape"):
        M.map_weights({**q, "C3": np.zeros((12, 72))})
    with pytest.raises(CircuitnnError, match="shape"):
        M.map_weights({k: v for k, v in q.items() if k != "FC"})
    with pytest.raises(CircuitnnError, match="integers"):
        M.weights_to_conductance(np.array([0.5]))
    with pytest.raises(CircuitnnError, match="integers"):
        M.weights_to_conductance(np.array([8]))
    with pytest.raises(CircuitnnError, match="g_min"):
        M.weights_to_conductance(np.array([1]), 8, 5e-6, 5e-6)
    with pytest.raises(CircuitnnError, match="overlap"):
        mp = M.map_weights(q, 1)
        mp.placements.append(mp.placements[0])
        M.check_mapping(mp)


def test_describe_and_plot(tmp_path):
    mp = M.map_weights(_levels(), 3)
    text = M.describe_mapping(mp)
    assert "8 PEs used" in text and text.count("C1 group") == 3 and "PE 7" in text
    out = M.plot_mapping(mp, tmp_path / "figures" / "map.png")
    assert (tmp_path / "figures" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.endswith("map.png")


# ----------------------------------------------------------------------------- bit-serial
def test_bit_serial_many_bit_adc_equals_float_matmul():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 72))
    w = rng.integers(-7, 8, (72, 12))
    gp, gm = M.weights_to_conductance(w)
    unit = M.conductance_unit()
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

    y = P.bit_serial_matmul(x, gp, gm, g_unit=M.conductance_unit(), adc_bits=None,
                            column_read=lossy)
    ref = P.bit_serial_matmul(x, gp, gm, g_unit=M.conductance_unit(), adc_bits=None)
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
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CIRCUITNN_MNIST_DIR", raising=False)
        data = load_dataset()
    cfg = exsitu.TrainConfig(epochs=3, batch_size=32, lr=5e-3, seed=0)
    res = exsitu.train(data.x_train[:600], data.y_train[:600], cfg, progress=False)
    return data, res.params


def test_quantised_engine_without_adc_is_exact_integer_arithmetic(trained):
    data, params = trained
    eng = E.build_engine(params, data.x_train[:100], adc_bits=None, n_groups=1)
    q, scales = quantise.quantise_params(params)
    x = np.random.default_rng(0).random((4, 11, 11, 72)) * 3
    codes = eng.quantise_input("C3", x)
    assert codes.max() <= 255 and codes.min() >= 0
    want = (codes @ q["C3"].astype(float)) * eng.act_scales["C3"] * scales["C3"]
    assert np.allclose(eng("C3", x, params["C3"]), want)
    pix = data.x_test[:2]
    cols = cnn.im2col(cnn.preprocess(pix))
    assert np.array_equal(eng.quantise_input("C1", cols), cnn.im2col(pix[..., None]))


def test_three_groups_match_one_group_on_ideal_arrays(trained):
    data, params = trained
    one = E.build_engine(params, data.x_train[:100], n_groups=1)
    three = E.build_engine(params, data.x_train[:100], n_groups=3)
    x = cnn.preprocess(data.x_test[:20])
    assert np.allclose(cnn.forward(params, x, one), cnn.forward(params, x, three))
    # corrupting group 2's C1 cells changes only the bottom third of C1's output rows
    three.conductances[4, 72:81, :] = M.DEFAULT_G_MIN
    cols = cnn.im2col(x)
    y1, y3 = one("C1", cols, params["C1"]), three("C1", cols, params["C1"])
    assert np.allclose(y1[:, :18], y3[:, :18]) and not np.allclose(y1[:, 18:], y3[:, 18:])


def test_engine_accuracies_close_to_software(trained):
    data, params = trained
    xt, yt = data.x_test[:300], data.y_test[:300]
    soft = cnn.accuracy(params, xt, yt, E.build_engine(params, kind="ideal"))
    hw = cnn.accuracy(params, xt, yt, E.build_engine(params, data.x_train[:200]))
    assert soft > 0.6 and hw > soft - 0.08


def test_engine_bad_inputs(trained):
    data, params = trained
    with pytest.raises(CircuitnnError, match="unknown engine"):
        E.build_engine(params, data.x_train[:10], kind="spice")
    with pytest.raises(CircuitnnError, match="calibration"):
        E.build_engine(params, None)
    with pytest.raises(CircuitnnError, match="adc_fraction"):
        E.build_engine(params, data.x_train[:10], adc_fraction=0.0)

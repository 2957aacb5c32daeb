"""Pulse-update model and its fit to the two real pulse datasets (taox-pulse, reram-pulse-gong)."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.pulse import PulseModel
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.pulse import (
    fit_pulse,
    fit_pulse_cli_main,
    load_pulse_dataset,
    load_ramp_table,
    step_spread,
)


@pytest.fixture(scope="module")
def taox_fit():
    return fit_pulse(load_pulse_dataset("taox-pulse"), n_sim=10, seed=0)


@pytest.fixture(scope="module")
def gong_fit():
    # two spline knot counts (the CLI and benchmark try four) keep this test file fast
    return fit_pulse(load_pulse_dataset("reram-pulse-gong"), n_sim=10, seed=0,
                     spline_knots=(6, 8))


def _model(**kw) -> PulseModel:
    base = dict(g_min=1e-6, g_max=1e-4, pmax_p=50, nu_p=0.03, pmax_d=40, nu_d=-0.02,
                sigma_add_p=2e-7, sigma_mult_p=0.1, sigma_add_d=2e-7, sigma_level=1e-7,
                rho_level=0.3, d2d={"g_min_std": 1e-7, "g_max_std": 2e-6, "scale_p_std": 0.1,
                                    "scale_d_std": 0.1})
    base.update(kw)
    return PulseModel(**base)


# ---------------------------------------------------------------- real fits
@pytest.mark.measured
def test_taox_mean_ramp_and_spread(taox_fit):
    data = taox_fit.data
    assert data.up.shape[1] == 39 and data.down.shape[1] == 40
    m = taox_fit.model
    assert 1.5e-3 < m.g_min < 1.7e-3 and 2.4e-3 < m.g_max < 2.6e-3  # siemens
    for tag in ("p", "d"):
        q = taox_fit.metrics[tag]
        assert q["mean_ramp_max_dev_rel"] < 0.05, q
        assert 0.8 < q["step_spread_ratio"] < 1.2, q
    # SET steps grow with G in this device (accelerating): the fit must find nu_p < 0
    assert m.nu_p < 0
    assert m.mean_step(m.g_max * 0.99, 1) > 2 * m.mean_step(m.g_min * 1.01, 1)


@pytest.mark.measured
def test_gong_spread_and_mean_ramp(gong_fit):
    m = gong_fit.model
    assert m.unit == "normalised"
    assert -1.5 < m.g_min < -0.8 and 0.8 < m.g_max < 1.5
    assert m.sigma_level > 0.05  # the data are noisy by nature
    for tag in ("p", "d"):
        q = gong_fit.metrics[tag]
        assert "100-pulse blocks" in q["mean_ramp_definition"]
        assert q["mean_ramp_max_dev_rel"] <= 0.05, q
        assert 0.8 < q["step_spread_ratio"] < 1.2, q
        # against the 21-pulse running mean no monotone ramp (whatever the law) gets within 5%
        assert q["running21_monotone_bound_rel"] > 0.05, q
        assert q["mean_ramp_monotone_bound_rel"] < 0.05, q


@pytest.mark.measured
def test_both_laws_fitted_and_choice_rule(taox_fit, gong_fit):
    for fit in (taox_fit, gong_fit):
        laws = fit.metrics["laws"]
        for name in ("exponential", "spline"):
            for tag in ("p", "d"):
                assert 0 <= laws[name][tag]["mean_ramp_max_dev_rel"] < 0.2
        exp_ok = laws["exponential"]["worst_dev"] <= 0.05
        better = laws["spline"]["worst_dev"] < laws["exponential"]["worst_dev"]
        expected = "exponential" if exp_ok or not better else "spline"
        assert fit.metrics["law"] == expected == fit.card.fit["law"]
        assert fit.model.law == (1 if expected == "spline" else 0)
        assert fit.card.parameters["law"].value == fit.model.law
        # the spline (more parameters) never fits the reads worse than the exponential law
        for tag in ("p", "d"):
            assert laws["spline"][tag]["bic"] < laws["exponential"][tag]["bic"] + 50


@pytest.mark.measured
def test_spline_fit_card_round_trip(taox_fit, tmp_path):
    """A spline-law model written to a card and read back is the same law."""
    m0 = taox_fit.model
    kp = [0.02, 0.01, 0.004, 0.006, 0.02]
    kd = [0.01, 0.03, 0.02, 0.01]
    spline = PulseModel(m0.g_min, m0.g_max, m0.pmax_p, m0.nu_p, m0.pmax_d, m0.nu_d,
                        sigma_level=1e-7, unit="S", law=1, fp=kp, fd=kd)
    card = ModelCard("pulse-update", spline.card_parameters(), variation=spline.variation())
    assert card.parameters["fp_4"].unit == "1/pulse" and "fp_5" not in card.parameters
    back = PulseModel.from_card(ModelCard.load(card.save(tmp_path / "s.json")))
    assert back.law == 1 and back.fp == tuple(kp) and back.fd == tuple(kd)
    g = np.linspace(*m0.g_range, 9)
    for sign in (1, -1):
        np.testing.assert_allclose(back.mean_step(g, sign), spline.mean_step(g, sign))
    # the knot values are the mean step (fraction of the window per pulse) at the knots
    span = m0.g_max - m0.g_min
    np.testing.assert_allclose(spline.mean_step(m0.g_min + span * np.linspace(0, 1, 5), 1),
                               np.array(kp) * span, rtol=1e-12)
    np.testing.assert_allclose(spline.mean_step(m0.g_min + span * np.linspace(0, 1, 4), -1),
                               -np.array(kd) * span, rtol=1e-12)
    # a card with a gap in its knots, an unknown law, or a bad knot value is refused
    params = spline.card_parameters()
    del params["fp_2"]
    with pytest.raises(CircuitnnError, match="without gaps"):
        PulseModel.from_card(ModelCard("pulse-update", params))
    params = spline.card_parameters()
    params["law"] = Parameter(2.0)
    with pytest.raises(CircuitnnError, match="law"):
        PulseModel.from_card(ModelCard("pulse-update", params))
    params = spline.card_parameters()
    params["fd_1"] = Parameter(-0.01, "1/pulse")
    with pytest.raises(CircuitnnError, match="must be > 0"):
        PulseModel.from_card(ModelCard("pulse-update", params))


def test_old_card_without_law_is_exponential(tmp_path):
    m = _model()
    params = m.card_parameters()
    del params["law"]
    back = PulseModel.from_card(ModelCard("pulse-update", params, variation=m.variation()))
    assert back.law == 0
    g = np.linspace(*m.g_range, 7)
    np.testing.assert_allclose(back.mean_step(g, 1), m.mean_step(g, 1))


@pytest.mark.measured
def test_card_round_trip(taox_fit, gong_fit, tmp_path):
    for fit in (taox_fit, gong_fit):
        path = fit.card.save(tmp_path / f"{fit.data.name}.json")
        card = ModelCard.load(path)
        assert card.model == "pulse-update"
        assert card.provenance["dataset"] == fit.data.name
        assert card.provenance["source"]
        assert card.parameters["pmax_p"].stderr is not None
        model = PulseModel.from_card(card)
        assert model.g_range == pytest.approx(fit.model.g_range)
        g = np.linspace(*model.g_range, 7)
        for sign in (1, -1):
            np.testing.assert_allclose(model.mean_step(g, sign), fit.model.mean_step(g, sign))
        assert model.sigma_level == pytest.approx(fit.model.sigma_level)
        assert model.d2d == pytest.approx(fit.model.d2d)
    assert ModelCard.load(tmp_path / "reram-pulse-gong.json").parameters["g_min"].unit == \
        "normalised"


@pytest.mark.measured
def test_cli_main_writes_card_and_figure(tmp_path):
    fit = fit_pulse_cli_main("taox-pulse", card_out=tmp_path / "c.json",
                             figure=tmp_path / "f.png", n_sim=2)
    assert ModelCard.load(tmp_path / "c.json").model == "pulse-update"
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert fit.metrics["p"]["n_simulations"] == 2


# ---------------------------------------------------------------- the model
def test_spline_law_monotone_positive_bounded_vectorised():
    kp = [3e-2, 2e-3, 1e-4, 5e-4, 1e-2, 4e-2, 2e-2, 5e-3]  # fast start, plateau, rise
    kd = [1e-3, 2e-2, 2e-2, 8e-3, 1e-4, 3e-3]
    m = _model(law=1, fp=kp, fd=kd, sigma_mult_p=0.0)
    grid = np.linspace(m.g_min, m.g_max, 2001)
    up, dn = m.mean_step(grid, 1), m.mean_step(grid, -1)
    assert np.all(up > 0) and np.all(dn < 0)
    span = m.g_max - m.g_min
    # PCHIP in log space does not overshoot the knot values
    assert up.max() <= max(kp) * span * (1 + 1e-12) and up.min() >= min(kp) * span * (1 - 1e-12)
    assert np.all(np.diff(grid) + np.diff(up) > 0)  # order of states is kept by a pulse
    # noise-free ramps are monotone, stay in bounds, and reach the bound
    ramp = m.ramp(np.array([m.g_min, 3e-5]), 3000, +1)
    assert np.all(np.diff(ramp, axis=0) >= 0) and np.all(ramp <= m.g_max)
    np.testing.assert_allclose(ramp[-1], m.g_max)
    down = m.ramp(m.g_max, 3000, -1)
    assert np.all(np.diff(down) <= 0) and down[-1] == pytest.approx(m.g_min)
    # ramp (fast path) and repeated step agree
    g = np.array([m.g_min, 3e-5])
    for _ in range(20):
        g = m.step(g, 1)
    np.testing.assert_allclose(g, ramp[20], rtol=1e-12)
    # any shape, mixed signs, per-device windows and scales from sample_devices
    rng = np.random.default_rng(4)
    for shape in [(), (6,), (3, 4), (2, 3, 2)]:
        devs = m.sample_devices(shape, rng)
        g0 = devs["g_min"] + rng.uniform(0, 1, shape) * (devs["g_max"] - devs["g_min"])
        pulses = rng.integers(-40, 41, size=shape)
        out = m.step(g0, pulses, rng, devs)
        assert np.shape(out) == shape
        assert np.all(out >= devs["g_min"]) and np.all(out <= devs["g_max"])
        det = m.step(g0, pulses, None, devs)
        assert np.all(np.sign(det - g0) == np.sign(pulses))
        # the law scales with each device's window and step scale
        u = (g0 - devs["g_min"]) / (devs["g_max"] - devs["g_min"])
        ref = m.mean_step(m.g_min + u * span, 1) / span
        np.testing.assert_allclose(m.mean_step(g0, 1, devs),
                                   devs["scale_p"] * (devs["g_max"] - devs["g_min"]) * ref,
                                   rtol=1e-9)
    with pytest.raises(CircuitnnError, match="knot"):
        _model(law=1, fp=[1e-3], fd=kd)
    with pytest.raises(CircuitnnError, match="law"):
        _model(law=3)


def test_step_bounds_and_shapes():
    m = _model()
    rng = np.random.default_rng(1)
    for shape in [(), (5,), (3, 4), (2, 3, 4)]:
        g = rng.uniform(m.g_min, m.g_max, size=shape)
        pulses = rng.integers(-30, 31, size=shape)
        out = m.step(g, pulses, rng)
        assert np.shape(out) == shape
        assert np.all(out >= m.g_min) and np.all(out <= m.g_max)
    # many pulses saturate at the bounds, also for per-device bounds
    g = np.full((4, 5), 5e-5)
    assert np.allclose(m.step(g, 1000), m.g_max)
    assert np.allclose(m.step(g, -1000), m.g_min)
    devs = m.sample_devices((4, 5), rng)
    up = m.step(g, 1000, rng, devs)
    assert np.all(up <= devs["g_max"] + 1e-18) and np.all(up >= devs["g_min"])
    np.testing.assert_allclose(m.step(g, 1000, None, devs), devs["g_max"])
    # zero pulses leave the state alone; signs pick the direction per element
    mixed = m.step(np.full(3, 5e-5), np.array([3, 0, -3]))
    assert mixed[0] > 5e-5 and mixed[1] == 5e-5 and mixed[2] < 5e-5


def test_mean_law_matches_neurosim_ramp():
    """With nu != 0, a ramp from g_min follows g_min + B (1 - exp(-n nu)) exactly."""
    m = _model(sigma_add_p=0, sigma_mult_p=0)
    n = np.arange(m.pmax_p + 1)
    b = (m.g_max - m.g_min) / (1 - np.exp(-m.pmax_p * m.nu_p))
    ramp = m.ramp(m.g_min, int(m.pmax_p), +1)
    np.testing.assert_allclose(ramp, m.g_min + b * (1 - np.exp(-n * m.nu_p)), rtol=1e-9)
    assert ramp[-1] == pytest.approx(m.g_max)
    down = m.ramp(m.g_max, int(m.pmax_d), "down")
    assert down[-1] == pytest.approx(m.g_min, rel=1e-6)
    lin = _model(nu_p=0.0).ramp(m.g_min, 10, 1)
    np.testing.assert_allclose(np.diff(lin), (m.g_max - m.g_min) / m.pmax_p)


def test_seeded_noise_is_deterministic():
    m = _model()
    a = m.ramp(np.full((3, 2), 2e-5), 40, +1, np.random.default_rng(7), read_noise=True)
    b = m.ramp(np.full((3, 2), 2e-5), 40, +1, np.random.default_rng(7), read_noise=True)
    c = m.ramp(np.full((3, 2), 2e-5), 40, +1, np.random.default_rng(8), read_noise=True)
    assert a.shape == (41, 3, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d1 = m.sample_devices(10, np.random.default_rng(3))
    d2 = m.sample_devices(10, np.random.default_rng(3))
    for key in d1:
        np.testing.assert_array_equal(d1[key], d2[key])
    assert np.std(d1["scale_p"]) > 0
    # without rng: noise-free and identical to repeated single steps
    det = m.ramp(2e-5, 5, -1)
    g = 2e-5
    for k in range(5):
        g = m.step(g, -1)
        assert det[k + 1] == pytest.approx(float(g))


def test_simulated_spread_follows_noise_parameters():
    m = _model(nu_p=0.0, sigma_mult_p=0.0, sigma_level=0.0, sigma_add_p=3e-7)
    ramps = m.ramp(np.full(200, m.g_min), 30, +1, np.random.default_rng(2))
    assert step_spread(ramps) == pytest.approx(3e-7, rel=0.05)


def test_model_rejects_bad_values():
    with pytest.raises(CircuitnnError):
        _model(g_min=1e-4, g_max=1e-5)
    with pytest.raises(CircuitnnError):
        _model(sigma_add_p=-1)
    with pytest.raises(CircuitnnError):
        _model(pmax_p=float("nan"))
    m = _model()
    with pytest.raises(CircuitnnError):
        m.ramp(1e-5, 3, "sideways")
    with pytest.raises(CircuitnnError):
        m.step(1e-5, 0.5)
    with pytest.raises(CircuitnnError):
        m.step(np.nan, 1)
    card = ModelCard("memristor-x", {"g_min": Parameter(1.0)})
    with pytest.raises(CircuitnnError):
        PulseModel.from_card(card)


@pytest.mark.measured
def test_fit_rejects_too_few_spline_knots():
    with pytest.raises(CircuitnnError, match="spline_knots"):
        fit_pulse(load_pulse_dataset("taox-pulse"), spline_knots=(1,))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rmp1,rmp2\nabc,def\n", "not a number"),
        ("rmp1,rmp2\n", "no numeric data"),
        ("rmp1,rmp2\n0,0\n0,0\n0,0\n", "all values are zero"),
        ("rmp1\n1e-4\n2e-4\n", "at least 3"),
        ("rmp1,rmp2\n1e-4,1e-4\n2e-4,nan\n3e-4,3e-4\n", "not a finite number"),
        ("rmp1,rmp2\n1e-4,1e-4\n2e-4,\n3e-4,3e-4\n4e-4,\n", "data after its end"),
    ],
)
def test_bad_pulse_files(tmp_path, text, message):
    path = tmp_path / "set.csv"
    path.write_text(text)
    with pytest.raises(CircuitnnError, match=message):
        load_ramp_table(path, header=True)


def test_bad_dataset_folder(tmp_path):
    with pytest.raises(CircuitnnError, match="not found"):
        load_pulse_dataset("taox-pulse", tmp_path)
    (tmp_path / "set.csv").write_text("rmp1\n1e-5\n2e-5\n3e-5\n")
    (tmp_path / "reset.csv").write_text("rmp1\n-3e-5\n-2e-5\n-1e-5\n")
    with pytest.raises(CircuitnnError, match="negative"):
        load_pulse_dataset("taox-pulse", tmp_path)
    (tmp_path / "gong_et_al.csv").write_text("1,2,3\n1,2,3\n1,2,3\n")
    with pytest.raises(CircuitnnError, match="2 columns"):
        load_pulse_dataset("reram-pulse-gong", tmp_path)
    with pytest.raises(CircuitnnError, match="unknown pulse dataset"):
        load_pulse_dataset("nope")

"""Compact models: numpy and ngspice agree, cards round-trip, conductance mapping is exact."""

import numpy as np
import pytest
from golden.make_golden import MSS, TRANSIENTS, VTEAM, YAKOPCIC, YAKOPCIC_2020, sine

from circuitnn.devices import Device, ModelCard, builtin_card, expr, load_device
from circuitnn.devices.models import MODELS
from circuitnn.devices.series import current_limit
from circuitnn.errors import CircuitnnError
from circuitnn.spice.subckt import simulate_ngspice, subckt


def nrmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.ptp(b))


@pytest.mark.ngspice
@pytest.mark.parametrize("name", sorted(TRANSIENTS))
@pytest.mark.parametrize("wave", ["sine", "pulses"])
def test_numpy_and_ngspice_agree(name: str, wave: str) -> None:
    dev, s0, sin_wave, pulse_wave = TRANSIENTS[name]
    t, v = sin_wave if wave == "sine" else pulse_wave
    a = dev.simulate(t, v, s0)
    b = simulate_ngspice(dev, t, v, s0)
    # the waveform really switches the device, so agreement is not trivial
    lo, hi = dev.bounds()
    assert np.ptp(a.state) > 0.3 * (hi - lo)
    assert nrmse(a.i, b.i) < 1e-3
    # and on a log scale, where the OFF state lives (points above 1e-3 of the peak current)
    keep = np.abs(b.i) > 1e-3 * np.max(np.abs(b.i))
    log_err = np.sqrt(np.mean((np.log10(np.abs(a.i[keep])) - np.log10(np.abs(b.i[keep]))) ** 2))
    assert log_err < 0.01


@pytest.mark.ngspice
def test_series_resistance_agrees() -> None:
    dev, s0, (t, v), _ = TRANSIENTS["yakopcic"]
    a = dev.simulate(t, v, s0, r_series=2e3)
    b = simulate_ngspice(dev, t, v, s0, r_series=2e3)
    assert nrmse(a.i, b.i) < 0.01
    # the resistor takes a visible share of the voltage
    assert np.max(np.abs(v - a.v_device)) > 0.05


def test_off_state_conduction() -> None:
    """Yakopcic's 2020 OFF-state term carries current at x = 0; the 2013 default carries none."""
    assert float(YAKOPCIC.current(-0.5, 0.0)) == 0.0
    assert float(YAKOPCIC_2020.current(-0.5, 0.0)) == pytest.approx(-2e-6 * np.sinh(1.5))
    # MSS: Schottky terms at x = 0, and I(0) = 0 (a pinched loop)
    i_off = float(MSS.current(-0.5, 0.0))
    diode = 1e-7 * (np.exp(-2.5) - 1) - 1e-7 * (np.exp(2.5) - 1)
    assert i_off == pytest.approx(-0.5 * 0.7 / 1e5 + 0.3 * diode, rel=1e-12)
    assert float(MSS.current(0.0, 0.3)) == 0.0


def test_state_stops_on_a_switching_threshold() -> None:
    """Stanford-PKU's rate is exactly 0 below its minimum field, which depends on the gap: a RESET
    drive grows the gap until that threshold and no further (the point where the rate switches
    off), also while the drive ramps (the state slides along the threshold: this used to end in a
    step-size collapse)."""
    dev = load_device(builtin_card())
    lo, hi = (float(b) for b in dev.bounds())
    for v in (-1.2, -1.4):
        tr = dev.simulate(np.array([0.0, 1e-6, 1e-3]), np.full(3, v), s0=lo)
        g = np.linspace(lo, hi, 200001)
        g_star = g[np.argmax(dev.rate(v, g) == 0)]  # first gap where the rate is 0
        assert abs(tr.state[-1] - g_star) <= 2e-5 * (hi - lo)
    # a 1 s triangular sweep through both thresholds integrates (the device figure's sweep)
    u = np.linspace(0, 4, 201)
    v = np.interp(u, np.arange(5), [0.0, 1.6, 0.0, -1.6, 0.0])
    tr = dev.simulate(u / 4, v, s0=lo)
    assert np.all(np.isfinite(tr.i)) and tr.state.max() > lo + 0.5 * (hi - lo)


@pytest.mark.ngspice
def test_ohmic_device_is_exact() -> None:
    dev = Device("ohmic", {"G": 2e-5})
    t, v = sine(0.5, 1e3)
    b = simulate_ngspice(dev, t, v, 0.0)
    np.testing.assert_allclose(b.i, 2e-5 * v, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dev.simulate(t, v).i, 2e-5 * v, rtol=1e-12)


def test_many_devices_at_once() -> None:
    dev = Device("vteam", dict(VTEAM.params, R_on=np.array([1e3, 2e3, 4e3])))
    t, v = sine(1.0, 100.0)
    tr = dev.simulate(t, v, np.array([0.2, 0.5, 0.8]))
    assert tr.i.shape == (3, t.size)
    single = Device("vteam", dict(VTEAM.params, R_on=2e3)).simulate(t, v, 0.5)
    # each device has its own step sizes, so the batch and the single run take the same steps
    np.testing.assert_allclose(tr.i[1], single.i, rtol=1e-12)


def test_batch_matches_single_runs() -> None:
    """A batch whose elements need different step counts, with a series resistor, gives each
    element's single run (each is integrated on its own, the series node included); a total
    step budget fails only the elements that exceed it."""
    k_off = np.geomspace(1e2, 1e6, 40)  # slow to stiff switching: 40 different step counts
    dev = Device("vteam", dict(VTEAM.params, k_off=k_off, k_on=-k_off))
    t, v = sine(1.0, 100.0, pts=200)
    tr = dev.simulate(t, v, 0.5, r_series=2e3)
    for j in (0, 20, 39):
        one = Device("vteam", dict(VTEAM.params, k_off=k_off[j], k_on=-k_off[j]))
        np.testing.assert_allclose(tr.i[j], one.simulate(t, v, 0.5, r_series=2e3).i,
                                   rtol=1e-12, atol=1e-18)
    capped = dev.simulate(t, v, 0.5, r_series=2e3, strict=False, max_total_steps=3 * t.size)
    failed = np.isnan(capped.i).any(axis=-1)
    assert failed[-1] and not failed[0]  # the stiffest exceeds the budget, the slowest not
    np.testing.assert_allclose(capped.i[~failed], tr.i[~failed], rtol=1e-6, atol=1e-12)
    with pytest.raises(CircuitnnError, match="could not be integrated"):
        dev.simulate(t, v, 0.5, r_series=2e3, max_total_steps=3 * t.size)


def test_state_held_on_a_bound_through_a_resistor() -> None:
    """A state held on a bound by a rate pushing outwards stays there in one step per sample,
    also behind a series resistor (whose share of the rate's state derivative, dv_d/ds, used to
    count while held: wrong-signed stages and rejected steps, ~30 per sample, and at a loose
    tolerance a current far off). Two VTEAM candidates of a Knowm M1 search, 1 Hz, 5 kOhm."""
    u = np.linspace(0, 8, 401)
    v = np.interp(u, np.arange(9), [0, 0.8, 0, -0.8, 0, 0.8, 0, -0.8, 0])
    t = u / 4  # two 1 s periods
    for params in (
            dict(R_on=6445.0, R_off=5.838e6, k_off=1.884e4, k_on=-1.288e11, v_off=2.114,
                 v_on=-0.01661, alpha_off=2.585, alpha_on=3.274, a_off=0.5159, a_on=-0.4834,
                 w_c=0.1891),
            dict(R_on=7077.0, R_off=78420.0, k_off=1773.0, k_on=-2.745, v_off=0.2801,
                 v_on=-0.05754, alpha_off=1.623, alpha_on=9.148, a_off=1.439, a_on=-0.2604,
                 w_c=0.009457)):
        dev = Device("vteam", params, polarity=-1.0)
        fine = dev.simulate(t, v, 0.5, r_series=5e3, rtol=1e-5, atol=1e-8)
        loose = dev.simulate(t, v, 0.5, r_series=5e3, rtol=5e-2, atol=5e-5,
                             max_total_steps=3 * t.size)
        assert nrmse(loose.i, fine.i) < 0.01


@pytest.mark.ngspice
def test_current_limit_agrees_with_ngspice() -> None:
    """A source with a current compliance: the device runs into the limit and snaps OFF."""
    dev = Device("vteam", VTEAM.params, polarity=-1.0)
    t, v = sine(1.0, 100.0)
    limit = current_limit(3e-4)
    a = dev.simulate(t, v, 0.5, series=limit)
    b = simulate_ngspice(dev, t, v, 0.5, series=limit)
    assert np.max(np.abs(a.i)) == pytest.approx(3e-4, rel=1e-3)  # the limit is reached
    assert np.ptp(a.state) > 0.9
    assert nrmse(a.i, b.i) < 1e-3


class Saturating:
    """A series element as a Python object (not an expression): not accepted."""

    def current(self, u):
        return 2e-4 * np.tanh(u / 500.0)

    def conductance(self, u):
        return 2e-4 / 500.0 / np.cosh(u / 500.0) ** 2


@pytest.mark.ngspice
def test_a_callers_own_series_element_expression() -> None:
    from circuitnn.devices.series import ExprElement

    dev, s0, (t, v), _ = TRANSIENTS["yakopcic"]
    same = ExprElement("i0 * tanh(u / r)", {"i0": 2e-4, "r": 500.0}, "saturating")
    a = dev.simulate(t, v, s0, series=same)
    b = simulate_ngspice(dev, t, v, s0, series=same)
    assert nrmse(a.i, b.i) < 1e-3
    assert np.max(np.abs(v - a.v_device)) > 0.05
    with pytest.raises(CircuitnnError, match="ExprElement"):
        dev.simulate(t, v, s0, series=Saturating())


def test_error_control_converges() -> None:
    """Tightening the tolerance by 100x changes a switching waveform by far less than 1e-3."""
    for dev, s0, (t, v), _ in TRANSIENTS.values():
        coarse = dev.simulate(t, v, s0)
        fine = dev.simulate(t, v, s0, rtol=1e-6, atol=1e-9)
        assert nrmse(coarse.i, fine.i) < 2e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_symbolic_derivatives_match_finite_differences(name: str) -> None:
    dev = Device(name)
    lo, hi = dev.bounds()
    s = np.linspace(lo, hi, 9)[1:-1]
    v = np.linspace(-1.3, 1.2, 7)
    h_s, h_v = 1e-6 * (hi - lo), 1e-6
    for which in ("current_jac", "rate_jac"):
        f, f_v, f_s = dev._eval(which, v, s)
        fd_v = (dev._eval(which, v + h_v, s)[0] - dev._eval(which, v - h_v, s)[0]) / (2 * h_v)
        fd_s = (dev._eval(which, v, s + h_s)[0] - dev._eval(which, v, s - h_s)[0]) / (2 * h_s)
        scale = np.max(np.abs(f)) + 1e-30
        for exact, approx in ((f_v, fd_v), (f_s * (hi - lo), fd_s * (hi - lo))):
            np.testing.assert_allclose(exact, approx, rtol=1e-4, atol=1e-6 * scale)


def test_expression_derivative_rules() -> None:
    cases = {"exp(2 * v)": "2 * exp(2 * v)", "pow(v, 3)": "3 * v * v", "sinh(v) / v":
             "(cosh(v) * v - sinh(v)) / (v * v)", "where(v > 0, v * v, -v)":
             "where(v > 0, 2 * v, -1)", "abs(v) + max(v, 0.5)": "where(v >= 0, 1, -1) + "
             "where(v >= 0.5, 1, 0)", "sqrt(v * v + 1)": "v / sqrt(v * v + 1)"}
    v = np.array([-0.7, 0.3, 0.9, 1.4])
    for text, want in cases.items():
        got = expr.Kernel([expr.derivative(text, "v")], ("v",))
        prepared = got.prepare({})
        want_v = expr.evaluate(want, {"v": v})
        np.testing.assert_allclose(got(prepared, {"v": v})[0] + 0 * v, want_v, rtol=1e-12)
    # overflow and values outside the domain give inf and NaN, without an error
    kern = expr.Kernel(["exp(v)", "log(v)", "1 / v", "pow(v, 0.5)"], ("v",))
    prepared = kern.prepare({})
    assert kern(prepared, {"v": 1e3})[0] == np.inf
    big, neg = kern(prepared, {"v": 0.0}), kern(prepared, {"v": -1.0})
    assert big[1] == -np.inf and big[2] == np.inf and np.isnan(neg[3]) and np.isnan(neg[1])


def test_builtin_card_and_g_range() -> None:
    card = builtin_card()
    assert card.model == "stanford-pku"
    dev = Device.from_card(card)
    g_min, g_max = dev.g_range
    assert 1e-7 < g_min < g_max < 1e-1
    assert dev.v_read == 0.2
    targets = np.geomspace(g_min * 1.01, g_max * 0.99, 7)
    np.testing.assert_allclose(dev.conductance(dev.state_for_conductance(targets)), targets,
                               rtol=1e-9)


def test_card_round_trip(tmp_path) -> None:
    card = builtin_card()
    path = card.save(tmp_path / "c.json")
    again = ModelCard.load(path)
    assert again.to_json() == card.to_json()


@pytest.mark.parametrize("text,msg", [
    ("{", "not valid JSON"),
    ('{"schema": "other"}', "schema"),
    ('{"schema": "circuitnn.card/1", "model": "x", "parameters": {"a": {"value": "1"}}}',
     "finite number"),
    ('{"schema": "circuitnn.card/1", "model": "x", "parameters": {}}', "parameters"),
    ('{"schema": "circuitnn.card/1", "model": "x", "parameters": {"a": {"value": 1}}, "z": 1}',
     "unknown keys"),
])
def test_bad_cards_are_rejected(tmp_path, text: str, msg: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CircuitnnError, match=msg):
        ModelCard.load(path)


def test_unknown_model_and_parameter() -> None:
    with pytest.raises(CircuitnnError, match="unknown model"):
        Device("nonsense")
    with pytest.raises(CircuitnnError, match="no parameter"):
        Device("vteam", {"bogus": 1.0})


def test_subckt_is_deterministic_and_validated() -> None:
    dev = load_device()
    assert subckt(dev, "cell") == subckt(dev, "cell")
    with pytest.raises(CircuitnnError):
        subckt(dev, "cell; .control shell rm -rf /")


def test_every_shipped_card_loads_and_runs() -> None:
    """Cards written before a model gained parameters load with defaults that keep their
    behaviour (e.g. Yakopcic without the OFF-state term)."""
    from circuitnn.devices import DEVICE_MODELS_DIR
    from circuitnn.devices.models import MODELS as KNOWN

    cards = [ModelCard.load(p) for p in sorted(DEVICE_MODELS_DIR.glob("*.json"))
             if '"schema": "circuitnn.card/1"' in p.read_text()]
    compact = [c for c in cards if c.model in KNOWN]
    assert len(compact) >= 7
    t, v = sine(0.5, 10.0, pts=200)
    for card in compact:
        dev = Device.from_card(card)
        lo, hi = dev.bounds()
        assert np.all(np.isfinite(dev.simulate(t, v, 0.5 * (lo + hi)).i))

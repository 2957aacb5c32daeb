"""Fits right where a network reads the device: noise floors, the read-region error, the card
against its own data at v_read, and the interface-type model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run

from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, Device, ModelCard
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import Sweep, estimate_noise_floor, load_sweep
from circuitnn.fitting.iv import (
    MIN_READ_POINTS,
    FitSettings,
    default_read_range,
    fit_iv,
    given_read_range,
    log_error,
    log_mask,
    make_card,
    periodic_drive,
    read_mask,
)
from circuitnn.fitting.readcheck import (
    MAX_READ_OFF,
    card_read_states,
    measured_read_states,
    read_check,
    read_check_line,
    read_region_record,
    require_read_match,
)

#: an interface-type device: rectifying (the ON state's diode forward at V < 0), its current
#: spanning decades between 0 V and 1 V
INTERFACE = dict(g_on_p=2e-5, b_on_p=3.0, g_on_n=2e-7, b_on_n=8.0, g_off_p=5e-9, b_off_p=8.0,
                 g_off_n=5e-9, b_off_n=3.0, Ap=50.0, An=50.0, Vp=0.6, Vn=0.6, xp=0.3, xn=0.5,
                 alphap=1.0, alphan=1.0)


def _sweep(v: np.ndarray, i: np.ndarray, **kw) -> Sweep:
    n = v.size
    return Sweep("s", "d", np.arange(n) / n, v, i, 0.0, True, 1.0, "s.csv", **kw)


def _interface_sweep(n: int = 120, amp: float = 1.0, noise: float = 0.0) -> Sweep:
    """One steady period of the interface device under a 1 Hz sine."""
    dev = Device("interface", INTERFACE)
    k = np.arange(3 * n)
    v = amp * np.sin(2 * np.pi * k / n)
    tr = dev.simulate(k / n, v, 0.5)
    i = tr.i[-n:] * (1 + noise * np.random.default_rng(0).standard_normal(n))
    return _sweep(v[-n:].copy(), i)


# ----------------------------------------------------------------------------- noise floors


def test_noise_floor_is_the_current_read_at_zero_volts(tmp_path: Path) -> None:
    v = np.sin(2 * np.pi * np.arange(40) / 40 + 0.05)
    i = 1e-5 * v + 3e-8  # an offset of 30 nA
    path = tmp_path / "loop.csv"
    path.write_text("\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(v, i, strict=True)) + "\n")
    est = load_sweep(path, [0, 1], current_unit="A", frequency_hz=1.0)
    assert est.noise_floor_a == pytest.approx(3e-8, rel=1e-6)
    assert est.noise_floor_source.startswith("estimated")
    given = load_sweep(path, [0, 1], current_unit="A", frequency_hz=1.0, noise_floor_a=1e-9)
    assert (given.noise_floor_a, given.noise_floor_source) == (1e-9, "manifest")
    # a stated resolution is the least the estimate can be
    res = load_sweep(path, [0, 1], current_unit="A", frequency_hz=1.0, resolution_a=1e-7)
    assert res.noise_floor_a == 1e-7 and "resolution_a" in res.noise_floor_source
    with pytest.raises(CircuitnnError, match="above every measured current"):
        load_sweep(path, [0, 1], current_unit="A", frequency_hz=1.0, noise_floor_a=1e-4)


def test_a_sweep_that_never_crosses_zero_uses_the_resolution() -> None:
    v = 0.1 + np.linspace(0, 1, 30)
    i = np.round(1e-6 * v**3 / 1e-9) * 1e-9  # recorded in 1 nA steps
    floor, how = estimate_noise_floor(_sweep(v, i))
    assert floor == pytest.approx(1e-9, rel=1e-6) and "smallest step" in how
    assert estimate_noise_floor(_sweep(v, i), 5e-9) == (5e-9, "resolution_a (the sweep never "
                                                              "crosses 0 V)")


def test_log_error_has_no_cut_relative_to_the_peak() -> None:
    """Seven decades: every point above the floor counts, and the read region is |V| <= r."""
    v = np.linspace(-1, 1, 80)
    i = 1e-10 * np.sign(v) * (np.exp(16 * np.abs(v)) - 1 + 1e-3)
    s = _sweep(v, i, noise_floor_a=1e-12)
    mask = log_mask(s)
    assert mask.sum() == v.size and np.abs(i).max() / np.abs(i).min() > 1e6
    r = read_mask(s, 0.2)
    assert np.all(np.abs(v[r]) <= 0.2) and r.sum() == np.count_nonzero(np.abs(v) <= 0.2)
    pred = i * 10 ** np.where(np.abs(v) <= 0.2, 2.0, 0.0)  # two decades off in the read region
    assert float(log_error(pred, s, r)) == pytest.approx(2.0)
    assert 0 < float(log_error(pred, s)) < 2.0


# ----------------------------------------------------------------------------- read range


@pytest.mark.parametrize(("given", "message"), [
    (0.0, "must be a voltage > 0"), (-0.1, "must be a voltage > 0"),
    (5.0, "above the largest |V|"), (0.011, "holds 2 measured point"),
])
def test_bad_read_ranges_are_refused(given: float, message: str) -> None:
    s = _sweep(np.sin(2 * np.pi * np.arange(40) / 40 + 0.01), 1e-5 * np.ones(40))
    with pytest.raises(CircuitnnError, match=message.replace("|", r"\|")):
        given_read_range([s], FitSettings(read_range_v=given))


def test_the_default_read_range_is_widened_to_enough_points() -> None:
    v = np.sin(2 * np.pi * np.arange(40) / 40 + 0.01)
    s = _sweep(v, 1e-5 * v, noise_floor_a=1e-9)
    wide = default_read_range([s], 1e-3)
    assert read_mask(s, wide).sum() == MIN_READ_POINTS
    assert default_read_range([s], 0.5) == 0.5


@pytest.mark.parametrize(("extra", "message"), [
    (["--read-range", "0"], "--read-range must be a voltage > 0"),
    (["--read-range", "9"], "above the largest |V|"),
    (["--read-range", "0.02"], "at least 5 are needed"),
])
def test_cli_bad_read_range_one_line_no_card(tmp_path, capsys, extra, message) -> None:
    v = np.sin(2 * np.pi * np.arange(40) / 40 + 0.01)
    path = tmp_path / "loop.csv"
    path.write_text("\n".join(f"{a:.17g},{2e-5 * a:.17g}" for a in v) + "\n")
    out = tmp_path / "out"
    code, stdout, err = run(["fit", str(path), "--columns", "0,1", "--current-unit", "A",
                             "--frequency-hz", "1", "--model", "all", *extra,
                             "--out", str(out / "{model}.json"),
                             "--figure", str(out / "{model}.png")], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and message in lines[0] and stdout == ""
    assert not out.exists()


# ----------------------------------------------------------------------------- the fit


@pytest.fixture(scope="module")
def interface_fit():
    """The interface model refined from the generating values on a noisy wide-range loop."""
    sweep = _interface_sweep(noise=0.02)
    start = {k: v * (1.3 if k.startswith("g_") else 1.0) for k, v in INTERFACE.items()}
    st = FitSettings(start=start, start_polarity=1.0, read_range_v=0.2, ngspice=False)
    return fit_iv([sweep], "interface", st, check=False)


def test_interface_fit_measures_and_card(interface_fit, tmp_path) -> None:
    fit = interface_fit
    s = fit.sweeps[0]
    assert np.abs(s.i).max() / np.abs(s.i[log_mask(s)]).min() > 1e4  # a wide-range loop
    m = fit.per_sweep[s.name]
    assert fit.read_range_v == 0.2 and fit.read_range_rule == "given (--read-range)"
    assert m.points_read == int(read_mask(s, 0.2).sum()) >= MIN_READ_POINTS
    assert fit.read_error < 0.1 and fit.nrmse < 0.05
    assert fit.read_error == pytest.approx(float(log_error(fit.predicted[0], s,
                                                           read_mask(s, 0.2))))
    card = make_card(fit)
    assert card.fit["read_error_decades"] == pytest.approx(fit.read_error)
    assert card.fit["read_range_v"] == 0.2 and "arXiv:2210.01455" in card.provenance[
        "model_citation"]
    rec = card.fit["read_region"]
    assert rec["range_v"] >= 0.2 and rec["sweeps"][s.name]["noise_floor_a"] == s.noise_floor_a
    # the public simulator reproduces the recorded read-region error
    dev = Device.from_card(card)
    t, v = periodic_drive(s, 3)
    i = dev.simulate(t, v, 0.5).i[-s.n:]
    assert float(log_error(i, s, read_mask(s, 0.2))) == pytest.approx(fit.read_error, abs=0.02)
    # and its own data pass the read check at its v_read
    path = card.save(tmp_path / "card.json")
    res = read_check(ModelCard.load(path), float(card.values()["v_read"]))
    assert res["checked"] and res["passes"] and res["worst_decades"] < MAX_READ_OFF


def test_fit_figure_marks_the_read_region(interface_fit, tmp_path) -> None:
    from circuitnn.fitting.plots import iv_fit_figure

    path = iv_fit_figure(interface_fit, tmp_path / "fit.png")
    assert path.stat().st_size > 10_000


# ----------------------------------------------------------------------------- read check


def _builtin_with_data(factor: float) -> ModelCard:
    """The built-in card, with recorded 'measured' samples whose two states read `factor` x
    the card's conductances at its v_read."""
    card = ModelCard.load(DEVICE_MODELS_DIR / BUILTIN_CARD)
    v_read = float(card.values()["v_read"])
    lo, hi = card_read_states(card, v_read)
    n = 80
    v = 0.5 * np.sin(2 * np.pi * (np.arange(n) + 0.5) / n)
    g = np.where(np.arange(n) < n // 2, hi, lo) * factor  # high state while V > 0
    s = _sweep(v, g * v, noise_floor_a=1e-12)
    card.fit = dict(card.fit, read_region=read_region_record([s], 0.5))
    card.provenance = dict(card.provenance, source=None)
    return card


def test_read_states_from_crossings() -> None:
    card = _builtin_with_data(1.0)
    v_read = float(card.values()["v_read"])
    m = measured_read_states(card.fit["read_region"], v_read)
    lo, hi = card_read_states(card, v_read)
    assert m["crossings"] == 4 and not m["low_is_bound"]
    assert m["low_S"] == pytest.approx(lo, rel=1e-6) and m["high_S"] == pytest.approx(hi,
                                                                                   rel=1e-6)
    assert measured_read_states(card.fit["read_region"], 0.9) is None  # never reached


def test_a_card_off_by_two_decades_is_refused_unless_accepted(tmp_path) -> None:
    card = _builtin_with_data(0.01)
    v_read = float(card.values()["v_read"])
    with pytest.raises(CircuitnnError, match=r"off by 2 decades in the read region.*"
                                             r"--accept-read-error"):
        require_read_match(card, v_read, "card.json")
    res = require_read_match(card, v_read, "card.json", accept=True)
    assert res["accepted"] and not res["passes"]
    assert res["off_decades"]["low"] == pytest.approx(2.0) and "ACCEPTED" in read_check_line(res)
    assert require_read_match(_builtin_with_data(1.5), v_read, "x")["passes"]
    # the built-in card (published parameters) records no data: not checked
    plain = read_check(ModelCard.load(DEVICE_MODELS_DIR / BUILTIN_CARD), v_read)
    assert not plain["checked"] and plain["passes"] and "published" in plain["reason"]


def test_below_the_noise_floor_the_low_state_is_a_bound() -> None:
    card = _builtin_with_data(1.0)
    v_read = float(card.values()["v_read"])
    lo, hi = card_read_states(card, v_read)
    rec = card.fit["read_region"]
    rec["sweeps"]["s"]["noise_floor_a"] = 3 * lo * v_read  # the low state reads as noise
    m = measured_read_states(rec, v_read)
    assert m["low_is_bound"] and m["low_S"] == pytest.approx(3 * lo)
    assert read_check(card, v_read)["passes"]  # the card's low state lies below the bound


def test_device_check_and_the_chain_refuse_or_accept(tmp_path, capsys) -> None:
    from circuitnn.mcnn.report import device_lines
    from circuitnn.network.device import array_device

    path = _builtin_with_data(0.01).save(tmp_path / "off.json")
    # the measured TaOx pulse card on a window the HfOx card's 1T1R cell reads: nothing to derive
    cards = dict(pulse_card=DEVICE_MODELS_DIR / "taox-pulse.json", g_window=(3e-4, 6e-4))
    code, out, err = run(["device", "check", str(path), "--no-derive"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "off by 2 decades" in lines[0]
    code, out, err = run(["device", "check", str(path), "--no-derive", "--accept-read-error",
                          "--json"], capsys)
    assert code == 0 and json.loads(out)["read_check"]["accepted"]
    with pytest.raises(CircuitnnError, match="off by 2 decades"):
        array_device(path, **cards)
    dev = array_device(path, **cards, accept_read_error=True)
    assert dev.summary["read_check"]["accepted"]
    text = "\n".join(device_lines(dev.summary, {}))
    assert '<span style="color:red">' in text and "ACCEPTED" in text


# ----------------------------------------------------------------------------- models


def test_interface_model_is_rectifying_and_exponential_at_low_bias() -> None:
    dev = Device("interface", INTERFACE)
    v = np.array([0.05, 0.1, 0.2])
    on_fwd = np.abs(dev.current(-v, 1.0))
    assert on_fwd[2] / on_fwd[1] > 3  # exponential in V (b = 8 /V; linear: 2)
    off_rev = np.abs(dev.current(v, 0.0))
    assert float(off_rev[-1] / off_rev[0]) < 0.8 * 4  # the OFF diode saturates in reverse
    g_on, g_off = (float(dev.current(1e-4, x)) / 1e-4 for x in (1.0, 0.0))
    assert g_on == pytest.approx(INTERFACE["g_on_p"] * INTERFACE["b_on_p"], rel=1e-3)
    assert g_off == pytest.approx(INTERFACE["g_off_p"] * INTERFACE["b_off_p"], rel=1e-3)
    assert float(dev.current(0.0, 0.4)) == 0.0

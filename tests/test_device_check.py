"""Operating point of I-V cards, the device profile (I-V + pulse card) and `circuitnn device check`,
on cards fitted to the measured data, with real nodal and ngspice reads."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_run import run

from circuitnn.devices import (
    DEVICE_MODELS_DIR,
    Device,
    ModelCard,
    builtin_card,
    load_device,
    operating_point,
    with_operating_point,
)
from circuitnn.devices.operating import (
    DISTURB_LIMIT,
    READ_MARGIN,
    reachable_states,
    read_disturb,
    safe_read_voltage,
    switching_thresholds,
)
from circuitnn.devices.profile import DeviceProfile
from circuitnn.devices.pulse import pulse_response
from circuitnn.errors import CircuitnnError
from circuitnn.tile.read import read
from circuitnn.tile.spec import TileSpec

KNOWM = DEVICE_MODELS_DIR / "knowm-m1-yakopcic.json"  # fitted to the Knowm M1 loops
VTEAM = DEVICE_MODELS_DIR / "bipolar-vteam.json"  # fitted to the bipolar loop (polarity -1)
HFOX = DEVICE_MODELS_DIR / "stanford-pku-hfox.json"
TAOX = DEVICE_MODELS_DIR / "taox-pulse.json"  # pulse law fitted to the TaOx ramps
GONG = DEVICE_MODELS_DIR / "gong-pulse.json"  # pulse law in normalised units


def test_thresholds_are_the_models_own():
    # Yakopcic moves above Vp / below -Vn; VTEAM (polarity -1) above |v_on| / below -v_off
    k = ModelCard.load(KNOWM).values()
    assert switching_thresholds(load_device(KNOWM)) == pytest.approx((k["Vp"], k["Vn"]),
                                                                     abs=2e-6)
    v = ModelCard.load(VTEAM).values()
    assert switching_thresholds(load_device(VTEAM)) == pytest.approx((-v["v_on"], v["v_off"]),
                                                                     abs=2e-6)
    assert switching_thresholds(Device("ohmic", {"G": 1e-5})) == (math.inf, math.inf)


def test_old_cards_get_a_safe_read_voltage_on_load():
    raw = ModelCard.load(KNOWM)
    assert raw.values()["v_read"] == 0.2 and not raw.operating  # written before the rule
    card = with_operating_point(raw)
    vp = raw.values()["Vp"]
    rule = math.floor(READ_MARGIN * vp * 1000) / 1000
    assert card.values()["v_read"] == pytest.approx(rule, abs=1e-12)
    assert card.values()["v_read"] == pytest.approx(0.090, abs=1e-12)
    assert with_operating_point(card) is card  # the record matches: nothing recomputed
    assert load_device(KNOWM).v_read == pytest.approx(0.090, abs=1e-12)
    assert TileSpec(np.full((2, 2), 2e-4), device=raw).v_read == pytest.approx(0.090, abs=1e-12)
    # the built-in HfOx card keeps the reference's 0.2 V (threshold 1.05 V)
    assert Device.from_card(builtin_card()).v_read == 0.2
    assert builtin_card().operating["thresholds_V"]["positive"] == pytest.approx(1.05, abs=0.01)
    # an edited card is recomputed, not trusted
    edited = card.to_json()
    edited["parameters"]["Vp"]["value"] = 0.1
    assert with_operating_point(ModelCard.from_json(edited)).values()["v_read"] == 0.05


def test_read_disturb_check_is_real():
    dev = load_device(KNOWM)
    above = read_disturb(dev, 0.3)  # well above the SET threshold: the state runs away
    assert not above["passes"] and above["drift"] > 10 * DISTURB_LIMIT
    below = read_disturb(dev, 0.090)
    assert below["passes"] and below["drift"] == pytest.approx(0.0, abs=1e-15)
    # were the threshold rule blind (pretend thresholds of 1 V), the disturb check lowers v_read
    v, why = safe_read_voltage(dev, (1.0, 1.0), 0.2)
    assert v == pytest.approx(0.2 * 0.8) and "lowered from 0.2 V" in why
    assert v < ModelCard.load(KNOWM).values()["Vp"]


def test_default_window_rule():
    op = operating_point(ModelCard.load(KNOWM))
    g_min, g_max = op.window
    lo, hi = op.g_range
    assert lo < 1e-9 and op.on_off > 1e6  # the fitted low state is nearly open at v_read
    assert lo < g_min < g_max < hi and 1.5 < g_max / g_min <= 10.0 * (1 + 1e-12)
    # on/off capped at 10 where the device holds more (bipolar VTEAM: > 10^3)
    op = operating_point(ModelCard.load(VTEAM))
    assert op.v_read == math.floor(READ_MARGIN * min(op.thresholds) * 1000) / 1000
    assert op.on_off > 1e3
    assert op.window[1] / op.window[0] == pytest.approx(10.0)


def test_window_inside_the_reachable_states():
    """A VTEAM window function that stops the SET motion at x ~ a_on (inside the state range, as
    in fitted cards) moves the window's edge in with it: pulses could not reach the edge 10% in
    from the bound. Its edge: exp(-exp(-(x - a_on) / w_c)) = 1e-9 at x = a_on - 3.03 w_c."""
    params = dict(R_on=2e3, R_off=1e7, k_off=1e2, k_on=-4e8, v_off=0.06, v_on=-0.48,
                  alpha_off=4.0, alpha_on=3.0, a_off=1.5, a_on=0.2, w_c=0.02)
    dev = Device("vteam", params, polarity=-1.0)
    low, high = reachable_states(dev, switching_thresholds(dev))
    assert low == pytest.approx(0.2 - 0.02 * math.log(-math.log(1e-9)), abs=2e-3)
    assert high == 1.0  # a_off beyond the range: the OFF motion reaches the bound
    card = dev.to_card()
    op = operating_point(card)
    x_edge = low + 0.1 * (high - low)
    assert op.window[1] == pytest.approx(float(dev.conductance(x_edge, op.v_read)), rel=1e-9)
    assert "reachable state range" in op.window_rule


@pytest.fixture(scope="module")
def knowm_spec():
    card = ModelCard.load(KNOWM)
    g_min, g_max = operating_point(card).window
    g = np.random.default_rng(0).uniform(g_min, g_max, (16, 8))
    return TileSpec(g, device=card, r_row=2.0, r_col=2.0)


@pytest.mark.ngspice
def test_nodal_and_ngspice_read_at_the_safe_voltage(knowm_spec):
    spec = knowm_spec
    assert spec.v_read == pytest.approx(0.090, abs=1e-12) and spec.disturb_voltage > spec.v_read
    v = (np.random.default_rng(1).random((6, 16)) < 0.5) * spec.v_read
    i_nodal = read(spec, v, engine="nodal")
    i_spice = read(spec, v, engine="ngspice")
    scale = np.abs(i_spice).max()
    assert np.abs(i_nodal - i_spice).max() <= 1e-6 * scale
    ideal = v @ spec.conductance
    assert np.abs(ideal - i_spice).max() > 0.05 * scale  # the circuit effects are there
    with pytest.raises(CircuitnnError, match="switching threshold"):
        read(spec, np.full(16, 0.2), engine="nodal")  # the card's old read voltage


def test_device_check_json_of_a_fitted_card(tmp_path, capsys):
    saved = with_operating_point(ModelCard.load(KNOWM)).save(tmp_path / "m1.json")
    code, out, err = run(["device", "check", str(saved), "--json", "--no-derive"], capsys)
    assert code == 0, err
    r = json.loads(out)  # stdout is one JSON object
    op = r["operating"]
    assert op["source"] == "card" and r["v_read"] == op["v_read"] == 0.090
    assert op["v_read"] <= READ_MARGIN * min(op["thresholds_V"].values())
    assert op["read_disturb"]["passes"] and op["read_disturb"]["reads"] == 1_000_000
    assert r["g_window"] == op["window_S"] and 0 < r["g_window"][0] < r["g_window"][1]
    assert op["on_off"] > 1e6  # the low state is nearly open
    assert r["iv_card"]["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert r["source"]["datasets"] == ["knowm-wsdc-iv"] and r["pulse_response"] is None
    code, out, err = run(["device", "check", str(KNOWM), "--no-derive"], capsys)
    assert code == 0, err
    assert "v_read: 0.09 V (computed on load)" in out and "switching thresholds" in out
    assert "read disturb: drift 0 after 1,000,000 reads" in out and "pass" in out


@pytest.mark.ngspice
def test_device_check_shows_the_derived_pulse_law(capsys):
    code, out, err = run(["device", "check", str(HFOX), "--g-min-uS", "6", "--g-max-uS", "24"],
                         capsys)
    assert code == 0, err
    assert "pulse law: derived from the card" in out and "ngspice agrees within" in out
    assert "SET: " in out and "pulses to traverse the window" in out


def test_device_profile_with_a_pulse_card(capsys):
    window = (1.2e-3, 2.2e-3)  # inside what the HfOx card holds at 0.2 V; overlaps the TaOx card
    prof = DeviceProfile.load(HFOX, TAOX, window=window)
    assert prof.v_read == 0.2 and prof.window == window
    assert prof.pulse.g_range == window
    card = ModelCard.load(TAOX).values()
    assert prof.pulse_scale == pytest.approx(1e-3 / (card["g_max"] - card["g_min"]))
    assert prof.pulse.pmax_p == card["pmax_p"]  # pulse counts kept by the mapping
    for name, pmax in (("set", card["pmax_p"]), ("reset", card["pmax_d"])):
        pr = pulse_response(prof.pulse)
        assert pr["window"] == pytest.approx(window, rel=1e-12)
        assert 0.9 * pmax <= pr[name]["pulses"] <= pmax
        assert 0 <= pr[name]["nonlinearity"] < 0.5 and 0 < pr[name]["step_noise"] < 1
    # the device alone holds that window; its 1T1R cell (0.94 kOhm transistor) cannot read it,
    # and `device check`'s window is the cell's, as in the chain
    code, out, err = run(["device", "check", str(HFOX), "--pulse-card", str(TAOX),
                          "--g-min-uS", "1200", "--g-max-uS", "2200", "--json"], capsys)
    assert code == 1 and "outside what the device reaches in its cell" in err


def test_help(capsys):
    code, out, _ = run(["device", "check", "--help"], capsys)
    assert code == 0 and "--pulse-card" in out and "read-disturb" in out
    code, out, _ = run(["--help"], capsys)
    assert "device" in out


@pytest.mark.parametrize("args, words", [
    ([str(TAOX)], "is a pulse-update card"),
    ([str(KNOWM), "--pulse-card", str(VTEAM)], "is an I-V card"),
    ([str(KNOWM), "--pulse-card", str(TAOX)], "does not overlap the window"),
    ([str(KNOWM), "--pulse-card", str(GONG)], "not siemens"),
    ([str(KNOWM), "--v-read", "0.2"], "is above the safe limit"),
    ([str(KNOWM), "--g-min-uS", "10", "--g-max-uS", "1000"], "outside what the device holds"),
    ([str(KNOWM), "--g-min-uS", "100"], "give both"),
    (["ohmic"], "window is empty"),
    (["no-read"], "leaves no read voltage"),
    (["missing.json"], "not found"),
    (["reversed"], "the recorded operating window is not valid"),
])
def test_bad_input_one_line(args, words, tmp_path, capsys):
    if args[0] == "reversed":  # a card whose recorded window was edited: g_min > g_max
        obj = json.loads((DEVICE_MODELS_DIR / "knowm-m1-vteam.json").read_text())
        obj["operating"]["window_S"] = obj["operating"]["window_S"][::-1]
        args = [str(tmp_path / "reversed.json")]
        Path(args[0]).write_text(json.dumps(obj))
    elif args[0] == "ohmic":  # conductance independent of the state: no window
        args = [str(Device("ohmic", {"G": 2e-5}).to_card().save(tmp_path / "ohmic.json"))]
    elif args[0] == "no-read":  # switches at 1.5 mV: no read voltage of 1 mV or more is safe
        params = {k: v for k, v in ModelCard.load(VTEAM).values().items()
                  if k not in ("polarity", "v_read")}
        params["v_off"] = 1.5e-3
        args = [str(Device("vteam", params).to_card().save(tmp_path / "fragile.json"))]
    else:
        args = [a if not a.endswith("missing.json") else str(tmp_path / a) for a in args]
    code, out, err = run(["device", "check", *args, "--json"], capsys)
    assert code == 1 and out == ""
    assert words in err and err.count("\n") == 1 and err.startswith("circuitnn: error:")

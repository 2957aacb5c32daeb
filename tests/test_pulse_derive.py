"""A pulse-update law derived from an I-V card (circuitnn.fitting.derive): real numpy cell
simulations, a real ngspice check, the real fit_pulse; the cache; `fit-pulse --from-card`."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_run import run

from circuitnn.cache import content_key
from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, ModelCard
from circuitnn.devices.profile import DeviceProfile, load_pulse_card
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.derive import (
    AMPLITUDE_FACTORS,
    MAX_CHECK_ERROR,
    MIN_PULSES,
    DeriveSettings,
    _identity,
    _noise,
    access_transistor,
    derived_pulse,
)
from circuitnn.io import file_sha256
from circuitnn.tile.nodal import mos1_current
from circuitnn.tile.spec import Transistor

BUILTIN = DEVICE_MODELS_DIR / BUILTIN_CARD
WINDOW = (6e-6, 24e-6)


@pytest.fixture(scope="module")
def builtin_profile() -> DeviceProfile:
    return DeviceProfile.load(BUILTIN, window=WINDOW)


@pytest.fixture(scope="module")
def derived(builtin_profile):
    return derived_pulse(builtin_profile, check_ngspice=True)


def test_access_transistor_is_the_nodal_level1_current() -> None:
    t = Transistor()
    u = np.linspace(-2.0, 2.0, 81)
    for vgs in (0.2, 1.0, 1.4, 3.0):
        el = access_transistor(t, vgs)
        i, g = el.current_and_conductance(u)
        ref, _, ref_g = mos1_current(vgs, u, t.beta, t.vto, t.lam)
        np.testing.assert_allclose(i, ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
        assert np.all(g >= 0)


@pytest.mark.ngspice
def test_derived_law_is_monotone_and_covers_the_window(derived) -> None:
    model, report = derived
    assert model.unit == "S"
    assert model.g_min <= WINDOW[0] * (1 + 1e-9) and model.g_max >= WINDOW[1] * (1 - 1e-9)
    g = np.linspace(WINDOW[0], WINDOW[1], 50)
    assert np.all(model.mean_step(g, 1) > 0)  # SET raises G
    assert np.all(model.mean_step(g, -1) < 0)  # RESET lowers it
    up = model.ramp(WINDOW[0], 200, 1)
    down = model.ramp(WINDOW[1], 200, -1)
    assert up[-1] >= WINDOW[1] and down[-1] <= WINDOW[0]
    assert report["source"] == "derived"
    assert report["sha256"] == file_sha256(report["path"])
    assert report["iv_card"]["sha256"] == file_sha256(BUILTIN)
    # the simulated ramps themselves are monotone and cross the window
    for word, sign in (("set", 1), ("reset", -1)):
        ramp = np.asarray(report["ramps_S"][word])
        assert np.all(sign * np.diff(ramp) > 0)
        assert report["ramp_pulses"][word] >= 4
    assert report["ramps_S"]["set"][-1] >= WINDOW[1]
    assert report["ramps_S"]["reset"][-1] <= WINDOW[0]
    for tag in ("p", "d"):
        assert report["fit"][tag]["mean_ramp_max_dev_rel"] < 0.05
    assert report["noise_source"].startswith("none")
    json.dumps(report)  # plain JSON


@pytest.mark.ngspice
def test_ngspice_check_within_one_percent(derived, builtin_profile) -> None:
    _, report = derived
    chk = report["ngspice_check"]
    assert chk["max_state_error"] <= MAX_CHECK_ERROR
    # the checked pulses moved the conductance: the check compares real switching
    lo, hi = builtin_profile.window
    assert chk["set"]["g_after_ngspice"] > lo * 1.1
    assert chk["reset"]["g_after_ngspice"] < hi * 0.9
    rel = abs(chk["set"]["g_after_ngspice"] - chk["set"]["g_after_numpy"]) / (hi - lo)
    assert rel < MAX_CHECK_ERROR


@pytest.mark.ngspice
def test_cache_is_reused(derived, builtin_profile) -> None:
    model, report = derived
    path = Path(report["path"])
    mtime = path.stat().st_mtime_ns
    calls = []
    model2, report2 = derived_pulse(builtin_profile, check_ngspice=True, progress=calls.append)
    assert report2["cached"] is True and not calls  # nothing simulated
    assert report2["path"] == report["path"] and path.stat().st_mtime_ns == mtime
    assert model2.pmax_p == pytest.approx(model.pmax_p, rel=1e-12)
    # other settings are another card (its key differs: nothing is read from this one)
    other = content_key(_identity(builtin_profile, DeriveSettings(noise=0.01)))
    assert other != content_key(_identity(builtin_profile, DeriveSettings()))


@pytest.mark.ngspice
def test_noise_from_the_card_variation(tmp_path, derived) -> None:
    card = ModelCard.load(BUILTIN)
    card.variation = {**card.variation, "cycle_to_cycle": {"sigma_rel": 0.02}}
    path = card.save(tmp_path / "hfox-noisy.json")
    chosen = derived[1]["pulses"]  # the built-in card's amplitudes: no ladder to climb
    settings = DeriveSettings(amplitude_set=chosen["set"]["amplitude"],
                              amplitude_reset=chosen["reset"]["amplitude"], noise=0.5)
    model, report = derived_pulse(DeviceProfile.load(path, window=WINDOW), settings,
                                  check_ngspice=False)
    assert report["noise_source"] == "card variation.cycle_to_cycle.sigma_rel"
    assert model.sigma_add_p == pytest.approx(0.02 * (model.g_max - model.g_min), rel=1e-9)
    saved = ModelCard.load(report["path"])
    assert saved.provenance["noise_source"] == report["noise_source"]
    rel, source = _noise(ModelCard.load(BUILTIN), DeriveSettings(noise=0.01))
    assert source == "option"
    assert rel["sigma_add_p"] == rel["sigma_add_d"] == 0.01 and rel["sigma_level"] == 0.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CircuitnnError, match="width"):
        DeriveSettings(width=-1e-9)
    with pytest.raises(CircuitnnError, match="amplitude_set"):
        DeriveSettings(amplitude_set=7.0)
    with pytest.raises(CircuitnnError, match="pulses"):
        DeriveSettings(pulses=2)


def test_amplitude_below_threshold_is_refused(builtin_profile) -> None:
    with pytest.raises(CircuitnnError, match="threshold"):
        derived_pulse(builtin_profile, DeriveSettings(amplitude_set=0.5))


def test_impossible_thresholds_are_refused(tmp_path) -> None:
    card = ModelCard.load(DEVICE_MODELS_DIR / "knowm-m1-yakopcic.json")
    params = dict(card.parameters)
    params["Vn"] = replace(params["Vn"], value=4.8)  # RESET threshold ~4.8 V
    card = replace(card, parameters=params, operating={})
    path = card.save(tmp_path / "high-threshold.json")
    with pytest.raises(CircuitnnError, match="leaves no pulse amplitude"):
        derived_pulse(DeviceProfile.load(path), check_ngspice=False)


def test_too_slow_device_is_refused_with_a_hint() -> None:
    # the Knowm Yakopcic card was fitted to 1 Hz - 1 kHz sweeps: 50 ns pulses barely move it
    profile = DeviceProfile.load(DEVICE_MODELS_DIR / "knowm-m1-yakopcic.json")
    with pytest.raises(CircuitnnError, match="too slowly.*--width"):
        derived_pulse(profile, DeriveSettings(width=50e-9), check_ngspice=False)


def test_fast_device_is_programmed_between_its_threshold_and_the_lowest_rung(tmp_path) -> None:
    # the bipolar VTEAM card with a soft SET onset (alpha_on 1.5): at the ladder's lowest rung,
    # 1.1 x its threshold, a SET ramp crosses the window in 3 pulses, too few for a law
    card = ModelCard.load(DEVICE_MODELS_DIR / "bipolar-vteam.json")
    params = dict(card.parameters)
    params["alpha_on"] = replace(params["alpha_on"], value=1.5)
    profile = DeviceProfile.load(replace(card, parameters=params, operating={}).save(
        tmp_path / "fast-vteam.json"))
    _, report = derived_pulse(profile, check_ngspice=False)
    pulse = report["pulses"]["set"]
    threshold = profile.operating.thresholds[0 if pulse["kind"] == "set" else 1]
    assert threshold < pulse["amplitude"] < AMPLITUDE_FACTORS[0] * threshold
    assert report["ramp_pulses"]["set"] >= MIN_PULSES


# --- CLI ----------------------------------------------------------------------------------------
@pytest.mark.ngspice
def test_cli_from_card(tmp_path, derived, capsys) -> None:
    out, fig = tmp_path / "derived.json", tmp_path / "derived.png"
    code, stdout, err = run(["fit-pulse", "--from-card", str(BUILTIN), "--window", "6e-6,24e-6",
                             "--json", "--out", str(out), "--figure", str(fig)], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["source"] == "derived" and report["ngspice_check"] is not None
    assert fig.stat().st_size > 0
    # --window is what the 1T1R cell reads (as everywhere): the law is derived on the devices'
    # own conductances there, a little higher (the access transistor)
    lo, hi = report["window"]
    assert WINDOW[0] < lo < 1.05 * WINDOW[0] and WINDOW[1] < hi < 1.05 * WINDOW[1]
    law = load_pulse_card(out)[1]
    profile = DeviceProfile.load(BUILTIN, pulse_card=out, window=WINDOW)
    assert profile.pulse is not None and profile.pulse_scale == pytest.approx(
        (WINDOW[1] - WINDOW[0]) / (law.g_max - law.g_min), rel=1e-9)


@pytest.mark.parametrize("argv, message", [
    (["--from-card", "no-such-card.json"], "not found"),
    (["--from-card", str(DEVICE_MODELS_DIR / "taox-pulse.json")], "pulse-update card"),
    (["--from-card", str(BUILTIN), "--width", "-5e-8"], "width"),
    (["--from-card", str(BUILTIN), "--amplitude-set", "0.5"], "threshold"),
    (["--from-card", str(BUILTIN), "--amplitude-reset", "9"], "amplitude_reset"),
    (["taox-pulse", "--from-card", str(BUILTIN)], "either"),
    ([], "either"),
    (["taox-pulse", "--width", "1e-8"], "--from-card"),
])
def test_cli_bad_input_one_line(argv, message, capsys) -> None:
    code, out, err = run(["fit-pulse", *argv], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert out == ""


@pytest.mark.ngspice
def test_cache_folder_is_not_the_repository(derived) -> None:
    repo = Path(__file__).resolve().parents[1]
    assert repo not in Path(derived[1]["path"]).resolve().parents
    assert os.environ.get("CIRCUITNN_CACHE")


def test_refusal_hints_follow_what_ended_the_ramps() -> None:
    """The hint names what stopped the strongest ramp and only option values the CLI accepts."""
    from circuitnn.fitting.derive import (
        MAX_PULSES,
        MAX_WIDTH,
        V_PULSE_MAX,
        TooSlow,
        _Pulse,
        _refuse,
        _Tried,
    )

    g = np.array([1e-5, 1.00001e-5])
    window, thr = (1e-5, 1e-4), {"set": 0.5, "reset": 0.5}

    def refusal(end: str, settings: DeriveSettings, amplitude: float = 1.0,
                gate: float = 1.4, v_device: float = 0.9, given: bool = False) -> str:
        tried = [_Tried(_Pulse("set", amplitude, gate), g, end, v_device)]
        with pytest.raises(CircuitnnError) as info:
            _refuse("SET", tried, given, settings, window, thr)
        return str(info.value)

    text = refusal("too slow", DeriveSettings(width=5e-8))
    assert "too slow" in text and "--width (now 5e-08 s, at most 0.001 s)" in text
    with pytest.raises(TooSlow):
        _refuse("SET", [_Tried(_Pulse("set", 1.0, 1.4), g, "too slow", 0.9)], False,
                DeriveSettings(width=5e-8), window, thr)
    # at the longest width and the largest budget only the window is left to change
    text = refusal("pulse budget", DeriveSettings(width=MAX_WIDTH, pulses=MAX_PULSES))
    assert "--width" not in text and "--pulses" not in text and "--window" in text
    text = refusal("current-limited", DeriveSettings(), v_device=0.3)
    assert "current-limited" in text and "below its switching threshold 0.5 V" in text
    assert "--gate-set (now 1.4 V, at most 5 V)" in text and "too slow" not in text
    assert "--gate-set" not in refusal("current-limited", DeriveSettings(gate_set=5.0),
                                       gate=5.0, v_device=0.3)
    text = refusal("saturated", DeriveSettings(), amplitude=V_PULSE_MAX)
    assert "saturated" in text and "--amplitude-set" not in text and "--window" in text
    assert f"--amplitude-set (at most {V_PULSE_MAX:g} V)" in refusal("saturated",
                                                                     DeriveSettings())

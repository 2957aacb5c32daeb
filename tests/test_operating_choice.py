"""The operating point of a device in an array: one rule for every card (the built-in card and a
byte copy of it get the same), what a card carries, and refusals before any long work."""

import shutil

import numpy as np
import pytest

from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, builtin_card
from circuitnn.devices.choice import (
    OperatingChoice,
    Window,
    carried_choice,
    reference_choice,
    resolve,
    with_choice,
)
from circuitnn.errors import CircuitnnError
from circuitnn.network.device import BUILTIN_PATH, array_device, device_windows
from circuitnn.reference import REF

KNOWM = DEVICE_MODELS_DIR / "knowm-m1-vteam.json"


def test_the_builtin_card_and_its_byte_copy_get_the_same_operating_point(tmp_path):
    copy = tmp_path / "my-device.json"
    shutil.copyfile(BUILTIN_PATH, copy)
    builtin, mine = array_device(), array_device(copy)
    for dev in (builtin, mine):
        assert dev.v_read == pytest.approx(REF.hardware.v_read)
        assert (dev.window.g_min, dev.window.g_max) == (REF.choices.g_min, REF.choices.g_max)
        assert dev.summary["operating_point"]["source"] == "given"
    assert builtin.choice == mine.choice
    assert builtin.device_window == mine.device_window
    assert builtin.summary["pulse"]["sha256"] == mine.summary["pulse"]["sha256"]
    # the 1T1R cell reads below its device: the device window lies above the cell window
    assert builtin.device_window[1] > REF.choices.g_max
    assert builtin.tolerance == pytest.approx(REF.choices.write_tolerance, rel=1e-5)


def test_the_preset_attaches_to_parameters_not_to_a_path():
    card = ModelCard.load(BUILTIN_PATH)
    assert reference_choice(card) is not None
    values = card.to_json()
    values["parameters"]["g0"]["value"] *= 1.01  # another device of the same model
    assert reference_choice(ModelCard.from_json(values)) is None


def test_a_card_carries_its_operating_point(tmp_path):
    card = ModelCard.load(KNOWM)
    assert carried_choice(card) is None
    chosen = OperatingChoice(0.03, (10e-6, 100e-6), 1.0, None, 0.25, "incremental", "search")
    path = tmp_path / "card.json"
    with_choice(card, chosen).save(path)
    back = carried_choice(ModelCard.load(path))
    assert back.source == "given" and back.settings() == chosen.settings()
    # a rule asked for ignores what the card carries; a setting given overrides its axis
    rule = resolve(ModelCard.load(path), (0.037, (3e-5, 3e-4)), "rule", {})
    assert rule.source == "rule" and rule.g_window == (3e-5, 3e-4)
    given = resolve(ModelCard.load(path), (0.037, (3e-5, 3e-4)), None, {"gate_set": 1.2})
    assert given.gate_set == 1.2 and given.g_window == (10e-6, 100e-6)


@pytest.mark.parametrize("kw, message", [
    (dict(g_window=(24e-6, 6e-6)), "g_min < g_max"),
    (dict(g_window=(6e-6, 6e-6)), "g_min < g_max"),
    (dict(gate_set=7.0), "SET gate voltage"),
    (dict(tolerance_rel=0.6), "tolerance"),
    (dict(scheme="ramp"), "scheme"),
    (dict(v_read=-0.1), "v_read"),
])
def test_impossible_settings_are_refused(kw, message):
    args = dict(v_read=0.2, g_window=(6e-6, 24e-6)) | kw
    with pytest.raises(CircuitnnError, match=message):
        OperatingChoice(**args)


@pytest.mark.parametrize("kw, message", [
    (dict(gate_set=0.3), "transistor off"),
    (dict(v_read=0.9), "above the safe limit"),
    (dict(g_window=(6e-6, 5e-3)), "outside what the device (holds|reaches)"),
])
def test_what_the_device_cannot_take_is_refused_before_any_pulse(kw, message):
    card = builtin_card()
    choice = OperatingChoice(**(dict(v_read=0.2, g_window=(6e-6, 24e-6)) | kw))
    with pytest.raises(CircuitnnError, match=message):
        device_windows(card, choice, "builtin")


def test_window_levels_and_spacing():
    w = OperatingChoice(0.2, (6e-6, 24e-6)).window(8)
    assert w == Window(6e-6, 24e-6, 8)
    assert w.unit == pytest.approx(18e-6 / 7)
    gates = OperatingChoice(0.2, (6e-6, 24e-6), 0.8, scheme="incremental").gates()
    assert len(gates) > 1 and np.all(np.diff(gates) > 0)

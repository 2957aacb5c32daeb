"""The device's measured spread in the chain: the devices a card was fitted to, their spread of
the derived pulse law, stuck cells and read noise as device properties, and bad spreads."""

import json
import math

import numpy as np
import pytest

from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard
from circuitnn.devices.population import members
from circuitnn.devices.pulse import scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.network.device import array_device, check_variation
from circuitnn.training.transfer import ProgramConfig, program_config, write_verify
from tests.cli_run import run

KNOWM = DEVICE_MODELS_DIR / "knowm-m1-vteam.json"  # fitted to M1 with the M1-M3 spread
#: the pulses the amplitude and width rules choose for it at its rule's operating point (given
#: here: the derivation need not climb the amplitude ladder)
PULSES = ["--amplitude-set", "1.482432", "--amplitude-reset", "1.791528", "--width", "5e-7"]


def test_members_are_the_fitted_devices() -> None:
    card = ModelCard.load(KNOWM)
    rec = card.variation["device_to_device"]
    found = members(card)
    assert [name for name, _ in found] == rec["devices"] == ["M1", "M2", "M3"]
    for k, (_, member) in enumerate(found):
        v = member.values()
        assert v["polarity"] == rec["polarity"][k]
        for name, entry in rec["parameters"].items():
            assert v[name] == entry["values"][k]
        assert member.variation == {} and member.provenance["device"] == rec["devices"][k]
    assert members(ModelCard.load(DEVICE_MODELS_DIR / "stanford-pku-hfox.json")) == []


@pytest.mark.parametrize("edit, words", [
    (lambda r: r["parameters"]["R_on"].update(std=-1.0), "spread of R_on is negative"),
    (lambda r: r["parameters"]["k_on"].update(std=math.inf), "must be a finite number"),
    (lambda r: r["parameters"]["w_c"]["values"].__setitem__(1, "x"), "must be a finite"),
    (lambda r: r["polarity"].pop(), "equal length"),
])
def test_a_bad_spread_is_refused_in_one_line(edit, words, tmp_path, capsys) -> None:
    obj = json.loads(KNOWM.read_text())
    edit(obj["variation"]["device_to_device"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(CircuitnnError, match=words):
        members(ModelCard.load(path))
    code, out, err = run(["network", "run", "--network", "cnn5", "--out", str(tmp_path / "r"),
                          "--iv-card", str(path), "--operating-point", "rule"], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("circuitnn: error:")
    assert words in err and not (tmp_path / "r" / "report.json").exists()


@pytest.mark.measured
def test_the_chain_draws_cells_from_the_measured_spread() -> None:
    from circuitnn.devices.profile import DeviceProfile
    from circuitnn.fitting.derive import DeriveSettings, derived_pulse
    from circuitnn.network.device import device_variation, resolve_device

    _, choice, window, _ = resolve_device(KNOWM, "rule")  # the rule's operating point
    profile = DeviceProfile.load(KNOWM, v_read=choice.v_read, window=window)
    given = DeriveSettings(**{k.lstrip("-").replace("-", "_"): float(v)
                              for k, v in zip(PULSES[::2], PULSES[1::2], strict=True)})
    law, report = derived_pulse(profile, given, check_ngspice=False)
    rec = report["device_to_device"]
    assert rec["source"] == "measured" and rec["devices"] == 3 and rec["simulated"] == 3
    own = next(m for m in rec["members"] if m["device"] == "M1")  # the card's own device
    assert own["law"]["scale_p"] == pytest.approx(1.0) and own["law"]["scale_d"] == 1.0
    laws = [m["law"] for m in rec["members"]]
    assert law.d2d["g_max_std"] == pytest.approx(np.std([w["g_max"] for w in laws], ddof=1),
                                                 rel=1e-9)
    assert law.d2d["scale_p_std"] == pytest.approx(
        np.std(np.log([w["scale_p"] for w in laws]), ddof=1), rel=1e-9)
    assert all(v > 0 for v in law.d2d.values())
    law, _, _, _, var = device_variation(law, (), {}, profile.iv_card, rec)
    assert var["source"] == "measured" and var["devices"] == 3
    # every cell its own device: the spread scales with the variation axis
    rng = np.random.default_rng(0)
    std = [scale_model(law, law.g_min, law.g_max, s).sample_devices(4000, rng)["g_max"].std()
           for s in (0.0, 1.0)]
    assert std[0] < 1e-9 * law.d2d["g_max_std"] and std[1] > 0.5 * law.d2d["g_max_std"]


def test_given_spread_stuck_cells_and_read_noise() -> None:
    dev = array_device("ohmic", variation={"device_spread": 0.1, "stuck_low": 0.2,
                                           "stuck_high": 0.0, "read_noise": 0.05})
    law, (g_min, g_max) = dev.pulse_model, dev.device_window
    assert law.d2d["g_max_std"] == pytest.approx(0.1 * (g_max - g_min))
    assert law.d2d["scale_d_std"] == 0.1
    var = dev.summary["variation"]
    assert var["source"] == "given" and var["stuck"] == {"low": 0.2, "high": 0.0}
    assert var["read_noise"]["relative"] == 0.05 and dev.read_noise[1] == 0.05
    target = np.full((50, 40), 0.5 * (g_min + g_max))
    res = write_verify(target, dev.programming_laws(), np.random.default_rng(2),
                       program_config(dev, 200))
    assert 0.15 < res.stuck.mean() < 0.25
    assert np.all(res.conductance[res.stuck] < target[res.stuck])  # stuck at the low bound
    assert array_device("ohmic").summary["variation"]["source"] == "measured"  # TaOx ramps


def test_a_wider_spread_programs_worse() -> None:
    dev = array_device("ohmic", variation={"device_spread": 0.3, "stuck_low": 0.0,
                                           "stuck_high": 0.0})
    target = np.random.default_rng(1).uniform(*dev.device_window, (40, 40))
    rms = []
    for scale in (0.0, 1.0, 3.0):
        res = write_verify(target, dev.programming_laws(scale), np.random.default_rng(3),
                           program_config(dev, 300, scale))
        rms.append(float(np.sqrt(np.mean(res.error ** 2))))
    assert rms[0] < rms[1] < rms[2]


@pytest.mark.parametrize("options, words", [
    ({"device_spread": -0.1}, "device spread must be in [0, 1)"),
    ({"read_noise": math.nan}, "read noise must be in [0, 1)"),
    ({"stuck_low": 0.6, "stuck_high": 0.5}, "leave no working cell"),
    ({"stuck_high": "a lot"}, "stuck high must be a number"),
])
def test_bad_variation_options(options, words) -> None:
    with pytest.raises(CircuitnnError, match=words.replace("[", r"\[").replace(")", r"\)")):
        check_variation(options)


def test_bad_variation_options_on_the_command_line(tmp_path, capsys) -> None:
    code, _, err = run(["network", "run", "--network", "cnn5", "--out", str(tmp_path / "r"),
                        "--stuck-low", "-0.1"], capsys)
    assert code == 1 and err.count("\n") == 1 and "stuck low must be in [0, 1)" in err
    code, _, err = run(["mcnn", "run", "--out", str(tmp_path / "m"), "--chip-seed", "-1"],
                       capsys)
    assert code == 1 and err.count("\n") == 1 and "--chip-seed must be >= 0" in err
    assert not (tmp_path / "m").exists()


def test_a_derived_law_takes_its_noise_from_a_pulse_card(tmp_path, capsys) -> None:
    from circuitnn.devices.pulse import PulseModel
    from circuitnn.fitting.derive import pulse_card_noise

    taox = DEVICE_MODELS_DIR / "taox-pulse.json"
    code, out, err = run(["fit-pulse", "--from-card", str(KNOWM), "--noise-from", str(taox),
                          *PULSES, "--no-ngspice-check", "--json",
                          "--out", str(tmp_path / "d.json")], capsys)
    assert code == 0, err
    assert json.loads(out)["noise_source"] == "pulse card of the same device"
    law = PulseModel.from_card(ModelCard.load(tmp_path / "d.json"))
    rel, span = pulse_card_noise(ModelCard.load(taox)), law.g_max - law.g_min
    assert rel["sigma_add_p"] > 0 and rel["sigma_level"] > 0
    assert law.sigma_add_p / span == pytest.approx(rel["sigma_add_p"], rel=1e-9)
    assert law.sigma_level / span == pytest.approx(rel["sigma_level"], rel=1e-9)
    assert law.rho_level == pytest.approx(rel["rho_level"])
    for extra, words in ((["--noise", "0.01"], "not both"),
                         ([], "is not a pulse-update card")):
        source = str(taox) if extra else str(KNOWM)
        code, _, err = run(["fit-pulse", "--from-card", str(KNOWM), "--noise-from", source,
                            *extra], capsys)
        assert code == 1 and words in err and err.count("\n") == 1


def test_pair_compensation_keeps_the_weight_of_a_stuck_cell() -> None:
    """A stuck cell's partner re-targeted by the stuck cell's offset keeps the pair's
    difference (the weight) where the window allows it, and comes closer where it does not."""
    dev = array_device()
    w, unit = np.random.default_rng(0).integers(-7, 8, 3000), dev.window.unit
    target = dev.window.g_min + unit * np.stack([np.clip(w, 0, None), np.clip(-w, 0, None)], 1)
    partner = np.arange(target.size).reshape(target.shape)[:, ::-1]
    cfg = ProgramConfig(dev.tolerance, 400, stuck_low=0.05, stuck_high=0.05)
    law = dev.programming_model()
    plain = write_verify(target, law, np.random.default_rng(1), cfg)
    comp = write_verify(target, law, np.random.default_rng(1), cfg, partner=partner)
    assert np.array_equal(plain.stuck, comp.stuck)  # the same chip
    one = plain.stuck.sum(axis=1) == 1  # pairs with one stuck cell
    rows, stuck = np.flatnonzero(one), plain.stuck[one].argmax(axis=1)
    want = target[rows, 1 - stuck] + plain.conductance[rows, stuck] - target[rows, stuck]
    fits = (want >= law.g_min) & (want <= law.g_max)  # the partner can make up for it

    def weight_error(res) -> np.ndarray:  # in levels
        g = res.conductance[one]
        return np.abs(g[:, 0] - g[:, 1] - (target[one, 0] - target[one, 1])) / unit

    before, after = weight_error(plain), weight_error(comp)
    assert fits.sum() > 100 and (~fits).sum() > 100
    assert np.percentile(before[fits], 90) > 3 and np.percentile(after[fits], 90) < 0.3
    assert np.mean(after[~fits]) < np.mean(before[~fits])
    assert comp.summary()["compensated"] == int(comp.compensated.sum()) >= fits.sum()
    assert plain.compensated is None and plain.summary()["compensated"] == 0

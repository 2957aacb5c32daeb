"""One device from measured data to network accuracy, with no manual step (issue 8).

The VTEAM card that `circuitnn fit` made from the measured bipolar Cu/a-SiC/TiN loop goes
through `device check`, `fit-pulse --from-card` (checked against an ngspice transient), the
automatic surrogate calibration (validated against ngspice) and a quick `mcnn run --iv-card`;
a second request reuses the cached pulse law and surrogate.
"""

from __future__ import annotations

import json

import pytest
from cli_run import run

from circuitnn.cli import main
from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard
from circuitnn.io import file_sha256

CARD = DEVICE_MODELS_DIR / "bipolar-vteam.json"
QUICK = ["mcnn", "run", "--quick", "--n-check", "0", "--iv-card", str(CARD), "--operating-point",
         "rule"]  # the card's rules: the operating-point search has tests of its own


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    main(QUICK + ["--out", str(out)])
    return json.loads((out / "report.json").read_text())


def test_the_card_was_fitted_to_measured_data() -> None:
    data = ModelCard.load(CARD).provenance["data"]
    assert any(d.get("public_source", {}).get("dataset") for d in data)


@pytest.mark.ngspice
def test_device_check_derives_the_pulse_law(capsys) -> None:
    code, out, err = run(["device", "check", str(CARD), "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["iv_card"]["sha256"] == file_sha256(CARD)
    assert r["pulse"]["source"] == "derived"
    assert r["pulse"]["ngspice_check"]["max_state_error"] <= 0.01
    assert r["pulse_response"]["set"]["pulses"] >= 4
    code, out, err = run(["fit-pulse", "--from-card", str(CARD), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["cached"] is True  # the same law, not derived again


@pytest.mark.ngspice
def test_quick_chain_on_the_fitted_device(first_run) -> None:
    dev, sur = first_run["device"], first_run["surrogate"]
    assert dev["iv_card"]["sha256"] == file_sha256(CARD) and dev["iv_card"]["model"] == "vteam"
    assert dev["pulse"]["source"] == "derived" and dev["pulse"]["sha256"]
    lo, hi = dev["g_window"]
    assert 0 < lo < hi and dev["v_read"] > 0
    assert sur["calibrated"] is True and sur["validation"]["rms_error"] <= 0.01
    assert sur["validation"]["tiles"] >= 1 and sur["validation"]["vectors"] >= 1
    assert first_run["software_test_accuracy"] > 0.8
    assert first_run["transfer_test_accuracy"] > 0.5  # a real device, programmed and read


@pytest.mark.ngspice
def test_a_second_run_reuses_the_cache(first_run) -> None:
    """What the device stage of a second run calls: nothing is derived or calibrated again."""
    from circuitnn.network.device import array_device
    from circuitnn.training.pipeline import device_surrogate

    dev = array_device(CARD)
    assert dev.summary["pulse"]["cached"] is True
    assert dev.summary["pulse"]["sha256"] == first_run["device"]["pulse"]["sha256"]
    sur = device_surrogate(dev, progress=False)
    assert sur["calibrated"] is False
    assert sur["card_sha256"] == first_run["surrogate"]["card_sha256"]

"""Several devices in one manifest: the cards of the devices that fit are written, with their
device-to-device spread, and a device that cannot be fitted is named with its reason."""

import json

import numpy as np
import pytest

from circuitnn.datasets import knowm_manifest
from circuitnn.devices.card import ModelCard
from tests.cli_run import run

pytestmark = [pytest.mark.measured, pytest.mark.ngspice]


def test_a_device_that_cannot_be_fitted_leaves_the_others_cards(tmp_path, capsys) -> None:
    manifest = knowm_manifest("M1", frequencies=(10,))
    rng = np.random.default_rng(0)
    t = np.arange(400) / 400
    noise = np.c_[0.8 * np.sin(2 * np.pi * t), 5 * rng.standard_normal(t.size)]
    np.savetxt(tmp_path / "noise.csv", noise, delimiter=",")
    manifest += ('\n[[sweep]]\nfile = "noise.csv"\ncolumns = [0, 1]\ncurrent_unit = "uA"\n'
                 'frequency_hz = 10\ndevice = "N"\nseries_resistance_ohm = 5000\n')
    (tmp_path / "m.toml").write_text(manifest)
    out = tmp_path / "{device}.json"
    code, stdout, err = run(["fit", str(tmp_path / "m.toml"), "--model", "vteam", "--maxiter",
                             "20", "--out", str(out), "--figure", str(tmp_path / "{device}.png"),
                             "--json"], capsys)
    assert code == 0, err
    result = json.loads(stdout)["devices"]
    assert "error" in result["N"] and "R^2" in result["N"]["error"]
    assert result["M1"]["best"] == "vteam"
    assert (tmp_path / "m1.json").is_file() and not (tmp_path / "n.json").exists()
    assert ModelCard.load(tmp_path / "m1.json").model == "vteam"
    warning = [ln for ln in err.splitlines() if ln.startswith("circuitnn: warning:")]
    assert len(warning) == 1 and "'N' not fitted" in warning[0]

"""`circuitnn fit` via the real CLI: JSON output, cards, figures, every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from circuitnn.cli import main
from circuitnn.datasets import dataset_path
from circuitnn.devices import Device, ModelCard

pytestmark = pytest.mark.measured

REPO = Path(__file__).resolve().parents[1]
KNOWM_1K = dataset_path("knowm-wsdc-iv") / "5k_0.8V_1000Hz_M1" / "memristor.csv"
BIPOLAR = dataset_path("bipolar-loop") / "bipolar_loop.txt"
# a good start for the bipolar loop (see tests/test_fit_iv.py)
BIPOLAR_VTEAM = {
    "R_on": 7105.515215556435, "R_off": 134660511.53671044, "k_off": 8696.817052969578,
    "k_on": -998916802502.8112, "v_off": 0.08111508778944511, "v_on": -0.48091271163121585,
    "alpha_off": 4.263936825291874, "alpha_on": 4.487321591586262, "a_off": 1.4324655113040363,
    "a_on": -0.4684661412266119, "w_c": 0.34353643676255025,
}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def start_card(tmp_path) -> Path:
    return Device("vteam", BIPOLAR_VTEAM, polarity=-1.0).to_card().save(tmp_path / "start.json")


def test_quick_form_json_card_and_figure(tmp_path, start_card, capsys) -> None:
    card_path, fig_path = tmp_path / "out" / "card.json", tmp_path / "out" / "fig.png"
    code, out, err = run(["fit", str(BIPOLAR), "--columns", "0,1", "--current-unit", "A",
                          "--frequency-hz", "1", "--device", "bip", "--model", "vteam",
                          "--start", str(start_card), "--max-nfev", "3", "--out", str(card_path),
                          "--figure", str(fig_path), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)  # stdout holds the JSON object and nothing else
    assert obj["model"] == "vteam" and obj["device"] == "bip"
    assert obj["nrmse"] <= 0.10
    assert set(obj["params"]["R_on"]) == {"value", "stderr", "unit"}
    assert obj["params"]["R_on"]["unit"] == "ohm"
    card = ModelCard.load(card_path)
    assert card.model == "vteam" and card.values()["polarity"] == -1.0
    assert card.fit["nrmse"] == pytest.approx(obj["nrmse"])
    assert card.provenance["data"][0]["public_source"]["dataset"] == "bipolar-loop"
    # the card carries its safe read voltage and how it was chosen (circuitnn.devices.operating)
    op = card.operating
    assert op["v_read"] == card.values()["v_read"] <= 0.5 * min(op["thresholds_V"].values())
    assert "reference's 0.2 V" in op["v_read_rule"] and op["read_disturb"]["passes"]
    assert fig_path.read_bytes()[:4] == b"\x89PNG"


def test_manifest_with_default_paths_and_text_output(tmp_path, start_card, capsys,
                                                     monkeypatch) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[[sweep]]\nfile = "{BIPOLAR}"\ncolumns = [0, 1]\n'
                        'current_unit = "A"\nfrequency_hz = 1\ndevice = "Dev A"\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["fit", str(manifest), "--model", "vteam", "--start", str(start_card),
                          "--max-nfev", "2"], capsys)
    assert code == 0, err
    assert "NRMSE overall" in out and "R_on" in out
    assert (tmp_path / "device_models" / "dev-a-vteam.json").is_file()
    assert (tmp_path / "figures" / "fit_dev-a-vteam.png").is_file()


def test_help_lists_fit_commands(capsys) -> None:
    code, out, _ = run(["fit", "--help"], capsys)
    assert code == 0 and "--model" in out and "periodic steady state" in out
    code, out, _ = run(["fit-pulse", "--help"], capsys)
    assert code == 0 and "taox-pulse" in out


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


_SINE = np.sin(2 * np.pi * np.arange(40) / 40)
GOOD_ROWS = "\n".join(f"{v:.4f},{2e-5 * v:.4e}" for v in _SINE) + "\n"
NOISE_ROWS = "\n".join(f"{v:.4f},{x:.4e}" for v, x in
                       zip(_SINE, 1e-5 * np.random.default_rng(0).standard_normal(40),
                           strict=True)) + "\n"

QUICK = ["--columns", "0,1", "--current-unit", "A", "--frequency-hz", "10"]
CASES = {
    "missing file": (None, "nope.csv", QUICK, "not found"),
    "empty file": ("empty.csv", "", QUICK, "empty"),
    "binary file": ("bin.csv", b"\x00\x01\x02\xff" * 50, QUICK, "binary"),
    "non-numeric": ("text.csv", GOOD_ROWS.replace("0.0000,", "abc,", 1), QUICK, "line"),
    "NaN": ("nan.csv", GOOD_ROWS.replace("0.0000,", "nan,", 1), QUICK, "line"),
    "single column": ("one.csv", "\n".join(f"{v}" for v in _SINE) + "\n", QUICK, "column"),
    "malformed manifest": ("bad.toml", "[[sweep]\nfile = 1", [], "TOML"),
    "manifest without sweeps": ("empty.toml", "# nothing\n", [], "no [[sweep]]"),
    "unknown current unit": ("u.csv", GOOD_ROWS, ["--columns", "0,1", "--current-unit", "kA",
                                                  "--frequency-hz", "10"], "current_unit"),
    "absurd current magnitude": ("big.csv", GOOD_ROWS, ["--columns", "0,1", "--current-unit",
                                                        "mA", "--frequency-hz", "10"], None),
    "flat zero current": ("flat.csv", "\n".join(f"{v:.4f},0" for v in _SINE) + "\n", QUICK,
                          "flat"),
    "noise does not converge": ("noise.csv", NOISE_ROWS, QUICK + ["--maxiter", "2",
                                                                  "--popsize", "2",
                                                                  "--max-nfev", "3"],
                                "did not converge"),
    "negative frequency": ("f.csv", GOOD_ROWS, ["--columns", "0,1", "--current-unit", "A",
                                                "--frequency-hz", "-5"], "frequency"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_with_one_line_and_writes_nothing(case, tmp_path, capsys) -> None:
    name, content, extra, match = CASES[case]
    if case == "absurd current magnitude":  # 2e-5 * 1e5 -> currents of ~ 2 A read as mA
        content = "\n".join(f"{v:.4f},{2e3 * v:.4e}" for v in _SINE) + "\n"
    path = tmp_path / (name or "nope.csv")
    if name is not None:
        _write(tmp_path, name, content)
    out_dir = tmp_path / "out"
    argv = ["fit", str(path), "--model", "yakopcic", *extra,
            "--out", str(out_dir / "c.json"), "--figure", str(out_dir / "f.png")]
    code, out, err = run(argv, capsys)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and out == ""
    if match:
        assert match in lines[0]
    if name is not None and case != "malformed manifest":
        assert str(path) in lines[0] or path.name in lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_unknown_model_via_subprocess(tmp_path) -> None:
    exe = REPO / ".venv" / "bin" / "circuitnn"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "circuitnn.cli"]
    res = subprocess.run([*cmd, "fit", str(BIPOLAR), *QUICK, "--model", "memristor9000",
                          "--out", str(tmp_path / "c.json")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1 and "memristor9000" in res.stderr
    assert not (tmp_path / "c.json").exists()


def test_several_devices_need_a_device_placeholder(tmp_path, capsys) -> None:
    manifest = tmp_path / "two.toml"
    manifest.write_text("".join(
        f'[[sweep]]\nfile = "{BIPOLAR}"\ncolumns = [0, 1]\ncurrent_unit = "A"\n'
        f'frequency_hz = 1\ndevice = "{d}"\n' for d in ("A", "B")))
    code, _, err = run(["fit", str(manifest), "--model", "vteam", "--out",
                        str(tmp_path / "c.json")], capsys)
    assert code != 0 and "{device}" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["fit", str(manifest), "--model", "vteam", "--device", "C"], capsys)
    assert code != 0 and "no device 'C'" in err


def test_fit_pulse_bad_data_dir(tmp_path, capsys) -> None:
    code, out, err = run(["fit-pulse", "taox-pulse", "--data-dir", str(tmp_path / "none"),
                          "--out", str(tmp_path / "c.json")], capsys)
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1
    assert "none" in err and not (tmp_path / "c.json").exists()


def test_several_devices_one_card_each_with_spread(tmp_path, start_card, capsys) -> None:
    manifest = tmp_path / "two.toml"
    manifest.write_text("".join(
        f'[[sweep]]\nfile = "{BIPOLAR}"\ncolumns = [0, 1]\ncurrent_unit = "A"\n'
        f'frequency_hz = 1\ndevice = "{d}"\n' for d in ("A", "B")))
    code, out, err = run(["fit", str(manifest), "--model", "vteam", "--start", str(start_card),
                          "--max-nfev", "10", "--out", str(tmp_path / "{device}.json"),
                          "--figure", str(tmp_path / "{device}.png"), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj["devices"]) == {"A", "B"} and obj["nrmse"] <= 0.10
    card = ModelCard.load(tmp_path / "a.json")
    spread = card.variation["device_to_device"]
    assert spread["devices"] == ["A", "B"]
    assert spread["parameters"]["R_on"]["std"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "b.json").is_file() and (tmp_path / "b.png").is_file()

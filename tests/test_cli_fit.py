"""`circuitnn fit` via the real CLI: JSON output, cards, figures, every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run

from circuitnn.datasets import dataset_path
from circuitnn.devices import Device, ModelCard
from circuitnn.fitting.iv import FIT_MODELS

REPO = Path(__file__).resolve().parents[1]


def bipolar() -> Path:
    """The measured bipolar loop (looked up when a test needs it: the data may be absent)."""
    return dataset_path("bipolar-loop") / "bipolar_loop.txt"


# a good start for the bipolar loop (see tests/test_fit_iv.py)
BIPOLAR_VTEAM = {
    "R_on": 6003.092953905292, "R_off": 44255638.861065716, "k_off": 0.0010004180598355656,
    "k_on": -106942659.40872514, "v_off": 0.021587290797941895, "v_on": -0.4280057804901134,
    "alpha_off": 7.477510127468661, "alpha_on": 7.106646561630634, "a_off": 1.4999999999973974,
    "a_on": -0.35383581065747044, "w_c": 0.11511304700013987,
}


@pytest.fixture()
def start_card(tmp_path) -> Path:
    return Device("vteam", BIPOLAR_VTEAM, polarity=-1.0).to_card().save(tmp_path / "start.json")


QUICK_BIPOLAR = ["--columns", "0,1", "--current-unit", "A", "--frequency-hz", "1",
                 "--compliance-a", "1e-4"]
INTERFACE_KEYS = {"nrmse", "log_error_decades", "nrmse_ngspice", "params", "stderr",
                  "stderr_reason", "seconds", "per_sweep"}


@pytest.mark.ngspice
@pytest.mark.measured
def test_quick_form_json_card_and_figure(tmp_path, start_card, capsys) -> None:
    card_path, fig_path = tmp_path / "out" / "card.json", tmp_path / "out" / "fig.png"
    code, out, err = run(["fit", str(bipolar()), *QUICK_BIPOLAR, "--device", "bip", "--model",
                          "vteam", "--start", str(start_card), "--out", str(card_path),
                          "--figure", str(fig_path), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)  # stdout holds the JSON object and nothing else
    assert obj["best"] == "vteam" and set(obj["models"]) == {"vteam"}
    entry = obj["models"]["vteam"]
    assert INTERFACE_KEYS <= set(entry)
    assert entry["nrmse"] <= 0.05 and entry["log_error_decades"] <= 0.3
    assert abs(entry["nrmse_ngspice"] - entry["nrmse"]) < 0.01
    assert all(m["period_drift"] < 1e-3 for m in entry["per_sweep"].values())  # steady loop
    assert set(entry["stderr"]) == {p for p in entry["params"] if p != "polarity"}
    nulls = {k for k, v in entry["stderr"].items() if v is None}
    assert nulls == set(entry["stderr_reason"])
    assert entry["params"]["polarity"] == -1.0
    card = ModelCard.load(card_path)
    assert card.model == "vteam" and card.values()["polarity"] == -1.0
    assert card.fit["nrmse"] == pytest.approx(entry["nrmse"])
    assert card.provenance["data"][0]["public_source"]["dataset"] == "bipolar-loop"
    # the card carries its safe read voltage and how it was chosen (circuitnn.devices.operating)
    op = card.operating
    assert op["v_read"] == card.values()["v_read"] <= 0.5 * min(op["thresholds_V"].values())
    assert "reference's 0.2 V" in op["v_read_rule"] and op["read_disturb"]["passes"]
    assert card.provenance["data"][0]["compliance_a"] == 1e-4
    assert fig_path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.ngspice
@pytest.mark.measured
def test_manifest_with_default_paths_and_text_output(tmp_path, start_card, capsys,
                                                     monkeypatch) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[[sweep]]\nfile = "{bipolar()}"\ncolumns = [0, 1]\n'
                        'current_unit = "A"\nfrequency_hz = 1\ndevice = "Dev A"\n'
                        'compliance_a = 100e-6\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["fit", str(manifest), "--model", "vteam", "--start", str(start_card)],
                         capsys)
    assert code == 0, err
    assert "log error" in out and "R_on" in out and "ngspice" in out
    assert (tmp_path / "runs" / "fit" / "dev-a-vteam.json").is_file()
    assert (tmp_path / "runs" / "fit" / "fit_dev-a-vteam.png").is_file()
    assert not (tmp_path / "device_models").exists() and not (tmp_path / "figures").exists()


@pytest.mark.measured
def test_model_all_needs_a_model_placeholder(tmp_path, capsys) -> None:
    code, out, err = run(["fit", str(bipolar()), *QUICK_BIPOLAR, "--model", "all", "--out",
                          str(tmp_path / "c.json")], capsys)
    assert code != 0 and out == "" and "{model}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.ngspice
@pytest.mark.slow
def test_model_all_fits_and_ranks_every_model(tmp_path, capsys) -> None:
    """Every model on one short synthetic loop (tiny effort): one entry per model, a best one."""
    dev = Device("mss", dict(R_on=2e3, R_off=1e5, tau=1e-3, V_on=0.2, V_off=0.2))
    n = 24
    t = np.arange(3 * n) / (n * 10.0)
    v = 0.8 * np.sin(2 * np.pi * 10.0 * t)
    i = dev.simulate(t, v, 0.5).i[-n:]
    data = _write(tmp_path, "loop.csv", "".join(f"{a:.6f},{b:.6e}\n"
                                                for a, b in zip(v[-n:], i, strict=True)))
    code, out, err = run(["fit", str(data), "--columns", "0,1", "--current-unit", "A",
                          "--frequency-hz", "10", "--model", "all", "--maxiter", "3",
                          "--popsize", "3", "--read-range", "0.4",
                          "--out", str(tmp_path / "{model}.json"),
                          "--figure", str(tmp_path / "{model}.png"), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj["models"]) == set(FIT_MODELS)
    assert "error" not in obj["models"][obj["best"]]
    for model, entry in obj["models"].items():
        assert set(entry) == {"error", "seconds"} if "error" in entry else (
            INTERFACE_KEYS | {"read_error_decades", "read_range_v"} <= set(entry))
        assert entry.get("read_range_v", 0.4) == 0.4 and entry["seconds"] > 0
        assert ("error" in entry) != (tmp_path / f"{model}.json").is_file()
    scores = {m: e["score"] for m, e in obj["models"].items() if "error" not in e}
    assert obj["best"] == min(scores, key=scores.get)


@pytest.mark.ngspice
def test_a_list_of_models_and_bad_lists(tmp_path, capsys) -> None:
    data = _write(tmp_path, "loop.csv", "".join(
        f"{0.8 * np.sin(2 * np.pi * k / 24):.6f},{1e-4 * np.sin(2 * np.pi * k / 24):.6e}\n"
        for k in range(24)))
    base = ["fit", str(data), "--columns", "0,1", "--current-unit", "A", "--frequency-hz", "10",
            "--maxiter", "2", "--popsize", "2", "--out", str(tmp_path / "{model}.json"),
            "--figure", str(tmp_path / "{model}.png"), "--json"]
    code, out, err = run(base + ["--model", "vteam,yakopcic"], capsys)
    assert code == 0, err
    assert set(json.loads(out)["models"]) == {"vteam", "yakopcic"}
    for bad in ("vteam,nope", "vteam,vteam", ""):
        code, out, err = run(base + ["--model", bad], capsys)
        assert code != 0 and "--model" in err and len(err.strip().splitlines()) == 1


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
    "absurd compliance": ("c1.csv", GOOD_ROWS, QUICK + ["--compliance-a", "100"],
                          "compliance_a"),
    "compliance in the wrong unit": ("c2.csv", GOOD_ROWS, QUICK + ["--compliance-a", "1e-6"],
                                     "above compliance_a"),
    "sweep entirely at compliance": ("c3.csv", "\n".join(
        f"{v:.4f},{2e-5 * (1 if k % 2 else -1):.4e}" for k, v in enumerate(_SINE)) + "\n",
        QUICK + ["--compliance-a", "2e-5"], "entirely at the compliance"),
    "absurd noise floor": ("n1.csv", GOOD_ROWS, QUICK + ["--noise-floor-a", "5"],
                           "noise_floor_a"),
    "noise floor in the wrong unit": ("n2.csv", GOOD_ROWS, QUICK + ["--noise-floor-a", "1e-4"],
                                      "above every measured current"),
    "noise floor leaving too few points": ("n4.csv", GOOD_ROWS,
                                           QUICK + ["--noise-floor-a", "1.95e-5"],
                                           "above noise_floor_a"),
    "negative noise floor": ("n3.csv", GOOD_ROWS, QUICK + ["--noise-floor-a", "-1e-9"],
                             "noise_floor_a"),
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


@pytest.mark.measured
def test_unknown_model_via_subprocess(tmp_path) -> None:
    exe = REPO / ".venv" / "bin" / "circuitnn"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "circuitnn.cli"]
    res = subprocess.run([*cmd, "fit", str(bipolar()), *QUICK, "--model", "memristor9000",
                          "--out", str(tmp_path / "c.json")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1 and "memristor9000" in res.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.measured
def test_several_devices_need_a_device_placeholder(tmp_path, capsys) -> None:
    manifest = tmp_path / "two.toml"
    manifest.write_text("".join(
        f'[[sweep]]\nfile = "{bipolar()}"\ncolumns = [0, 1]\ncurrent_unit = "A"\n'
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


@pytest.mark.ngspice
@pytest.mark.measured
@pytest.mark.slow
def test_several_devices_one_card_each_with_spread(tmp_path, start_card, capsys) -> None:
    manifest = tmp_path / "two.toml"
    manifest.write_text("".join(
        f'[[sweep]]\nfile = "{bipolar()}"\ncolumns = [0, 1]\ncurrent_unit = "A"\n'
        f'frequency_hz = 1\ndevice = "{d}"\ncompliance_a = 1e-4\n' for d in ("A", "B")))
    code, out, err = run(["fit", str(manifest), "--model", "vteam", "--start", str(start_card),
                          "--out", str(tmp_path / "{device}.json"),
                          "--figure", str(tmp_path / "{device}.png"), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj["devices"]) == {"A", "B"}
    assert all(d["models"]["vteam"]["nrmse"] <= 0.05 for d in obj["devices"].values())
    card = ModelCard.load(tmp_path / "a.json")
    spread = card.variation["device_to_device"]
    assert spread["devices"] == ["A", "B"]
    assert spread["parameters"]["R_on"]["std"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "b.json").is_file() and (tmp_path / "b.png").is_file()

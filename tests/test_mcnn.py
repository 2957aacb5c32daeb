"""The memristor-CNN chain: a --quick run, resume, Chip round trip, write-verify, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from circuitnn.cli import main
from circuitnn.errors import CircuitnnError
from circuitnn.mcnn import Chip
from circuitnn.network import graph
from circuitnn.network.data import load_dataset
from circuitnn.network.device import array_device
from circuitnn.network.energy import EnergyCounter
from circuitnn.network.engines import CircuitRead, build_engine
from circuitnn.network.mapping import Placement
from circuitnn.training.transfer import ProgramConfig, write_verify

QUICK = ["mcnn", "run", "--quick", "--engine", "quantised", "--n-check", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mcnn")
    main(QUICK + ["--out", str(out)])
    return out


@pytest.mark.ngspice
def test_quick_run_report(run_dir):
    rep = json.loads((run_dir / "report.json").read_text())
    for key in ("software_test_accuracy", "quantized_test_accuracy", "transfer_test_accuracy",
                "hybrid_test_accuracy", "three_group", "energy", "data"):
        assert key in rep
    assert rep["software_test_accuracy"] > 0.85
    assert abs(rep["quantized_test_accuracy"] - rep["software_test_accuracy"]) < 0.07
    assert rep["transfer_test_accuracy"] > 0.7
    # hybrid training must not make the training set worse by more than noise
    assert rep["train_error_after_hybrid"] <= rep["train_error_before_hybrid"] + 0.02
    tg = rep["three_group"]
    assert set(tg["per_group_test_error_before"]) == {"G1", "G2", "G3"}
    tr = rep["transfer"]["all_used_cells"]
    assert tr["error_std_uS"] > 0.01 and tr["pulses_mean"] > 1  # non-trivial transfer
    assert rep["data"]["n_train_used"] == 1000 and rep["data"]["n_test_used"] == 200
    assert rep["tiles"] == 8 and rep["energy"]["per_layer"]["C1"]["macs"] == 26 * 26 * 9 * 8
    assert 100 < rep["energy"]["gops_per_w"] < 1e6
    assert len(rep["hybrid_training"]["batch_accuracy_single"]) == 30
    for name in ("report.md", "transfer_error_hist.png", "transfer_pulse_hist.png",
                 "hybrid_accuracy.png", "chip.npz"):
        assert (run_dir / name).is_file(), name
    md = (run_dir / "report.md").read_text()
    assert "95.07%" in md and "96.19%" in md and "93.86%" in md


@pytest.mark.ngspice
def test_resume_recomputes_only_deleted_stage(run_dir, capsys):
    (run_dir / "stages" / "energy.json").unlink()
    capsys.readouterr()
    main(QUICK + ["--out", str(run_dir)])
    out = capsys.readouterr().out
    assert "stages computed: energy" in out and "exsitu" not in out.split("computed:")[1]


@pytest.mark.ngspice
def test_chip_round_trip(run_dir):
    chip = Chip.load(run_dir)
    d = load_dataset(n_test=1000)
    x = d.x_test[:40]
    labels = chip.predict(x, engine="quantised")
    assert labels.shape == (40,) and labels.dtype.kind in "iu"
    assert np.mean(labels == d.y_test[:40]) > 0.8
    assert chip.predict(x, engine="ideal", groups=3).shape == (40,)
    with pytest.raises(CircuitnnError, match="uint8"):
        chip.predict(x.astype(float), engine="quantised")
    with pytest.raises(CircuitnnError, match="shape"):
        chip.predict(x[:, :27], engine="quantised")
    with pytest.raises(CircuitnnError, match="unknown engine"):
        chip.predict(x, engine="magic")


def test_write_verify_statistics():
    model = array_device("ohmic").programming_model()  # the TaOx card mapped onto 6-24 uS
    target = np.full((40, 50), 15e-6)
    res = write_verify(target, model, np.random.default_rng(1),
                       ProgramConfig(tolerance=0.5e-6, max_pulses=400, stuck_low=0.025,
                                     stuck_high=0.025))
    ok = res.converged & ~res.stuck
    assert np.all(np.abs(res.error[ok]) < 0.5e-6 + 5 * model.sigma_level)
    assert 0.02 < res.stuck.mean() < 0.09
    assert 40 < res.pulses[ok].mean() < 200  # about pmax * 9/18 pulses from g_min
    assert res.summary()["stuck_cells"] == int(res.stuck.sum())


def test_nodal_column_read_matches_ohmic_crossbar():
    g = np.random.default_rng(0).uniform(6e-6, 24e-6, (6, 4))
    circuit = CircuitRead("nodal", array_device("ohmic"),
                          {"cell": "passive", "r_row": 0.0, "r_col": 0.0})
    block = Placement("L", 0, 0, slice(0, 6), slice(0, 4), slice(0, 6), slice(0, 2))
    v = np.random.default_rng(1).integers(0, 2, (5, 6)) * 0.2
    assert np.allclose(circuit.block_read(g, block)(v, None), v @ g, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("args, message", [
    (["--engine", "bogus"], "Invalid value"),
    (["--yield", "1.5"], "yield"),
    (["--pulse-card", "/nonexistent/card.json"], "not found"),
    (["--epochs", "0"], "epochs"),
    (["--tile-options", "[1]"], "JSON object"),
])
def test_bad_options_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(QUICK + ["--out", str(tmp_path / "o")] + args)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_chip_and_sweep_errors(tmp_path, capsys):
    with pytest.raises(CircuitnnError, match="no programmed chip"):
        Chip.load(tmp_path)
    with pytest.raises(SystemExit):
        main(["mcnn", "sweep", "--run-dir", str(tmp_path)])
    assert "report.json missing" in capsys.readouterr().err


@pytest.mark.ngspice
def test_sweep_quantised_axes(run_dir):
    from circuitnn.mcnn.sweep import run_sweep

    res = run_sweep(run_dir, run_dir / "sw", engine="quantised", n_images=40,
                    axes=["adc", "wire", "variation"],
                    values={"adc": [2, 8], "wire": [1.0], "variation": [1.0]})
    adc = res["axes"]["adc"]
    assert adc[1]["accuracy"] > adc[0]["accuracy"]
    point = res["axes"]["variation"][0]  # re-programmed: the programming error beside it
    assert point["accuracy"] > 0.5 and 0 < point["programming_error_rms_uS"] < 5
    assert res["axes"]["wire"][0]["accuracy"] is None  # needs a circuit engine
    assert (run_dir / "sw" / "accuracy_sweep.png").is_file()


@pytest.mark.ngspice
def test_surrogate_engine_reads_whole_pe_and_counts_energy(run_dir):
    from circuitnn.surrogate import read

    chip = Chip.load(run_dir)
    eng = build_engine(chip.state(1), "surrogate", group=0)
    rng = np.random.default_rng(3)
    # the fast bit-serial path equals read(spec, V, engine="surrogate") of the whole 128 x 16 PE
    for p in (eng.mapping.of("C1", 0)[0], eng.mapping.of("FC", 0)[2]):
        k = p.rows.stop - p.rows.start
        v = rng.integers(0, 2, (6, k)) * eng.v_read
        g_pe = eng.tile_conductances(p.tile)
        full = np.zeros((6, g_pe.shape[0]))
        full[:, p.rows] = v
        want = read(eng.circuit.spec(g_pe), full, engine="surrogate")[:, p.cols]
        # two computational paths (row-subset fast path, whole-PE read): equal to rounding
        got = eng.circuit.block_read(g_pe, p)(v, None)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    # energy through the surrogate (full-PE reads) vs the ideal crossbar: same cycles; the
    # circuit's wire, transistor and device nonlinearity lower the array current somewhat
    x = load_dataset(n_test=1000).x_test[:2]
    totals = {}
    for name in ("surrogate", "quantised"):
        counter = EnergyCounter()
        e = build_engine(chip.state(1), name, group=0, counter=counter)
        graph.predict(chip.net, dict(chip.params, b_FC=chip.bias["single"]), x, e)
        totals[name] = {k: sum(t[k] for t in counter.layers.values())
                        for k in ("cycles", "conversions", "array")}
    s, q = totals["surrogate"], totals["quantised"]
    assert s["cycles"] == q["cycles"] > 0 and s["conversions"] == q["conversions"]
    assert 0.7 < s["array"] / q["array"] < 1.0


@pytest.mark.ngspice
@pytest.mark.parametrize("engine", ["surrogate", "quantised"])
def test_fast_row_block_product_matches_block_by_block_reads(run_dir, engine):
    """The fast path (one float32 product per row block, all-zero slots not read, ADC in
    codes) against the block-by-block column reads the energy counter uses."""
    chip = Chip.load(run_dir)
    state = chip.state(1)
    x = graph.preprocess(chip.net, load_dataset(n_test=1000).x_test[:3])
    p = dict(chip.params, b_FC=chip.bias["single"])
    for adc in (None, "chip"):
        fast = build_engine(state, engine, group=0, adc_bits=adc)
        slow = build_engine(state, engine, group=0, adc_bits=adc,
                            counter=EnergyCounter(), circuit=fast.circuit)
        a, b = graph.forward(chip.net, p, x, fast), graph.forward(chip.net, p, x, slow)
        assert np.array_equal(a.argmax(1), b.argmax(1))
        if adc is None:  # float32 products in another order: rounding only
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
        else:  # a current within rounding of an ADC threshold may take the other code
            assert np.abs(a - b).max() < 0.05 * np.abs(b).max()


@pytest.mark.ngspice
def test_read_noise_in_the_fast_and_the_column_reads(run_dir):
    """Read noise (`ArrayDevice.read_noise`) in both block reads (the compiled one and the
    column reads the energy counter uses): with every row at code 255 and no ADC, an output
    scatters by sqrt(sum_k 4^k (V+ + V-)) / g_unit (V: its columns' summed cell variances)
    around the noise-free value."""
    state = Chip.load(run_dir).state(1)
    noisy = dataclasses.replace(
        state, device=dataclasses.replace(state.device, read_noise_rel=0.05))
    clean = build_engine(state, "quantised", group=0, adc_bits=None)
    (r0, r1), blocks = next(iter(clean._row_blocks("C1", 0).items()))
    codes = np.full((4000, clean.mapping.shapes["C1"][0]), 255, dtype=np.uint8)
    y0 = next(clean.block_outputs("C1", codes[:1], 0))[3][0]
    sig_abs, sig_rel = noisy.device.read_noise
    g = np.hstack([state.conductances[p.tile, p.rows, p.cols] for p in blocks])
    v = (sig_abs ** 2 + (sig_rel * g) ** 2).sum(axis=0)
    want = np.sqrt((4 ** 8 - 1) / 3 * (v[0::2] + v[1::2])) / state.device.window.unit
    for counter in (None, EnergyCounter()):
        eng = build_engine(noisy, "quantised", group=0, adc_bits=None, counter=counter)
        y = next(eng.block_outputs("C1", codes, 0))[3]
        np.testing.assert_allclose(y.std(axis=0), want, rtol=0.1)
        assert np.all(np.abs(y.mean(axis=0) - y0) < 5 * want / np.sqrt(len(y)))


@pytest.mark.ngspice
def test_ngspice_crosscheck(run_dir, capsys):
    capsys.readouterr()
    main(QUICK[:-1] + ["2", "--out", str(run_dir)])
    assert "stages computed: crosscheck, report" in capsys.readouterr().out
    cc = json.loads((run_dir / "report.json").read_text())["crosscheck_ngspice"]
    assert cc["status"] == "done" and cc["images"] == 2 and cc["class_decisions_agree"]
    assert cc["column_currents"]["max_rel_deviation"] < 0.01  # surrogate vs ngspice reads
    assert cc["max_rel_deviation"] < 0.2
    assert {k: v["patches"] for k, v in cc["conv_sample"].items()} == {"C1": 4, "C3": 4}
    assert "ngspice cross-check" in (run_dir / "report.md").read_text()

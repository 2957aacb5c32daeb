"""The operating-point search on tiny settings: every candidate reported (unreachable ones with
their reason), results per chip written and resumed, the chosen point run through the chain;
bad search options refused in one line before any work."""

import json
import shutil

import pytest
from distributed import Client

from circuitnn.cli import main
from circuitnn.devices import ModelCard
from circuitnn.devices.choice import OperatingChoice, carried_choice
from circuitnn.network.device import BUILTIN_PATH
from circuitnn.search.operating import run_searched
from circuitnn.training.pipeline import RunConfig, network_report, run_pipeline


def test_search_reports_every_candidate_resumes_and_runs_the_chosen_point(tmp_path):
    card = tmp_path / "device.json"
    shutil.copyfile(BUILTIN_PATH, card)
    cfg = RunConfig(network="cnn5", iv_card=str(card), engine="quantised", train_images=200,
                    test_images=40, epochs=1, hybrid_batches=2, hybrid_batch_size=20,
                    n_energy=2, calibrate_columns=False, max_pulses=60)
    grid = [OperatingChoice(0.2, (6e-6, 24e-6), 1.4, None, tol, "fixed", "search")
            for tol in (0.15, 0.3)]
    grid.append(OperatingChoice(0.2, (6e-6, 5e-3), source="search"))  # beyond the device
    out = tmp_path / "run"
    client = Client(processes=False, n_workers=1, threads_per_worker=1,
                    dashboard_address=":0")  # in-process: no worker start-up in a unit test
    chosen = run_searched(cfg, out, seeds=2, scheduler=client, progress=False, grid=grid)
    rec = chosen.choice
    assert rec["source"] == "search" and rec["why"]
    cands = rec["candidates"]
    assert len(cands) == 3 and "outside what the device" in cands[2]["reason"]
    for c in cands[:2]:
        assert c["n"] == 2 and 0 < c["transfer_accuracy_mean"] <= 1
        assert c["transfer_accuracy_sd"] >= 0 and c["pulses_mean"] > 0
    # the looser tolerance takes fewer pulses
    assert cands[1]["pulses_mean"] < cands[0]["pulses_mean"]
    assert rec["tolerance_rel"] in (0.15, 0.3)
    assert (out / "operating_point.png").stat().st_size > 10_000
    carried = ModelCard.load(out / "search" / "operating-device.json")
    assert carried_choice(carried).settings() == OperatingChoice.from_json(rec).settings()
    files = sorted((out / "search" / "results").glob("*.npz"))
    assert len(files) == 4
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run_searched(cfg, out, seeds=2, scheduler=client, progress=False, grid=grid)
    client.close()
    assert again.choice == rec and [f.stat().st_mtime_ns for f in files] == stamps
    ctx = run_pipeline(chosen, out, progress=False)
    assert "exsitu" not in ctx.log.computed and "data" not in ctx.log.computed
    op = network_report(ctx)["device"]["operating_point"]
    assert op["source"] == "search" and op["tolerance_rel"] == rec["tolerance_rel"]
    assert len(op["candidates"]) == 3


@pytest.mark.parametrize("args, message", [
    (["--search-seeds", "0"], "--search-seeds must be"),
    (["--workers", "0"], "--workers must be"),
    (["--operating-point", "search", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach"),
    (["--gate-set", "0.3"], "transistor off"),
    (["--g-min", "30", "--g-max", "10"], "g_min < g_max"),
    (["--v-read", "0.9"], "above the safe limit"),
    (["--g-min", "6", "--g-max", "5000"], "outside what the device"),
])
def test_bad_operating_point_options_one_line_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        main(["network", "run", "--network", "cnn5", "--out", str(out), *args])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("circuitnn: error:") and message in err and "\n" not in err
    assert not (out / "stages").exists()


def test_report_markdown_says_which_point_and_why(tmp_path):
    from circuitnn.mcnn.report import operating_lines

    rec = {"source": "search", "v_read": 0.03, "g_window": [1e-5, 1e-4], "gate_set": 0.8,
           "amplitude_reset": None, "tolerance_rel": 0.2, "scheme": "incremental",
           "why": "highest mean accuracy", "candidates": [
               {"v_read": 0.03, "g_window": [1e-5, 1e-4], "gate_set": 0.8, "scheme":
                "incremental", "transfer_accuracy_mean": 0.95, "transfer_accuracy_sd": 0.01,
                "n": 3, "pulses_mean": 9.5},
               {"v_read": 0.03, "g_window": [1e-6, 1e-3], "gate_set": 1.4, "scheme": "fixed",
                "reason": "outside what the device reaches"}]}
    text = "\n".join(operating_lines(rec))
    assert "searched for accuracy" in text and "Chosen: highest mean accuracy" in text
    assert "95.00% +- 1.00% (n=3)" in text and "outside what the device reaches" in text
    assert json.dumps(rec)  # plain JSON

"""Knowm M1-M3 in the chain: the devices' measured spread against the noise-free device.

1. Fits VTEAM to the Knowm W-SDC devices M1, M2 and M3 (5 kOhm, 0.8 V, 10 and 100 Hz; one
   parameter set per device) with `circuitnn fit`, which writes one card per device, each with
   the device-to-device record of the three.
2. Runs the reference chain (`circuitnn mcnn run`: cnn5 on eight 128 x 16 PEs) on M1's card:
   first with the operating point searched (the default for a card that carries none), then on
   `--chips` chips (`--chip-seed` 0..K-1) with the measured spread (each cell's device drawn
   from it, the preset's stuck cells, the pulse law's read noise) and on as many chips of the
   noise-free device (`--device-spread 0 --stuck-low 0 --stuck-high 0 --read-noise 0`), all
   at the searched operating point, the network trained once per condition.
Prints and writes OUT/spread.json: accuracy after transfer and after hybrid training, mean and
standard deviation over the chips, and the spread the chain used.

Usage: .venv/bin/python benchmarks/bench_spread.py --out runs/bench_spread [--chips 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from circuitnn.datasets import knowm_manifest
from circuitnn.io import write_json

NOISE_FREE = ["--device-spread", "0", "--stuck-low", "0", "--stuck-high", "0",
              "--read-noise", "0"]


def circuitnn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "circuitnn.cli", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="Output folder (cards, runs, spread.json).")
    ap.add_argument("--chips", type=int, default=5, help="Chips per condition.")
    ap.add_argument("--quick", action="store_true", help="mcnn run --quick (smoke test).")
    a = ap.parse_args()
    if a.chips < 2:
        ap.error("--chips must be >= 2 (a standard deviation needs two chips)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "knowm-m1-m3.toml"
    manifest.write_text("".join(knowm_manifest(d, frequencies=(10, 100))
                                for d in ("M1", "M2", "M3")))
    t0 = time.perf_counter()
    if not (out / "cards" / "m1.json").is_file():
        circuitnn("fit", str(manifest), "--model", "vteam", "--out",
                  str(out / "cards" / "{device}.json"), "--figure",
                  str(out / "cards" / "fit_{device}.png"))
    t_fit = time.perf_counter() - t0
    quick = ["--quick"] if a.quick else []
    base = out / "searched"
    circuitnn("mcnn", "run", "--out", str(base), "--iv-card", str(out / "cards" / "m1.json"),
              "--n-check", "0", *quick)
    card = base / "search" / "operating-m1.json"
    runs: dict[str, list[dict]] = {"measured": [], "noise-free": []}
    for name, extra in (("measured", []), ("noise-free", NOISE_FREE)):
        for k in range(a.chips):
            folder = out / name
            circuitnn("mcnn", "run", "--out", str(folder), "--iv-card", str(card),
                      "--n-check", "0", "--chip-seed", str(k), *extra, *quick)
            rep = json.loads((folder / "report.json").read_text())
            runs[name].append({"chip_seed": k, "transfer": rep["transfer_test_accuracy"],
                               "hybrid": rep["hybrid_test_accuracy"],
                               "pulses_mean": rep["transfer"]["all_used_cells"]["pulses_mean"],
                               "not_converged":
                                   rep["transfer"]["all_used_cells"]["not_converged"],
                               "error_std_uS": rep["transfer"]["all_used_cells"]["error_std_uS"],
                               "variation": rep["device"]["variation"]})
    summary = {}
    for name, rows in runs.items():
        summary[name] = {f"{k}_{s}": float(f(np.array([r[k] for r in rows])))
                         for k in ("transfer", "hybrid", "pulses_mean", "error_std_uS")
                         for s, f in (("mean", np.mean), ("sd", lambda x: np.std(x, ddof=1)))}
        print(f"{name:10s}: after transfer {100 * summary[name]['transfer_mean']:.2f} +- "
              f"{100 * summary[name]['transfer_sd']:.2f}%, after hybrid "
              f"{100 * summary[name]['hybrid_mean']:.2f} +- "
              f"{100 * summary[name]['hybrid_sd']:.2f}% over {len(rows)} chips; pulses per "
              f"cell {summary[name]['pulses_mean_mean']:.1f}; programming error sd "
              f"{summary[name]['error_std_uS_mean']:.2f} uS")
    write_json(out / "spread.json", {"summary": summary, "runs": runs,
                                     "fit_seconds": t_fit,
                                     "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()

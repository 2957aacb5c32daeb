"""Benchmark: fit the pulse-update model to both real pulse datasets; print time and quality.

Run from the repository root: `.venv/bin/python benchmarks/bench_pulse_fit.py [--write]`.
With --write it also writes runs/fit-pulse/<name>.json and pulse_fit_<dataset>.png (copy them
into device_models/ and figures/ to ship them).
"""

from __future__ import annotations

import sys
import time

from circuitnn.fitting.pulse import PULSE_DATASETS, fit_pulse_cli_main, summary_lines


def main(argv: list[str]) -> None:
    write = "--write" in argv
    for key in PULSE_DATASETS:
        t0 = time.perf_counter()
        fit = fit_pulse_cli_main(key, card_out=None if write else "",
                                 figure=None if write else "", n_sim=20, seed=0)
        total = time.perf_counter() - t0
        print("\n".join(summary_lines(fit)))
        print(f"  total incl. {fit.metrics['p']['n_simulations']} noisy simulations per "
              f"direction: {total:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Benchmark of the first read of a new TileSpec against a read of a reused one (issue 29).

A read refuses inputs that would switch cells; the tile's own threshold (`disturb_voltage`)
needs every cell's device state (a bisection per distinct conductance) and the switching
thresholds at five of them. It is now computed only for inputs that reach the card's switching
threshold (`TileSpec.card_threshold`, from the card's operating record), so a first read of a new
spec at v_read costs what a read of a reused one costs.

Cases, 128 x 16 1T1R tiles of the built-in Stanford-PKU card, one input vector of 0 / v_read:
"ideal" (new specs: new conductances in the 6-24 uS window), "surrogate" (new spec objects with
the conductances of a programmed tile: its surrogate matrices come from the engine's cache, as in
loops that rebuild specs), each against the same read of one reused spec; and the check a first
read used to run (`disturb_voltage` of a new spec). Times are medians over `--n` specs (each spec
read once) and `--n` reads of the reused spec, in one run.

Prints a markdown table and writes benchmarks/results/first_read.json.
Run: .venv/bin/python benchmarks/bench_first_read.py [--n N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from circuitnn.devices import builtin_card  # noqa: E402
from circuitnn.io import write_json  # noqa: E402
from circuitnn.surrogate.read import read  # noqa: E402
from circuitnn.tile import TileSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "first_read.json"
SHAPE, WINDOW = (128, 16), (6e-6, 24e-6)


def median_ms(fn, items) -> float:
    """Median of fn(item) over items, in ms."""
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="specs (and reused reads) per case")
    n = ap.parse_args().n
    card = builtin_card()
    rng = np.random.default_rng(0)
    g = rng.uniform(*WINDOW, SHAPE)
    reused = TileSpec(g, device=card)
    v = (rng.random((1, SHAPE[0])) < 0.5) * reused.v_read
    rows = []
    for engine, make in (("ideal", lambda: TileSpec(rng.uniform(*WINDOW, SHAPE), device=card)),
                         ("surrogate", lambda: TileSpec(g, device=card))):
        read(reused, v, engine=engine)  # warm: imports, the surrogate tile programmed once
        new = [make() for _ in range(n)]  # built beforehand: only the reads are timed
        first = median_ms(lambda s, e=engine: read(s, v, engine=e), new)
        again = median_ms(lambda _, e=engine: read(reused, v, engine=e), range(n))
        rows.append({"engine": engine, "first_read_ms": first, "reused_read_ms": again,
                     "extra_ms": first - again})
    fresh = [TileSpec(rng.uniform(*WINDOW, SHAPE), device=card) for _ in range(max(20, n // 10))]
    check = median_ms(lambda s: s.disturb_voltage, fresh)
    print(f"\n128 x 16 1T1R, built-in card, 1 vector at 0 / {reused.v_read:g} V; medians of {n}\n")
    print("| engine | first read of a new spec | read of a reused spec | first - reused |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['first_read_ms']:.3f} ms | {r['reused_read_ms']:.3f} ms | "
              f"{r['extra_ms']:+.3f} ms |")
    print(f"\nthe check every first read ran before (disturb_voltage of a new spec): "
          f"{check:.2f} ms")
    write_json(OUT, {"machine": {"cpu": platform.processor() or platform.machine(),
                                 "cores": os.cpu_count(), "load": os.getloadavg()},
                     "n": n, "rows": rows, "disturb_voltage_ms": check})


if __name__ == "__main__":
    main()

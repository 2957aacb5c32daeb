"""What one I-V fit evaluation costs: the fit's three views of the sweeps, 1 to 224 candidates.

A fit's time is its number of evaluations times the cost of one. For a card on its own measured
sweeps (default: the shipped Knowm M1 MSS card on the four Knowm M1 sweeps) this prints the wall
time of one evaluation (`_Problem.predict`, as the fit makes it) in each of the fit's views:
the search (every second sample, one warm-up period, rtol 5e-2), the coarse refinement (every
second sample, one warm-up period, 1e-3) and the full refinement (every sample, two warm-up
periods, 1e-4), for 1, 29, 116 and 224 candidates (the card's search coordinates scattered by
1e-3, relative; 224 is a Yakopcic search generation of both orientations). Best of 3.

First, the time of the first simulation in a process with an empty compiled-integrator cache
(numba compiling the model's integrator) and with a filled one (loading it).

Run: .venv/bin/python benchmarks/bench_fit_cost.py [--card PATH] [--dataset knowm-m1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_fit_iv import MANIFESTS  # this folder's data sets

from circuitnn.devices import DEVICE_MODELS_DIR
from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
from circuitnn.devices.models import get_model
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import load_manifest
from circuitnn.fitting.iv import _Problem

#: (name, stride, warm-up periods, rtol) of the fit's views
VIEWS = (("search", 2, 1, 5e-2), ("coarse", 2, 1, 1e-3), ("full", 1, 2, 1e-4))
CANDIDATES = (1, 29, 116, 224)
#: a first simulation of the card in a fresh process (the compiled-integrator cache in argv[2])
FIRST = """import sys, time
t0 = time.perf_counter()
from circuitnn.devices.card import ModelCard
from circuitnn.devices.device import Device
dev = Device.from_card(ModelCard.load(sys.argv[1]))
import numpy as np
t = np.linspace(0.0, 1.0, 200)
dev.simulate(t, np.sin(2 * np.pi * t))
print(time.perf_counter() - t0)
"""


def first_simulation(card: str, cache: str) -> float:
    """Seconds to import circuitnn and simulate the card once, in a new process."""
    env = dict(os.environ, CIRCUITNN_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", FIRST, card], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default=str(DEVICE_MODELS_DIR / "knowm-m1-mss.json"),
                    help="a fitted I-V card (JSON), e.g. one written by bench_fit_iv.py")
    ap.add_argument("--dataset", default="knowm-m1", choices=sorted(MANIFESTS),
                    help="the measured sweeps to simulate it on (bench_fit_iv.py's data sets)")
    args = ap.parse_args()
    try:
        card = ModelCard.load(args.card)
        dev = Device.from_card(card)
        with tempfile.TemporaryDirectory(prefix="bench_fit_cost_") as tmp:
            manifest = Path(tmp) / "sweeps.toml"
            manifest.write_text(MANIFESTS[args.dataset]())
            sweeps = load_manifest(manifest)
    except CircuitnnError as exc:
        raise SystemExit(f"bench_fit_cost: {exc}") from None
    samples = sum(s.n for s in sweeps) / len(sweeps)
    print(f"card {args.card} ({card.model}) on {args.dataset}: {len(sweeps)} sweeps of "
          f"{samples:.0f} samples\n")
    with tempfile.TemporaryDirectory(prefix="bench_fit_cost_cache_") as cache:
        cold = first_simulation(args.card, cache)
        warm = first_simulation(args.card, cache)
    print(f"first simulation in a new process: {cold:.2f} s with an empty compiled-integrator "
          f"cache, {warm:.2f} s with it filled\n")
    values = {k: float(v) for k, v in dev.params.items()}
    rng = np.random.default_rng(0)
    print("| view | " + " | ".join(f"{n} candidates, s" for n in CANDIDATES) + " |")
    print("|---|" + "---|" * len(CANDIDATES))
    for name, stride, warmup, rtol in VIEWS:
        prob = _Problem(get_model(card.model), sweeps, warmup, stride)
        x = prob.to_vector(values)
        cells = []
        for n in CANDIDATES:
            xs = x[None] * (1 + 1e-3 * rng.standard_normal((n, x.size)) * (n > 1))
            xs = np.clip(xs, prob.lo, prob.hi)
            prob.predict(xs, dev.polarity, rtol)  # warm
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                prob.predict(xs, dev.polarity, rtol)
                times.append(time.perf_counter() - t0)
            cells.append(f"{min(times):.3f}")
        print(f"| {name} (every {stride}, {warmup} warm-up, rtol {rtol:g}) | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

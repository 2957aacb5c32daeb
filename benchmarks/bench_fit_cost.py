"""Where an I-V fit's evaluations spend their time: integrator iterations and their cost.

A fit's time is its number of vectorised evaluations times the cost of one, and one costs as
many integrator iterations as its slowest element needs, each a fixed number of numpy calls.
For a card on its own measured sweeps (default: the shipped Knowm M1 MSS card on the four
Knowm M1 sweeps, two warm-up periods as in the fit's full stage) this prints:

1. iterations per sample interval at the fit's three integration tolerances (search 5e-2,
   coarse 1e-3, full 1e-4) when every 1st, 2nd, 4th or 8th sample is kept: steps never cross a
   sample, so the samples set a floor of one step each, and the iteration counts on the thinned
   drives bound what steps across samples could save;
2. one evaluation's wall time and milliseconds per iteration for 1, 29 and 116 candidates (the
   card's search coordinates scattered by 1e-3, relative): what more candidates cost.

Iterations are counted as the integrator's end-point evaluations (one rate Jacobian each); an
evaluation simulates the sweeps of one length side by side, so it costs as many as the element
(candidate and sweep) that needs the most.

Run: .venv/bin/python benchmarks/bench_fit_cost.py [--card PATH] [--dataset knowm-m1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
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

TOLERANCES = (5e-2, 1e-3, 1e-4)
STRIDES = (1, 2, 4, 8)
CANDIDATES = (1, 29, 116)
WARMUP = 2


def count_iterations(run: Callable[..., object], *args: object) -> tuple[int, float]:
    """(integrator iterations, wall seconds) of `run(*args)`: its rate-Jacobian evaluations."""
    calls = [0]
    evaluate = Device.evaluate

    def counted(self: Device, which: str, v, s) -> tuple:
        calls[0] += which == "rate_jac"
        return evaluate(self, which, v, s)

    Device.evaluate = counted
    try:
        t0 = time.perf_counter()
        run(*args)
        return calls[0], time.perf_counter() - t0
    finally:
        Device.evaluate = evaluate


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
    values = {k: float(v) for k, v in dev.params.items()}
    # one evaluation as the fit makes it: `_Problem.predict` (every sweep from mid-range, warm-up
    # and compared period, the sweeps of one length side by side)
    print(f"card {args.card} ({card.model}) on {args.dataset}: {len(sweeps)} sweeps of "
          f"{samples:.0f} samples, {WARMUP} warm-up periods\n")
    print("| rtol | samples kept | sample intervals per sweep | iterations | per interval |"
          " s |")
    print("|---|---|---|---|---|---|")
    for rtol in TOLERANCES:
        for stride in STRIDES:
            prob = _Problem(get_model(card.model), sweeps, WARMUP, stride)
            x = prob.to_vector(values)[None]
            intervals = (WARMUP + 1) * samples / stride
            its, sec = count_iterations(prob.predict, x, dev.polarity, rtol)
            print(f"| {rtol:g} | every {stride} | {intervals:.0f} | {its} |"
                  f" {its / intervals:.2f} | {sec:.2f} |")
    print("\n| candidates | elements | iterations | s | ms per iteration |")
    print("|---|---|---|---|---|")
    prob = _Problem(get_model(card.model), sweeps, WARMUP)
    x = prob.to_vector(values)
    rng = np.random.default_rng(0)
    for n in CANDIDATES:
        xs = x[None] * (1 + 1e-3 * rng.standard_normal((n, x.size)) * (n > 1))
        args = (np.clip(xs, prob.lo, prob.hi), dev.polarity, 1e-4)
        prob.predict(*args)  # caches warm
        its, sec = min((count_iterations(prob.predict, *args) for _ in range(3)),
                       key=lambda r: r[1])
        print(f"| {n} | {n * len(sweeps)} | {its} | {sec:.2f} | {1e3 * sec / its:.2f} |")


if __name__ == "__main__":
    main()

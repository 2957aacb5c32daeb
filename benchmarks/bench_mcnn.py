"""Benchmark: the `mcnn run` chain on the default data (stage times), Chip.predict time per
1,000 test images for each inference engine (after a 10-image warm-up that programs the surrogate
tiles), the surrogate / ideal time ratio, and Chip.load(DIR).predict of 5,000 images (default
engine, cold: tile programming included).

    .venv/bin/python benchmarks/bench_mcnn.py [--engine surrogate|quantised] [--out DIR]

Writes <results>/mcnn.json. Engines that are not available in this build are listed with the
reason instead of a time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_json
from circuitnn.mcnn import Chip
from circuitnn.mcnn.run import McnnConfig, run_chain
from circuitnn.network.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    """Run the chain (resuming), time inference per engine, write and return the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="surrogate")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mcnn_run"))
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--n-check", type=int, default=20)
    args = ap.parse_args()
    t0 = time.perf_counter()
    log = run_chain(McnnConfig(engine=args.engine, n_check=args.n_check), args.out).log
    wall = time.perf_counter() - t0
    rep = log.results["report"].report
    d = load_dataset(n_test=1000)
    x5k = np.concatenate([d.x_train, d.x_test])[:5000]
    t = time.perf_counter()
    Chip.load(args.out).predict(x5k)
    predict_5000 = time.perf_counter() - t
    chip = Chip.load(args.out)
    x = d.x_test[:args.n_images]
    infer = {}
    for engine in ("ideal", "quantised", "surrogate"):
        try:
            chip.predict(x[:10], engine=engine)
            t = time.perf_counter()
            chip.predict(x, engine=engine)
            infer[engine] = (time.perf_counter() - t) * 1000 / len(x)
        except CircuitnnError as exc:
            infer[engine] = f"unavailable: {exc}"
    infer["ngspice"] = "not timed here (see report crosscheck_ngspice.seconds)"
    ratio = (infer["surrogate"] / infer["ideal"] if isinstance(infer["surrogate"], float)
             else None)
    res = {"engine": args.engine, "chain_wall_s": wall, "computed_stages": log.computed,
           "stage_seconds": log.timings, "inference_s_per_1000_images": infer,
           "surrogate_over_ideal": ratio, "predict_5000_images_s": predict_5000,
           "accuracy": {k: rep[k] for k in ("software_test_accuracy", "quantized_test_accuracy",
                                            "transfer_test_accuracy", "hybrid_test_accuracy")},
           "three_group": rep["three_group"], "gops_per_w": rep["energy"]["gops_per_w"]}
    write_json(ROOT / "benchmarks" / "results" / "mcnn.json", res)
    for k, v in res.items():
        print(f"{k}: {v}")
    return res


if __name__ == "__main__":
    main()

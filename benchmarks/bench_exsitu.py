"""Benchmark: ex-situ training of the reference CNN on the default MNIST split, then accuracy of
the software float model, the 15-level quantised model, and the quantised model run bit-serially
through the mapped PEs with an 8-bit ADC (1 and 3 convolver groups). Single-threaded BLAS.

    .venv/bin/python benchmarks/bench_exsitu.py [--epochs 30] [--out benchmarks/results]

Writes <out>/exsitu.json, <out>/exsitu_params.npz and figures/pe_mapping.png.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from circuitnn.io import write_json  # noqa: E402
from circuitnn.network import cnn, engines, mapping, quantise  # noqa: E402
from circuitnn.network.data import load_dataset  # noqa: E402
from circuitnn.training import exsitu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    """Run the benchmark and return the results written to exsitu.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--figures", default=str(ROOT / "figures"))
    args = ap.parse_args()

    data = load_dataset()
    cfg = exsitu.TrainConfig(epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    res = exsitu.train(data.x_train, data.y_train, cfg, data.x_test, data.y_test)
    train_s = time.perf_counter() - t0
    params = res.params
    xt, yt = data.x_test, data.y_test

    q, scales = quantise.quantise_params(params)
    acc = {"software_float": cnn.accuracy(params, xt, yt),
           "quantised_weights_15_levels": cnn.accuracy(quantise.dequantise(params, q, scales),
                                                       xt, yt),
           "quantised_max_rule": cnn.accuracy(quantise.dequantise(
               params, *quantise.quantise_params(params, "max")), xt, yt)}
    calib = data.x_train[:500]
    timings = {"train_s": round(train_s, 2)}
    for name, kw in (("quantised_8bit_act_no_adc", dict(adc_bits=None)),
                     ("quantised_bit_serial_adc8", dict(adc_bits=8)),
                     ("quantised_bit_serial_adc8_3groups", dict(adc_bits=8, n_groups=3))):
        t = time.perf_counter()
        eng = engines.build_engine(params, calib, **kw)
        acc[name] = cnn.accuracy(params, xt, yt, eng)
        timings[f"{name}_s"] = round(time.perf_counter() - t, 2)

    out = Path(args.out)
    exsitu.save_params(out / "exsitu_params.npz", params)
    mp = mapping.map_weights(q, n_groups=3)
    mapping.plot_mapping(mp, Path(args.figures) / "pe_mapping.png")
    result = {"data": data.info, "config": vars(cfg), "accuracy": acc, "timings": timings,
              "history": res.history, "weight_scales": scales,
              "mapping": mapping.describe_mapping(mp).splitlines()}
    write_json(out / "exsitu.json", result)
    for k, v in acc.items():
        print(f"{k:40s} {v:.4f}")
    print(f"training {train_s:.1f} s for {args.epochs} epochs on {len(data.y_train)} images")
    return result


if __name__ == "__main__":
    main()

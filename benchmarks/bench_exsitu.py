"""Benchmark: ex-situ training of the reference CNN (cnn5) on the default MNIST split, then
accuracy of the software float model, the 15-level quantised model, and the quantised model run
bit-serially through the reference's PEs with an 8-bit ADC (1 and 3 convolver groups).
Single-threaded BLAS.

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
from circuitnn.network import engines, graph, mapping, presets, quantise  # noqa: E402
from circuitnn.network.data import load_dataset  # noqa: E402
from circuitnn.network.device import array_device  # noqa: E402
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
    net = presets.cnn5()
    cfg = exsitu.TrainConfig(epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    res = exsitu.train(net, data.x_train, data.y_train, cfg, data.x_test, data.y_test)
    train_s = time.perf_counter() - t0
    params = res.params
    xt, yt = data.x_test, data.y_test

    q, scales = quantise.quantise_params(net, params)
    acc = {"software_float": graph.accuracy(net, params, xt, yt),
           "quantised_weights_15_levels": graph.accuracy(
               net, quantise.dequantise(params, q, scales), xt, yt),
           "quantised_max_rule": graph.accuracy(net, quantise.dequantise(
               params, *quantise.quantise_params(net, params, "max")), xt, yt)}
    act = engines.calibrate_activation_scales(net, params, data.x_train[:500])
    timings = {"train_s": round(train_s, 2)}
    for name, bits, groups in (("quantised_8bit_act_no_adc", None, 1),
                               ("quantised_bit_serial_adc8", 8, 1),
                               ("quantised_bit_serial_adc8_3groups", 8, 3)):
        t = time.perf_counter()
        m = mapping.reference_map(groups)
        chip = engines.ChipState(net, m, mapping.target_conductances(m, q), scales, act,
                                 array_device(), adc_bits=bits)
        acc[name] = graph.accuracy(net, params, xt, yt, engines.build_engine(chip, "quantised"))
        timings[f"{name}_s"] = round(time.perf_counter() - t, 2)

    out = Path(args.out)
    exsitu.save_params(out / "exsitu_params.npz", net, params)
    mp = mapping.reference_map(3)
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

"""Benchmark: inference time of a mapped preset network per engine, in one run, and the
surrogate / ideal ratio (issue 10's throughput target: ResNet-20 surrogate <= 25x ideal).

    .venv/bin/python benchmarks/bench_network.py [--network resnet20] [--dataset mnist]
        [--n-images 200] [--weights NPZ] [--calibrate-columns]

The network is quantised, mapped (`auto_map`, 128 x 16 tiles) and its target conductances are
read (no programming error: the engines' own cost is timed). Each engine first reads 4 images
(warm-up: the surrogate programs every tile once), then the same `--n-images` test images are
timed. With --calibrate-columns the bit-serial engines are also timed and scored with the
per-column digital gains (`calibrate_columns`, 8 training images; the time to calibrate is
recorded). Writes benchmarks/results/network_<network>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from circuitnn.io import write_json
from circuitnn.network import graph, quantise
from circuitnn.network.data import load_dataset
from circuitnn.network.device import array_device
from circuitnn.network.engines import (
    ChipState,
    build_engine,
    calibrate_activation_scales,
    calibrate_columns,
    layer_inputs,
)
from circuitnn.network.mapping import auto_map, target_conductances
from circuitnn.network.presets import preset
from circuitnn.training import exsitu
from circuitnn.training.pipeline import shipped_weights

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="resnet20")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--engines", default="ideal,quantised,surrogate")
    ap.add_argument("--calibrate-columns", action="store_true",
                    help="also time and score the bit-serial engines with column calibration")
    args = ap.parse_args()
    d = load_dataset(args.dataset)
    shape = d.x_test.shape[1:] if d.x_test.ndim == 4 else d.x_test.shape[1:] + (1,)
    net = preset(args.network, shape)
    path = args.weights or shipped_weights(args.network, args.dataset)
    params = exsitu.load_params(path, net) if path else net.init_params(0)
    net, params = graph.fold_batchnorm(net, params)
    q, scales = quantise.quantise_params(net, params)
    act = calibrate_activation_scales(net, params, d.x_train[:100])
    m = auto_map({k: net.weight_shape(k) for k in net.weight_layers})
    chip = ChipState(net, m, target_conductances(m, q), scales, act, array_device())
    x, y = d.x_test[:args.n_images], d.y_test[:args.n_images]
    res = {"network": args.network, "weights": str(path) if path else "random init",
           "images": len(y), "tiles": m.tiles_used, "macs_per_image": sum(net.macs().values()),
           "seconds": {}, "accuracy": {}}
    t = time.perf_counter()
    res["accuracy"]["software"] = graph.accuracy(net, params, x, y)
    res["seconds"]["software"] = time.perf_counter() - t
    for name in args.engines.split(","):
        eng = build_engine(chip, name)
        t = time.perf_counter()
        graph.predict(net, params, x[:4], eng)
        res["seconds"][f"{name}_warmup_4_images"] = time.perf_counter() - t
        t = time.perf_counter()
        pred = graph.predict(net, params, x, eng, batch_size=100)
        res["seconds"][name] = time.perf_counter() - t
        res["accuracy"][name] = float(np.mean(pred == y))
        print(f"{name:10s} {res['seconds'][name]:8.2f} s for {len(y)} images, accuracy "
              f"{res['accuracy'][name]:.4f}", flush=True)
        if args.calibrate_columns and name != "ideal":
            t = time.perf_counter()
            gains, _ = calibrate_columns(eng, q, layer_inputs(net, params, d.x_train[:8]))
            res["seconds"][f"{name}_calibration"] = time.perf_counter() - t
            cal = build_engine(chip.with_column_gains(gains), name, circuit=eng.circuit)
            t = time.perf_counter()
            pred = graph.predict(net, params, x, cal, batch_size=100)
            res["seconds"][f"{name}+cal"] = time.perf_counter() - t
            res["accuracy"][f"{name}+cal"] = float(np.mean(pred == y))
            print(f"{name}+cal {res['seconds'][name + '+cal']:8.2f} s, accuracy "
                  f"{res['accuracy'][name + '+cal']:.4f}", flush=True)
    s = res["seconds"]
    res["per_1000_images_s"] = {k: v * 1000 / len(y) for k, v in s.items()
                                if "warmup" not in k and "calibration" not in k}
    if "surrogate" in s and "ideal" in s:
        res["surrogate_over_ideal"] = s["surrogate"] / s["ideal"]
        res["quantised_over_ideal"] = s.get("quantised", np.nan) / s["ideal"]
        print(f"surrogate / ideal = {res['surrogate_over_ideal']:.1f}")
    write_json(ROOT / "benchmarks" / "results" / f"network_{args.network}.json", res)
    return res


if __name__ == "__main__":
    main()

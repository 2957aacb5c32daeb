"""Benchmark: the cost of chip-aware training against float training of the same epochs, in one
run (same images, batches, optimiser and backend), and the chip's accuracy before and after.

    .venv/bin/python benchmarks/bench_chip_training.py --network cnn5 [--dataset mnist]
        [--images 12800] [--epochs 1] [--engine surrogate] [--test-images 1000] [--out DIR]

Starts from the shipped float weights (`device_models/weights-<network>-mnist.npz`, batch
normalisation folded); float training is the same fine-tuning with the software product, timed
after two untimed steps (a backend's first steps allocate and pick kernels). The
default 12,800 images are 200 steps of 64: one refresh interval (`ChipModel.refresh_every`), the
rate at which a long run refreshes. Writes <out>/chip_training_<network>.json (default out: the
user cache), with the threads each side may use and the machine's load average.

--read-floor: also capture the block reads of one chip step (after its refresh) and time them
twice more, as run (the surrogate's three matrices A, P, Q) and with one matrix (the first
third of each table: the same codes at the width of a read whose bilinear term is linearised,
or of the ideal crossbar); each is given as a ratio to the float step. The chip step also runs
the float step's forward and backward, so one plus the one-matrix ratio bounds from below what
this block read can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from circuitnn.cache import cache_dir
from circuitnn.devices import DEVICE_MODELS_DIR
from circuitnn.io import write_json
from circuitnn.network import engines, graph, presets
from circuitnn.network.data import load_dataset
from circuitnn.network.device import array_device
from circuitnn.network.mapping import auto_map
from circuitnn.training import exsitu
from circuitnn.training.chipaware import ChipModel, ChipTrainConfig, train_on_chip
from circuitnn.training.torch_train import TorchTrainConfig, train_torch


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="cnn5", choices=["cnn5", "resnet20"])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "mnist5k"])
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--engine", default="surrogate", choices=["surrogate", "quantised"])
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--read-floor", action="store_true",
                    help="time one chip step's block reads with three and one matrices")
    args = ap.parse_args()

    load = [os.getloadavg()[0]]
    d = load_dataset(args.dataset, 1000, 0)
    net0 = presets.preset(args.network, (28, 28, 1))
    p0 = exsitu.load_params(DEVICE_MODELS_DIR / f"weights-{args.network}-mnist.npz", net0)
    net, params = graph.fold_batchnorm(net0, p0)
    x, y = d.x_train[:args.images], d.y_train[:args.images]
    xt, yt = d.x_test[:args.test_images], d.y_test[:args.test_images]
    small = args.network == "cnn5"
    cfg = ChipTrainConfig(epochs=args.epochs, lr=5e-4 if small else 5e-5,
                          backend="numpy" if small else "torch")
    dev = array_device()
    m = auto_map({k: net.weight_shape(k) for k in net.weight_layers})

    def chip() -> ChipModel:
        return ChipModel(net, m, dev, d.x_train, args.engine, calibrate=True)

    def chip_accuracy(p: dict) -> float:
        return graph.accuracy(net, p, xt, yt, chip().product(p))

    def float_training(xs: np.ndarray, ys: np.ndarray) -> None:
        """The same fine-tuning with the software product."""
        if small:
            exsitu.train(net, xs, ys, exsitu.TrainConfig(
                epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, lr_decay_every=1,
                weight_decay=0.0, max_shift=cfg.max_shift, seed=cfg.seed), params=params)
        else:
            train_torch(net, xs, ys, TorchTrainConfig(
                epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0,
                max_shift=cfg.max_shift, seed=cfg.seed, optimizer="adam"), params=params)

    float_training(x[:2 * cfg.batch_size], y[:2 * cfg.batch_size])  # warm-up: the backend's
    #                                          first steps (allocations, kernels) are not timed
    t0, c0 = time.perf_counter(), time.process_time()
    float_training(x, y)
    t_float, cpu_float = time.perf_counter() - t0, time.process_time() - c0
    model = chip()
    t0, c0 = time.perf_counter(), time.process_time()
    res, backend = train_on_chip(net, params, x, y, model, cfg)
    t_chip, cpu_chip = time.perf_counter() - t0, time.process_time() - c0
    load.append(os.getloadavg()[0])
    out = {"network": args.network, "dataset": args.dataset, "engine": args.engine,
           "backend": backend, "images": len(y), "epochs": args.epochs,
           "batch_size": cfg.batch_size, "steps": model.steps, "cores": os.cpu_count(),
           "threads": _threads(backend), "load_average_start_end": load,
           "float_seconds": t_float, "chip_seconds": t_chip,
           "chip_refresh_seconds": model.refresh_seconds, "refreshes": model.refreshes,
           "ratio": t_chip / t_float,
           "ratio_without_refreshes": (t_chip - model.refresh_seconds) / t_float,
           "float_cpu_seconds": cpu_float, "chip_cpu_seconds": cpu_chip,
           "cpu_ratio": cpu_chip / cpu_float,  # CPU time of all threads: less load-dependent
           "test_images": len(yt), "chip_accuracy_float_weights": chip_accuracy(params),
           "chip_accuracy_after": chip_accuracy(res.params),
           "software_accuracy_float_weights": graph.accuracy(net, params, xt, yt),
           "software_accuracy_after": graph.accuracy(net, res.params, xt, yt)}
    if args.read_floor:
        step = t_float / (args.epochs * -(-len(y) // cfg.batch_size))
        out["read_floor"] = read_floor(net, params, x, y, chip(), cfg, step)
    folder = Path(args.out) if args.out else cache_dir() / "benchmarks"
    write_json(folder / f"chip_training_{args.network}.json", out)
    for k, v in out.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return out


def read_floor(net, params: dict, x: np.ndarray, y: np.ndarray, model: ChipModel,
               cfg: ChipTrainConfig, float_step: float, repeats: int = 3) -> dict:
    """One chip step's block reads (captured after the refresh), timed as run and with one
    matrix part; the best of `repeats`, as ratios to `float_step` (seconds)."""
    model.refresh(params)
    model.steps = 1  # the next step reads without refreshing
    calls = []
    run = engines.block_product

    def capture(codes, tables, zero, **kw):
        calls.append((np.array(codes, dtype=np.uint8), tables, zero, kw))
        return run(codes, tables, zero, **kw)

    engines.block_product = capture
    try:
        train_on_chip(net, params, x[:cfg.batch_size], y[:cfg.batch_size], model,
                      dataclasses.replace(cfg, epochs=1), progress=False)
    finally:
        engines.block_product = run
    one = [(c, np.ascontiguousarray(t[:, :t.shape[1] // kw["parts"]]), z, dict(kw, parts=1))
           for c, t, z, kw in calls]

    def best(reads: list) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for codes, tables, zero, kw in reads:
                run(codes, tables, zero, **kw)
            times.append(time.perf_counter() - t0)
        return min(times)

    t3, t1 = best(calls), best(one)
    return {"block_reads": len(calls), "float_step_seconds": float_step,
            "read_seconds": t3, "read_one_matrix_seconds": t1,
            "read_ratio": t3 / float_step, "read_one_matrix_ratio": t1 / float_step}


def _threads(backend: str) -> dict:
    """The threads each side may use: numpy's BLAS and PyTorch take the cores given them; the
    chip's compiled block read, the calling thread and `bitserial`'s workers."""
    from circuitnn.periphery import bitserial

    out = {"chip_block_read": bitserial._workers()[1] + 1}
    if backend == "torch":
        import torch

        out["torch"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    main()

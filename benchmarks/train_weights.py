"""Train the shipped preset weights (device_models/weights-<network>-<dataset>.npz) and record how
(device_models/weights.json): data, epochs, seed, test accuracy, seconds.

    .venv/bin/python benchmarks/train_weights.py --network cnn5 --dataset mnist [--epochs 30]
    .venv/bin/python benchmarks/train_weights.py --network resnet20 --dataset mnist --epochs 2

cnn5 trains in numpy (`circuitnn.training.exsitu`), the ResNets with PyTorch (`[torch]` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from circuitnn.io import write_json
from circuitnn.network import graph
from circuitnn.network.data import load_dataset
from circuitnn.network.presets import preset
from circuitnn.training import exsitu

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="cnn5")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-images", type=int, default=None)
    args = ap.parse_args()
    d = load_dataset(args.dataset)
    x, y = d.x_train[:args.train_images], d.y_train[:args.train_images]
    shape = x.shape[1:] if x.ndim == 4 else x.shape[1:] + (1,)
    net = preset(args.network, shape, 10)
    t0 = time.perf_counter()
    if args.network == "cnn5":
        epochs = args.epochs or 30
        cfg = exsitu.TrainConfig(epochs=epochs, lr_decay_every=max(1, epochs // 3),
                                 seed=args.seed)
        res = exsitu.train(net, x, y, cfg)
        how = {"trainer": "numpy Adam (circuitnn.training.exsitu)", **vars(cfg)}
    else:
        from circuitnn.training.torch_train import TorchTrainConfig, train_torch

        cfg = TorchTrainConfig(epochs=args.epochs or 15, seed=args.seed)
        res = train_torch(net, x, y, cfg)
        how = {"trainer": "PyTorch SGD, one-cycle lr (circuitnn.training.torch_train)",
               **{k: v for k, v in vars(cfg).items() if k != "extra"}}
    seconds = time.perf_counter() - t0
    kind = args.dataset.partition(":")[0]
    out = ROOT / "device_models" / f"weights-{args.network}-{kind}.npz"
    exsitu.save_params(out, net, {k: v.astype(np.float32) for k, v in res.params.items()})
    folded, fp = graph.fold_batchnorm(net, exsitu.load_params(out, net))
    acc = graph.accuracy(folded, fp, d.x_test, d.y_test)
    meta_path = ROOT / "device_models" / "weights.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta[out.name] = {"network": args.network, "dataset": args.dataset,
                      "train_images": int(len(y)), "test_images": int(len(d.y_test)),
                      "test_accuracy": acc, "train_seconds": round(seconds, 1),
                      "training": how}
    write_json(meta_path, meta)
    print(f"{out.name}: test accuracy {acc:.4f} after {seconds:.0f} s")


if __name__ == "__main__":
    main()

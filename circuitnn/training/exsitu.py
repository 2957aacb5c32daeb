"""Ex-situ (software) training of a network in numpy, and NPZ I/O of its parameters.

Training: mini-batch Adam on softmax cross-entropy through `graph.forward` / `graph.backward`,
optional random +-shift augmentation (the 5k data set is small), a step learning-rate decay,
seedable, tqdm progress bar on stderr. Numpy training suits the small cnn5; the residual presets
train with PyTorch (`circuitnn.training.torch_train`, optional) or ship trained weights.

Quantisation of the trained weights is `circuitnn.network.quantise`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_npz
from circuitnn.network import graph
from circuitnn.network.graph import Network
from circuitnn.network.layers import softmax_cross_entropy


@dataclass
class TrainConfig:
    """Hyper-parameters of ex-situ training."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    lr_decay_every: int = 10  # multiply lr by lr_decay every this many epochs
    lr_decay: float = 0.3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 1e-4
    max_shift: int = 2  # random translation augmentation in pixels (0 = off)
    seed: int = 0


@dataclass
class TrainResult:
    """Trained parameters and per-epoch history (loss, train/test accuracy, seconds)."""

    params: dict[str, np.ndarray]
    history: dict[str, list] = field(default_factory=dict)


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each uint8 image (N, H, W[, C]) by a random integer offset in
    [-max_shift, max_shift]^2 (zero fill)."""
    if max_shift <= 0:
        return images
    n, h, w = images.shape[:3]
    pad = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift))
                 + ((0, 0),) * (images.ndim - 3))
    oy, ox = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    rows = oy[:, None] + np.arange(h)[None, :]
    cols = ox[:, None] + np.arange(w)[None, :]
    return pad[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def train(net: Network, x_train: np.ndarray, y_train: np.ndarray,
          config: TrainConfig | None = None, x_test: np.ndarray | None = None,
          y_test: np.ndarray | None = None, params: dict[str, np.ndarray] | None = None,
          progress: bool = True, product: Callable[[dict], graph.MatMul] | None = None,
          desc: str = "ex-situ training") -> TrainResult:
    """Train `net` on uint8 images with Adam in numpy; returns params and history.

    product: the weight product of a step given the current parameters (None: software X @ W;
    chip-aware training passes the chip's, `circuitnn.training.chipaware`); the backward pass
    is always the software product's (straight-through)."""
    cfg = config or TrainConfig()
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise CircuitnnError(f"training set needs equal, non-zero numbers of images and labels "
                             f"({len(x_train)} vs {len(y_train)})")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise CircuitnnError("epochs and batch_size must be >= 1 and lr > 0")
    rng = np.random.default_rng(cfg.seed)
    params = {k: v.astype(np.float64).copy() for k, v in
              (params or net.init_params(cfg.seed)).items()}
    net.check_params(params)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    hist: dict[str, list] = {"epoch": [], "loss": [], "train_acc": [], "test_acc": [],
                             "seconds": []}
    n_batches = -(-len(x_train) // cfg.batch_size)
    step, t0 = 0, time.perf_counter()
    weights = set(net.weight_layers)
    bar = tqdm(total=cfg.epochs * n_batches, desc=desc, unit="batch",
               disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        lr = cfg.lr * cfg.lr_decay ** (epoch // max(cfg.lr_decay_every, 1))
        order = rng.permutation(len(x_train))
        losses, correct = [], 0
        for b in range(n_batches):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = graph.preprocess(net, random_shift(x_train[idx], cfg.max_shift, rng))
            matmul = product(params) if product is not None else None
            logits, cache = graph.forward(net, params, xb, matmul, return_cache=True)
            loss, dlogits = softmax_cross_entropy(logits, y_train[idx])
            grads = graph.backward(net, params, cache, dlogits)
            step += 1
            for k in params:
                g = grads[k] + (cfg.weight_decay * params[k] if k in weights else 0.0)
                m[k] = cfg.beta1 * m[k] + (1 - cfg.beta1) * g
                v[k] = cfg.beta2 * v[k] + (1 - cfg.beta2) * g * g
                mhat = m[k] / (1 - cfg.beta1 ** step)
                vhat = v[k] / (1 - cfg.beta2 ** step)
                params[k] -= lr * mhat / (np.sqrt(vhat) + 1e-8)
            losses.append(loss)
            correct += int((logits.argmax(axis=1) == y_train[idx]).sum())
            bar.update(1)
        hist["epoch"].append(epoch + 1)
        hist["loss"].append(float(np.mean(losses)))
        hist["train_acc"].append(correct / len(x_train))
        test_acc = (graph.accuracy(net, params, x_test, y_test) if x_test is not None
                    and y_test is not None else float("nan"))
        hist["test_acc"].append(test_acc)
        hist["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", test=f"{test_acc:.3f}")
    bar.close()
    return TrainResult(params, hist)


# ----------------------------------------------------------------------------- NPZ I/O
def save_params(path: str | os.PathLike, net: Network, params: dict[str, np.ndarray]) -> None:
    """Save a network's parameters as an NPZ file (atomic, no pickle)."""
    net.check_params(params)
    write_npz(path, **{k: np.asarray(params[k]) for k in net.param_shapes()})


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a parameter file, checked to be finite numbers (never unpickles)."""
    if not os.path.isfile(path):
        raise CircuitnnError(f"parameter file not found: {path}")
    params = load_npz(path)
    for name, a in params.items():
        if a.dtype.kind not in "biuf":
            raise CircuitnnError(f"{path}: parameter '{name}' must hold numbers, not {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise CircuitnnError(f"{path}: parameter '{name}' is not finite (NaN or inf)")
    return params


def load_params(path: str | os.PathLike, net: Network) -> dict[str, np.ndarray]:
    """Load and check a network's parameters saved by `save_params` (never unpickles)."""
    return params_of(net, read_params(path))


def params_of(net: Network, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The network's parameters (float64) from a parameter file's arrays: every one present
    with its shape, and none that the network does not have (weights of another network)."""
    net.check_params(arrays)
    extra = sorted(set(arrays) - set(net.param_shapes()))
    if extra:
        raise CircuitnnError(f"{net.name} has no parameter '{extra[0]}' ({len(extra)} "
                             "parameters of another network)")
    return {k: arrays[k].astype(np.float64) for k in net.param_shapes()}

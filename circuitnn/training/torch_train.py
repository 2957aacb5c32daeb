"""Ex-situ training of any network description with PyTorch (optional extra `circuitnn[torch]`,
CPU build; torch is imported only inside these functions).

`to_torch(net)` builds a `torch.nn.Module` that runs the graph exactly as `graph.forward` does
(batch normalisation in training mode while training), `train_torch` trains it with SGD +
momentum, one-cycle learning rate, weight decay and random-shift augmentation (plus horizontal
flips for 3-channel images), and returns the parameters in circuitnn's layout. With a `product`
(chip-aware training, `circuitnn.training.chipaware`) every conv/linear output of the forward
pass is that product's, computed in numpy, with the gradients of the software product
(straight-through).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from circuitnn.errors import CircuitnnError
from circuitnn.network.graph import MatMul, Network, conv_product
from circuitnn.training.exsitu import TrainResult, random_shift


@dataclass
class TorchTrainConfig:
    """Hyper-parameters of PyTorch training."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_shift: int = 2
    flip: bool | None = None  # None: for 3-channel images
    seed: int = 0
    threads: int | None = None
    optimizer: str = "sgd"  # "sgd" (Nesterov, one-cycle lr) or "adam" (lr x 0.3 every epoch)
    extra: dict = field(default_factory=dict)


def _torch():
    try:
        import torch
    except ImportError:
        raise CircuitnnError("training the residual presets needs PyTorch: pip install "
                             "'circuitnn[torch]' (or pass shipped/trained weights)") from None
    return torch


def to_torch(net: Network, params: dict[str, np.ndarray] | None = None):
    """A torch module of the graph (NCHW inside; flatten in circuitnn's (h, w, c) order)."""
    torch = _torch()
    from torch import nn

    class GraphModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict()
            for n in net.nodes:
                a = n.attrs
                c_in = net.shapes[n.inputs[0]][-1]
                if n.op == "conv":
                    self.layers[n.name] = nn.Conv2d(c_in, int(a["out"]), int(a["k"]),
                                                    int(a.get("stride", 1)), int(a.get("pad", 0)),
                                                    bias=net.has_bias(n.name))
                elif n.op == "linear":
                    self.layers[n.name] = nn.Linear(net.weight_shape(n.name)[0], int(a["out"]),
                                                    bias=net.has_bias(n.name))
                elif n.op == "batchnorm":
                    cls = nn.BatchNorm2d if len(net.shapes[n.name]) == 3 else nn.BatchNorm1d
                    self.layers[n.name] = cls(net.shapes[n.name][-1], eps=a.get("eps", 1e-5))
            self.matmul = None  # graph.MatMul replacing the conv/linear products (numpy)

        def chip_output(self, n, h, y):
            """y with the value of `self.matmul`'s product (plus bias), gradients of y."""
            a = n.attrs
            x = h.detach().double().numpy()
            if n.op == "conv":
                out = conv_product(self.matmul, n.name, x.transpose(0, 2, 3, 1), None,
                                   int(a["k"]), int(a.get("stride", 1)),
                                   int(a.get("pad", 0))).transpose(0, 3, 1, 2)
            else:
                out = self.matmul(n.name, x, None)
            chip = torch.from_numpy(np.ascontiguousarray(out)).to(y.dtype)
            if self.layers[n.name].bias is not None:
                chip = chip + self.layers[n.name].bias.detach().reshape(
                    (1, -1) + (1,) * (y.ndim - 2))
            return y + (chip - y).detach()

        def forward(self, x):
            vals = {"input": x}
            for n in net.nodes:
                a, h = n.attrs, vals[n.inputs[0]]
                if n.op in ("conv", "linear", "batchnorm"):
                    y = self.layers[n.name](h)
                    if self.matmul is not None and n.op != "batchnorm":
                        y = self.chip_output(n, h, y)
                elif n.op == "relu":
                    y = torch.relu(h)
                elif n.op == "maxpool":
                    y = nn.functional.max_pool2d(h, int(a["size"]),
                                                 ceil_mode=bool(a.get("ceil", True)))
                elif n.op == "avgpool":
                    y = nn.functional.avg_pool2d(h, int(a["size"]))
                elif n.op == "add":
                    y = h + vals[n.inputs[1]]
                elif n.op == "gap":
                    y = h.mean(dim=(2, 3))
                elif n.op == "flatten":
                    y = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)
                else:  # shortcut
                    s, out = int(a["stride"]), int(a["out"])
                    y = h[:, :, ::s, ::s]
                    extra = out - y.shape[1]
                    y = nn.functional.pad(y, (0, 0, 0, 0, extra // 2, extra - extra // 2))
                vals[n.name] = y
            return vals[net.nodes[-1].name]

    module = GraphModule().double()
    if params is not None:
        load_params_into(module, net, params)
    return module


def load_params_into(module, net: Network, params: dict[str, np.ndarray]) -> None:
    """Copy circuitnn-layout parameters into a `to_torch` module."""
    torch = _torch()
    with torch.no_grad():
        for n in net.nodes:
            layer = module.layers[n.name] if n.name in module.layers else None
            if n.op == "conv":
                k, c_in = int(n.attrs["k"]), net.shapes[n.inputs[0]][-1]
                w = params[n.name].reshape(k, k, c_in, -1).transpose(3, 2, 0, 1)
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            elif n.op == "linear":
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(params[n.name].T)))
            elif n.op == "batchnorm":
                for attr, key in (("weight", "gamma"), ("bias", "beta"),
                                  ("running_mean", "mean"), ("running_var", "var")):
                    getattr(layer, attr).copy_(torch.from_numpy(params[f"{key}_{n.name}"]))
            if n.op in ("conv", "linear") and net.has_bias(n.name):
                layer.bias.copy_(torch.from_numpy(params[f"b_{n.name}"]))


def params_from(module, net: Network) -> dict[str, np.ndarray]:
    """circuitnn-layout parameters of a `to_torch` module."""
    out = {}
    for n in net.nodes:
        if n.name not in module.layers:
            continue
        layer = module.layers[n.name]
        if n.op == "conv":
            w = layer.weight.detach().double().numpy()
            out[n.name] = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
        elif n.op == "linear":
            out[n.name] = layer.weight.detach().double().numpy().T.copy()
        elif n.op == "batchnorm":
            for attr, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                              ("running_var", "var")):
                out[f"{key}_{n.name}"] = getattr(layer, attr).detach().double().numpy().copy()
        if n.op in ("conv", "linear") and net.has_bias(n.name):
            out[f"b_{n.name}"] = layer.bias.detach().double().numpy().copy()
    net.check_params(out)
    return out


def _nchw(torch, images: np.ndarray):
    x = images if images.ndim == 4 else images[..., None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float() / 255.0


def train_torch(net: Network, x_train: np.ndarray, y_train: np.ndarray,
                config: TorchTrainConfig | None = None, x_test: np.ndarray | None = None,
                y_test: np.ndarray | None = None, progress: bool = True,
                params: dict[str, np.ndarray] | None = None,
                product: Callable[[dict], MatMul] | None = None) -> TrainResult:
    """Train `net` on uint8 images with PyTorch (float32 on the CPU), from `params` or from
    scratch; `product` (current parameters -> the step's conv/linear products) replaces the
    forward products, the gradients staying those of the software products."""
    torch = _torch()
    cfg = config or TorchTrainConfig()
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise CircuitnnError("training set needs equal, non-zero numbers of images and labels")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise CircuitnnError("epochs and batch_size must be >= 1 and lr > 0")
    if cfg.optimizer not in ("sgd", "adam"):
        raise CircuitnnError(f"optimizer must be 'sgd' or 'adam', got '{cfg.optimizer}'")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = to_torch(net).float()
    net_params = net.init_params(cfg.seed) if params is None else params
    load_params_into(model.double(), net, net_params)
    model = model.float()
    n_batches = -(-len(x_train) // cfg.batch_size)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, n_batches, 0.3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay, nesterov=True)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr,
                                                    total_steps=cfg.epochs * n_batches)
    flip = (x_train.ndim == 4 and x_train.shape[-1] == 3) if cfg.flip is None else cfg.flip
    loss_fn = torch.nn.CrossEntropyLoss()
    hist: dict[str, list] = {"epoch": [], "loss": [], "train_acc": [], "test_acc": [],
                             "seconds": []}
    t0 = time.perf_counter()
    y_all = torch.from_numpy(np.asarray(y_train, np.int64))
    with tqdm(total=cfg.epochs * n_batches, desc="ex-situ training (PyTorch)", unit="batch",
              disable=not progress, leave=False) as bar:
        for epoch in range(cfg.epochs):
            model.train()
            order = rng.permutation(len(x_train))
            losses, correct = [], 0
            for b in range(n_batches):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb = random_shift(x_train[idx], cfg.max_shift, rng)
                if flip:
                    mirror = rng.random(len(idx)) < 0.5
                    xb = np.where(mirror[:, None, None, None], xb[:, :, ::-1], xb)
                xt = _nchw(torch, xb)
                if product is not None:
                    model.matmul = product(params_from(model, net))
                logits = model(xt)
                loss = loss_fn(logits, y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                correct += int((logits.argmax(1) == y_all[idx]).sum())
                bar.update(1)
            hist["epoch"].append(epoch + 1)
            hist["loss"].append(float(np.mean(losses)))
            hist["train_acc"].append(correct / len(x_train))
            hist["test_acc"].append(evaluate(model, x_test, y_test) if x_test is not None
                                    else float("nan"))
            hist["seconds"].append(time.perf_counter() - t0)
            bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", test=f"{hist['test_acc'][-1]:.3f}")
    model.matmul = None
    return TrainResult(params_from(model.double(), net), hist)


def evaluate(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Test accuracy of a torch module (evaluation mode) on uint8 images."""
    torch = _torch()
    model.eval()
    dtype = next(model.parameters()).dtype
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = _nchw(torch, images[i:i + batch_size]).to(dtype)
            correct += int((model(x).argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / max(len(images), 1)

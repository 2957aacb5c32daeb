"""A network as data: a graph of layers (structure: plain JSON) and its parameters (plain NPZ).

Nodes run in list order; each reads the outputs of earlier nodes (the network input is named
"input") and the last node gives the logits. Operations and their attributes:

    conv       out, k, stride=1, pad=0, bias=False   weight (k*k*C_in, out), digital bias b_<name>
    linear     out, bias=True                        weight (F_in, out), digital bias b_<name>
    maxpool    size, ceil=True (stride = size)       avgpool  size (stride = size, floor)
    relu       add (two inputs)      gap (global average pool)      flatten ((h, w, c) order)
    batchnorm  eps=1e-5: gamma_/beta_/mean_/var_<name> (inference statistics; `fold_batchnorm`
               moves it into the preceding conv/linear weights and a digital bias)
    shortcut   stride, out: parameter-free residual shortcut (subsample, zero-pad channels)

Activations are NHWC floats; images enter as pixel / 255. Every weight product goes through
`matmul(layer, X, W)` with X (N, Ho, Wo, K) for a convolution (so hardware engines see the
spatial position of each patch) and (N, K) for a linear layer; the hardware engines replace
exactly those products. `backward` gives the gradients of every parameter (batch normalisation
as a fixed affine map with its stored statistics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.network import layers as L

MatMul = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
WEIGHT_OPS = ("conv", "linear")
OPS = {"conv": 1, "linear": 1, "maxpool": 1, "avgpool": 1, "relu": 1, "add": 2, "gap": 1,
       "flatten": 1, "batchnorm": 1, "shortcut": 1}
BN_PARAMS = ("gamma", "beta", "mean", "var")


def default_matmul(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The software product X @ W."""
    return x @ w


@dataclass(frozen=True)
class Node:
    """One operation: its name, operation, input node names and attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict, hash=False)


@dataclass
class Network:
    """The structure of a network: input shape (H, W, C), classes and nodes in run order."""

    name: str
    input_shape: tuple[int, int, int]
    n_classes: int
    nodes: list[Node]
    shapes: dict[str, tuple] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.shapes = self._infer_shapes()

    # ------------------------------------------------------------------ structure
    def _infer_shapes(self) -> dict[str, tuple]:
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise CircuitnnError(f"network input shape must be (H, W, C), got {self.input_shape}")
        shapes: dict[str, tuple] = {"input": self.input_shape}
        if not self.nodes:
            raise CircuitnnError("a network needs at least one node")
        for n in self.nodes:
            if n.op not in OPS:
                raise CircuitnnError(f"node '{n.name}': unknown operation '{n.op}' (known: "
                                     f"{', '.join(OPS)})")
            if n.name in shapes or not n.name.replace("_", "").replace(".", "").isalnum():
                raise CircuitnnError(f"node name '{n.name}' is repeated or not alphanumeric")
            if len(n.inputs) != OPS[n.op] or any(i not in shapes for i in n.inputs):
                raise CircuitnnError(f"node '{n.name}' ({n.op}) needs {OPS[n.op]} input(s) among "
                                     f"earlier nodes, got {list(n.inputs)}")
            shapes[n.name] = self._shape(n, [shapes[i] for i in n.inputs])
        if shapes[self.nodes[-1].name] != (self.n_classes,):
            raise CircuitnnError(f"the last node must give {self.n_classes} logits, gives "
                                 f"{shapes[self.nodes[-1].name]}")
        return shapes

    @staticmethod
    def _shape(n: Node, ins: list[tuple]) -> tuple:
        a, s = n.attrs, ins[0]
        spatial = len(s) == 3
        if n.op in ("conv", "maxpool", "avgpool", "gap", "shortcut", "batchnorm") and (
                not spatial and n.op != "batchnorm"):
            raise CircuitnnError(f"node '{n.name}' ({n.op}) needs a spatial (H, W, C) input")
        try:
            if n.op == "conv":
                k, st, pad = int(a["k"]), int(a.get("stride", 1)), int(a.get("pad", 0))
                ho, wo = (L.out_size(v, k, st, pad) for v in s[:2])
                if ho < 1 or wo < 1 or int(a["out"]) < 1:
                    raise CircuitnnError(f"conv '{n.name}' does not fit its {s} input")
                return (ho, wo, int(a["out"]))
            if n.op == "linear":
                return (int(a["out"]),)
            if n.op in ("maxpool", "avgpool"):
                p = int(a["size"])
                ceil = n.op == "maxpool" and bool(a.get("ceil", True))
                return (L.out_size(s[0], p, p, 0, ceil), L.out_size(s[1], p, p, 0, ceil), s[2])
            if n.op == "add":
                if ins[0] != ins[1]:
                    raise CircuitnnError(f"add '{n.name}': input shapes {ins[0]} != {ins[1]}")
                return s
            if n.op == "gap":
                return (s[2],)
            if n.op == "flatten":
                return (int(np.prod(s)),)
            if n.op == "shortcut":
                st, out = int(a["stride"]), int(a["out"])
                if out < s[2]:
                    raise CircuitnnError(f"shortcut '{n.name}' cannot reduce channels")
                return (-(-s[0] // st), -(-s[1] // st), out)
        except KeyError as exc:
            raise CircuitnnError(f"node '{n.name}' ({n.op}) lacks attribute {exc}") from None
        return s  # relu, batchnorm

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise CircuitnnError(f"network '{self.name}' has no node '{name}'")

    @property
    def weight_layers(self) -> list[str]:
        """Names of the conv and linear nodes (the array layers), in run order."""
        return [n.name for n in self.nodes if n.op in WEIGHT_OPS]

    def weight_shape(self, name: str) -> tuple[int, int]:
        """(rows K, outputs) of a weight layer's matrix."""
        n = self.node(name)
        s = self.shapes[n.inputs[0]]
        if n.op == "conv":
            return (int(n.attrs["k"]) ** 2 * s[2], int(n.attrs["out"]))
        return (int(np.prod(s)), int(n.attrs["out"]))

    def positions(self, name: str) -> int:
        """Output positions of a weight layer per image (Ho*Wo for a conv, 1 for linear)."""
        s = self.shapes[name]
        return s[0] * s[1] if len(s) == 3 else 1

    def macs(self) -> dict[str, int]:
        """Multiply-accumulates per image of every weight layer."""
        return {k: self.positions(k) * int(np.prod(self.weight_shape(k)))
                for k in self.weight_layers}

    def has_bias(self, name: str) -> bool:
        n = self.node(name)
        return bool(n.attrs.get("bias", n.op == "linear"))

    def param_shapes(self) -> dict[str, tuple]:
        """Name and shape of every parameter."""
        out: dict[str, tuple] = {}
        for n in self.nodes:
            if n.op in WEIGHT_OPS:
                out[n.name] = self.weight_shape(n.name)
                if self.has_bias(n.name):
                    out[f"b_{n.name}"] = (out[n.name][1],)
            elif n.op == "batchnorm":
                c = self.shapes[n.name][-1]
                out.update({f"{p}_{n.name}": (c,) for p in BN_PARAMS})
        return out

    @property
    def last_layer(self) -> str:
        """The last weight layer (hybrid training's in-situ layer); must be linear."""
        name = self.weight_layers[-1]
        if self.node(name).op != "linear":
            raise CircuitnnError(f"the last weight layer '{name}' of {self.name} is not linear")
        return name

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """He-normal weights, zero biases, unit batch-norm statistics."""
        rng = np.random.default_rng(seed)
        out = {}
        for k, shape in self.param_shapes().items():
            if k in self.weight_layers:
                out[k] = rng.normal(0.0, np.sqrt(2.0 / shape[0]), shape)
            elif k.startswith(("gamma_", "var_")):
                out[k] = np.ones(shape)
            else:
                out[k] = np.zeros(shape)
        return out

    def check_params(self, params: dict[str, np.ndarray]) -> None:
        """Raise CircuitnnError unless params has every parameter with its shape."""
        for name, shape in self.param_shapes().items():
            if name not in params:
                raise CircuitnnError(f"{self.name} parameters lack '{name}'")
            if tuple(np.shape(params[name])) != tuple(shape):
                raise CircuitnnError(f"{self.name} parameter '{name}' has shape "
                                     f"{np.shape(params[name])}, expected {tuple(shape)}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "n_classes": self.n_classes,
                "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                           "attrs": dict(n.attrs)} for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> Network:
        try:
            nodes = [Node(str(n["name"]), str(n["op"]), tuple(n["inputs"]),
                          dict(n.get("attrs", {}))) for n in d["nodes"]]
            return cls(str(d["name"]), tuple(d["input_shape"]), int(d["n_classes"]), nodes)
        except (KeyError, TypeError, ValueError) as exc:
            raise CircuitnnError(f"bad network description: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        from circuitnn.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        try:
            return cls.from_dict(json.loads(open(path).read()))
        except (OSError, ValueError) as exc:
            raise CircuitnnError(f"cannot read network description {path}: {exc}") from None


# ----------------------------------------------------------------------------- inference
def conv_product(matmul: MatMul, layer: str, x: np.ndarray, w: np.ndarray | None, k: int,
                 stride: int = 1, pad: int = 0) -> np.ndarray:
    """A convolution's product of NHWC inputs x: `matmul` of their patches (`layers.im2col`),
    or the matmul's own `conv(layer, x, k, stride, pad)` where it has one (a chip engine
    quantises the inputs before unrolling them)."""
    conv = getattr(matmul, "conv", None)
    if conv is not None:
        return conv(layer, x, k, stride, pad)
    return matmul(layer, L.im2col(x, k, stride, pad), w)


def preprocess(net: Network, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> float NHWC in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != net.input_shape:
        raise CircuitnnError(f"{net.name} expects images of shape (N, "
                             f"{', '.join(map(str, net.input_shape))}), got {images.shape}")
    return images.astype(np.float64) / 255.0


def forward(net: Network, params: dict[str, np.ndarray], x: np.ndarray,
            matmul: MatMul | None = None, return_cache: bool = False):
    """Logits (N, n_classes) for NHWC input x in [0, 1]; with return_cache also the values
    `backward` needs."""
    matmul = matmul or default_matmul
    if x.ndim != 4 or x.shape[1:] != net.input_shape:
        raise CircuitnnError(f"expected input of shape (N, {net.input_shape}), got {x.shape}")
    vals: dict[str, np.ndarray] = {"input": x}
    cache: dict[str, object] = {}
    for n in net.nodes:
        a = n.attrs
        h = vals[n.inputs[0]]
        if n.op == "conv":
            geometry = int(a["k"]), int(a.get("stride", 1)), int(a.get("pad", 0))
            if return_cache:  # backward needs the patches
                cols = cache[n.name] = L.im2col(h, *geometry)
                y = matmul(n.name, cols, params[n.name])
            else:
                y = conv_product(matmul, n.name, h, params[n.name], *geometry)
            if net.has_bias(n.name):
                y = y + params[f"b_{n.name}"]
        elif n.op == "linear":
            flat = h.reshape(h.shape[0], -1)
            y = matmul(n.name, flat, params[n.name])
            if net.has_bias(n.name):
                y = y + params[f"b_{n.name}"]
            cache[n.name] = flat
        elif n.op == "relu":
            y = np.maximum(h, 0.0)
        elif n.op == "maxpool":
            y, arg = L.maxpool(h, int(a["size"]), bool(a.get("ceil", True)))
            cache[n.name] = arg
        elif n.op == "avgpool":
            y = L.avgpool(h, int(a["size"]))
        elif n.op == "add":
            y = h + vals[n.inputs[1]]
        elif n.op == "gap":
            y = h.mean(axis=(1, 2))
        elif n.op == "flatten":
            y = h.reshape(h.shape[0], -1)
        elif n.op == "batchnorm":
            s = params[f"gamma_{n.name}"] / np.sqrt(params[f"var_{n.name}"] + a.get("eps", 1e-5))
            y = (h - params[f"mean_{n.name}"]) * s + params[f"beta_{n.name}"]
        else:  # shortcut
            y = L.shortcut(h, int(a["stride"]), int(a["out"]))
        vals[n.name] = y
    logits = vals[net.nodes[-1].name]
    if return_cache:
        cache["_vals"] = vals
        return logits, cache
    return logits


def backward(net: Network, params: dict[str, np.ndarray], cache: dict, dlogits: np.ndarray
             ) -> dict[str, np.ndarray]:
    """Gradients of the loss for every parameter, given dL/dlogits and the forward cache."""
    vals = cache["_vals"]
    grads: dict[str, np.ndarray] = {}
    d: dict[str, np.ndarray] = {net.nodes[-1].name: dlogits}

    def push(name: str, g: np.ndarray) -> None:
        if name != "input":
            d[name] = d[name] + g if name in d else g

    for n in reversed(net.nodes):
        if n.name not in d:
            continue
        g, a = d.pop(n.name), n.attrs
        src = n.inputs[0]
        shape = vals[src].shape
        if n.op in WEIGHT_OPS:
            x = cache[n.name]
            k = x.shape[-1]
            grads[n.name] = x.reshape(-1, k).T @ g.reshape(-1, g.shape[-1])
            if net.has_bias(n.name):
                grads[f"b_{n.name}"] = g.reshape(-1, g.shape[-1]).sum(axis=0)
            if src != "input":
                dx = g @ params[n.name].T
                if n.op == "conv":
                    dx = L.col2im(dx, shape, int(a["k"]), int(a.get("stride", 1)),
                                  int(a.get("pad", 0)))
                push(src, dx.reshape(shape))
        elif n.op == "relu":
            push(src, g * (vals[src] > 0))
        elif n.op == "maxpool":
            push(src, L.maxpool_backward(g, cache[n.name], shape, int(a["size"])))
        elif n.op == "avgpool":
            push(src, L.avgpool_backward(g, shape, int(a["size"])))
        elif n.op == "add":
            push(src, g)
            push(n.inputs[1], g)
        elif n.op == "gap":
            push(src, np.broadcast_to(g[:, None, None, :] / (shape[1] * shape[2]), shape))
        elif n.op == "flatten":
            push(src, g.reshape(shape))
        elif n.op == "batchnorm":
            s = params[f"gamma_{n.name}"] / np.sqrt(params[f"var_{n.name}"] + a.get("eps", 1e-5))
            xhat = (vals[src] - params[f"mean_{n.name}"]) * s / params[f"gamma_{n.name}"]
            axes = tuple(range(g.ndim - 1))
            grads[f"gamma_{n.name}"] = (g * xhat).sum(axis=axes)
            grads[f"beta_{n.name}"] = g.sum(axis=axes)
            grads[f"mean_{n.name}"] = np.zeros_like(s)
            grads[f"var_{n.name}"] = np.zeros_like(s)
            push(src, g * s)
        else:  # shortcut
            push(src, L.shortcut_backward(g, shape, int(a["stride"])))
    return grads


def loss_and_grads(net: Network, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """Cross-entropy loss of a batch and the gradients of every parameter."""
    logits, cache = forward(net, params, x, return_cache=True)
    loss, dlogits = L.softmax_cross_entropy(logits, y)
    return loss, backward(net, params, cache, dlogits)


def predict(net: Network, params: dict[str, np.ndarray], images: np.ndarray,
            matmul: MatMul | None = None, batch_size: int = 500, progress=None) -> np.ndarray:
    """Predicted classes for uint8 images, in batches."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(forward(net, params, preprocess(net, images[i:i + batch_size]),
                           matmul).argmax(axis=1))
        if progress is not None:
            progress(len(out[-1]))
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def accuracy(net: Network, params: dict[str, np.ndarray], images: np.ndarray,
             labels: np.ndarray, matmul: MatMul | None = None, batch_size: int = 500) -> float:
    """Fraction of images classified correctly."""
    return float(np.mean(predict(net, params, images, matmul, batch_size) == np.asarray(labels)))


def features(net: Network, params: dict[str, np.ndarray], images: np.ndarray,
             matmul: MatMul | None = None, batch_size: int = 250, progress=None) -> np.ndarray:
    """Inputs (N, F) of the last (linear) layer for uint8 images, every earlier product through
    `matmul` (hybrid training keeps these fixed and trains the last layer in situ)."""
    last, feats = net.last_layer, []
    matmul = matmul or default_matmul

    def capture(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if layer == last:
            feats.append(np.array(x))
            return np.zeros((x.shape[0], w.shape[1]))
        return matmul(layer, x, w)

    for i in range(0, len(images), batch_size):
        forward(net, params, preprocess(net, images[i:i + batch_size]), capture)
        if progress is not None:
            progress(min(batch_size, len(images) - i))
    return np.concatenate(feats) if feats else np.zeros((0, net.weight_shape(last)[0]))


# ----------------------------------------------------------------------------- folding
def fold_batchnorm(net: Network, params: dict[str, np.ndarray]
                   ) -> tuple[Network, dict[str, np.ndarray]]:
    """Move every batch normalisation that directly follows a conv/linear layer (its only user)
    into that layer's weights and a digital bias; other batch normalisations stay digital."""
    users: dict[str, int] = {}
    for n in net.nodes:
        for i in n.inputs:
            users[i] = users.get(i, 0) + 1
    p = {k: np.array(v, dtype=float) for k, v in params.items()}
    rename: dict[str, str] = {}
    nodes: list[Node] = []
    by_name = {n.name: n for n in net.nodes}
    for n in net.nodes:
        n = Node(n.name, n.op, tuple(rename.get(i, i) for i in n.inputs), dict(n.attrs))
        src = by_name.get(n.inputs[0])
        if (n.op == "batchnorm" and src is not None and src.op in WEIGHT_OPS
                and users.get(src.name) == 1):
            s = p.pop(f"gamma_{n.name}") / np.sqrt(p.pop(f"var_{n.name}")
                                                   + n.attrs.get("eps", 1e-5))
            mean, beta = p.pop(f"mean_{n.name}"), p.pop(f"beta_{n.name}")
            bias = p.pop(f"b_{src.name}", np.zeros_like(s))
            p[src.name] = p[src.name] * s
            p[f"b_{src.name}"] = (bias - mean) * s + beta
            i = next(j for j, m in enumerate(nodes) if m.name == src.name)
            nodes[i] = Node(src.name, src.op, nodes[i].inputs, {**nodes[i].attrs, "bias": True})
            rename[n.name] = src.name
            continue
        nodes.append(n)
    folded = Network(net.name, net.input_shape, net.n_classes, nodes)
    folded.check_params(p)
    return folded, p

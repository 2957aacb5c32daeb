"""Preset networks: the reference five-layer CNN and CIFAR-style residual networks.

`cnn5`: the MNIST CNN of Yao et al. (Nature 577, 641, 2020)

    input 28x28x1  (pixel / 255; the hardware applies the 8-bit pixel bit-serially)
    C1  8 kernels 3x3, valid        -> 26x26x8,  ReLU, max-pool 2x2 stride 2      -> 13x13x8
    C3  12 kernels 3x3x8, valid     -> 11x11x12, ReLU, max-pool 3x3 stride 3, ceil -> 4x4x12
    FC  192 -> 10 (+ digital bias)

Conv weights 8*9 + 12*72 = 936, as in the paper; the convolutions have no bias (the arrays have
no bias line); the FC bias is added digitally. Parameters: C1 (9, 8), C3 (72, 12), FC (192, 10),
b_FC (10,).

`resnet20`, `resnet56`: the CIFAR residual networks of He et al. ("Deep residual learning for
image recognition", CVPR 2016, section 4.2): a 3x3 conv of 16 channels, three stages of n basic
blocks (two 3x3 convs with batch normalisation, ReLU, identity shortcut; 16, 32, 64 channels,
stride 2 at the first block of stages 2 and 3 with the parameter-free "option A" shortcut),
global average pooling and a linear classifier; depth 6n + 2. The first conv takes the input's
channels and any input size (e.g. 1x28x28 MNIST or 3x32x32 CIFAR-10).
"""

from __future__ import annotations

from circuitnn.errors import CircuitnnError
from circuitnn.network.graph import Network, Node

PRESETS = ("cnn5", "resnet20", "resnet56")


def cnn5() -> Network:
    """The reference five-layer CNN (28 x 28 x 1 input, 10 classes)."""
    return Network("cnn5", (28, 28, 1), 10, [
        Node("C1", "conv", ("input",), {"out": 8, "k": 3}),
        Node("relu1", "relu", ("C1",)),
        Node("pool1", "maxpool", ("relu1",), {"size": 2}),
        Node("C3", "conv", ("pool1",), {"out": 12, "k": 3}),
        Node("relu3", "relu", ("C3",)),
        Node("pool3", "maxpool", ("relu3",), {"size": 3, "ceil": True}),
        Node("flat", "flatten", ("pool3",)),
        Node("FC", "linear", ("flat",), {"out": 10, "bias": True}),
    ])


def resnet(depth: int, input_shape: tuple[int, int, int] = (32, 32, 3), n_classes: int = 10
           ) -> Network:
    """CIFAR-style ResNet of depth 6n + 2 (He et al. 2016) for NHWC `input_shape`."""
    if depth < 8 or (depth - 2) % 6:
        raise CircuitnnError(f"ResNet depth must be 6n + 2 >= 8, got {depth}")
    n = (depth - 2) // 6
    nodes = [Node("conv1", "conv", ("input",), {"out": 16, "k": 3, "pad": 1}),
             Node("bn1", "batchnorm", ("conv1",)), Node("relu1", "relu", ("bn1",))]
    x, c_in = "relu1", 16
    for s, c in enumerate((16, 32, 64), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            p = f"s{s}b{b}"
            nodes += [
                Node(f"{p}c1", "conv", (x,), {"out": c, "k": 3, "pad": 1, "stride": stride}),
                Node(f"{p}bn1", "batchnorm", (f"{p}c1",)),
                Node(f"{p}r1", "relu", (f"{p}bn1",)),
                Node(f"{p}c2", "conv", (f"{p}r1",), {"out": c, "k": 3, "pad": 1}),
                Node(f"{p}bn2", "batchnorm", (f"{p}c2",)),
            ]
            short = x
            if stride != 1 or c != c_in:
                short = f"{p}sc"
                nodes.append(Node(short, "shortcut", (x,), {"stride": stride, "out": c}))
            nodes += [Node(f"{p}add", "add", (f"{p}bn2", short)),
                      Node(f"{p}out", "relu", (f"{p}add",))]
            x, c_in = f"{p}out", c
    nodes += [Node("gap", "gap", (x,)), Node("fc", "linear", ("gap",), {"out": n_classes})]
    return Network(f"resnet{depth}", input_shape, n_classes, nodes)


def preset(name: str, input_shape: tuple[int, int, int] = (28, 28, 1), n_classes: int = 10
           ) -> Network:
    """A preset by name; the ResNets adapt to `input_shape` and `n_classes`."""
    if name == "cnn5":
        if tuple(input_shape) != (28, 28, 1) or n_classes != 10:
            raise CircuitnnError(f"cnn5 takes 28 x 28 grey images of 10 classes, not "
                                 f"{tuple(input_shape)} / {n_classes} classes")
        return cnn5()
    if name in ("resnet20", "resnet56"):
        return resnet(int(name[6:]), input_shape, n_classes)
    raise CircuitnnError(f"unknown network '{name}' (choose from {', '.join(PRESETS)})")

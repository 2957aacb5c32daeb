"""The reference five-layer MNIST CNN of Yao et al. (Nature 577, 641, 2020), in plain numpy.

    input 28x28x1  (pixel / 255 in [0, 1]; the hardware applies the 8-bit pixel bit-serially)
    C1  8 kernels 3x3, valid        -> 26x26x8,  ReLU, max-pool 2x2 stride 2      -> 13x13x8
    C3  12 kernels 3x3x8, valid     -> 11x11x12, ReLU, max-pool 3x3 stride 3, ceil -> 4x4x12
    FC  192 -> 10 (+ bias), softmax cross-entropy

Conv weights 8*9 + 12*72 = 936, as in the paper. The convolution layers have no bias: the
arrays have no bias line, and ReLU/pooling work without one. The FC layer has a 10-element bias
that is added digitally after the array (like the digital softmax), never stored in devices.

Layout: activations are NHWC. Convolutions are im2col products: each output pixel's 3x3xC patch
is unrolled into one row, in (dy, dx, c) order with the channel fastest, so row index
`(dy*3 + dx)*C + c` of W1 (9, 8) and W3 (72, 12) is the input line of the array. These rows are
exactly the vectors the hardware applies to its input lines. The flattened 4x4x12 map feeds FC in
(h, w, c) order. The three products go through `matmul(layer, X, W)` with X of shape (..., K):
(N, 26, 26, 9) for C1, (N, 11, 11, 72) for C3 and (N, 192) for FC, so hardware engines can
replace them (and can see the spatial position of each patch).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from circuitnn.errors import CircuitnnError

MatMul = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
LAYERS = ("C1", "C3", "FC")
SHAPES = {"C1": (9, 8), "C3": (72, 12), "FC": (192, 10), "b_FC": (10,)}
POOL = {"C1": 2, "C3": 3}


def default_matmul(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The software product X @ W (the 'ideal' engine)."""
    return x @ w


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights for C1, C3, FC and a zero FC bias."""
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(0.0, np.sqrt(2.0 / shape[0]), shape)
              for name, shape in SHAPES.items() if name in LAYERS}
    params["b_FC"] = np.zeros(SHAPES["b_FC"])
    return params


def check_params(params: dict[str, np.ndarray]) -> None:
    """Raise CircuitnnError unless params has C1 (9,8), C3 (72,12), FC (192,10), b_FC (10,)."""
    for name, shape in SHAPES.items():
        if name not in params:
            raise CircuitnnError(f"CNN parameters lack '{name}'")
        if tuple(np.shape(params[name])) != shape:
            raise CircuitnnError(f"CNN parameter '{name}' has shape {np.shape(params[name])}, "
                                 f"expected {shape}")


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float NHWC (N, 28, 28, 1) in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CircuitnnError(f"expected images of shape (N, 28, 28), got {images.shape}")
    return (images.astype(np.float64) / 255.0)[..., None]


def im2col(x: np.ndarray, k: int = 3) -> np.ndarray:
    """NHWC (N, H, W, C) -> patches (N, H-k+1, W-k+1, k*k*C) in (dy, dx, c) order (valid conv)."""
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # N,Ho,Wo,C,k,k
    n, ho, wo, c = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, ho, wo, k * k * c)


def col2im(dcols: np.ndarray, c: int, k: int = 3) -> np.ndarray:
    """Adjoint of im2col: patch gradients (N, Ho, Wo, k*k*C) -> input gradient (N, H, W, C)."""
    n, ho, wo, _ = dcols.shape
    d = dcols.reshape(n, ho, wo, k, k, c)
    dx = np.zeros((n, ho + k - 1, wo + k - 1, c))
    for dy in range(k):
        for dxx in range(k):
            dx[:, dy:dy + ho, dxx:dxx + wo, :] += d[:, :, :, dy, dxx, :]
    return dx


def maxpool(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool p x p, stride p, ceil mode (partial edge windows kept). Returns (y, argmax)."""
    n, h, w, c = x.shape
    ho, wo = -(-h // p), -(-w // p)
    padded = np.full((n, ho * p, wo * p, c), -np.inf)
    padded[:, :h, :w, :] = x
    win = padded.reshape(n, ho, p, wo, p, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c,
                                                                                  p * p)
    arg = win.argmax(axis=-1)
    return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0], arg


def maxpool_backward(dy: np.ndarray, arg: np.ndarray, shape: tuple, p: int) -> np.ndarray:
    """Route pooled gradients back to the arg-max position of each window."""
    n, h, w, c = shape
    ho, wo = dy.shape[1:3]
    win = np.zeros((n, ho, wo, c, p * p))
    np.put_along_axis(win, arg[..., None], dy[..., None], axis=-1)
    full = win.reshape(n, ho, wo, c, p, p).transpose(0, 1, 4, 2, 5, 3).reshape(n, ho * p, wo * p,
                                                                                c)
    return full[:, :h, :w, :]


def forward(params: dict[str, np.ndarray], x: np.ndarray, matmul: MatMul | None = None,
            return_cache: bool = False):
    """Logits (N, 10) for NHWC input x (N, 28, 28, 1) in [0, 1].

    `matmul(layer, X, W) -> Y` computes the three array products (default X @ W). With
    return_cache=True also returns the intermediate values `backward` needs.
    """
    matmul = matmul or default_matmul
    if x.ndim != 4 or x.shape[1:] != (28, 28, 1):
        raise CircuitnnError(f"expected input of shape (N, 28, 28, 1), got {x.shape}")
    cache: dict[str, np.ndarray] = {}
    h = x
    for layer in ("C1", "C3"):
        cols = im2col(h)
        z = matmul(layer, cols, params[layer])
        a = np.maximum(z, 0.0)
        pooled, arg = maxpool(a, POOL[layer])
        cache.update({f"{layer}_in_shape": h.shape, f"{layer}_cols": cols, f"{layer}_z": z,
                      f"{layer}_arg": arg})
        h = pooled
    flat = h.reshape(h.shape[0], -1)
    logits = matmul("FC", flat, params["FC"]) + params["b_FC"]
    cache["FC_in"] = flat
    return (logits, cache) if return_cache else logits


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy loss and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -logp[np.arange(n), y].mean()
    grad = np.exp(logp)
    grad[np.arange(n), y] -= 1.0
    return float(loss), grad / n


def backward(params: dict[str, np.ndarray], cache: dict, dlogits: np.ndarray
             ) -> dict[str, np.ndarray]:
    """Gradients of the loss for every parameter, given dL/dlogits and the forward cache."""
    grads = {"b_FC": dlogits.sum(axis=0), "FC": cache["FC_in"].T @ dlogits}
    dh = (dlogits @ params["FC"].T).reshape(cache["C3_z"].shape[0], 4, 4, 12)
    for layer in ("C3", "C1"):
        z = cache[f"{layer}_z"]
        da = maxpool_backward(dh, cache[f"{layer}_arg"], z.shape, POOL[layer])
        dz = da * (z > 0)
        cols = cache[f"{layer}_cols"]
        k = cols.shape[-1]
        grads[layer] = cols.reshape(-1, k).T @ dz.reshape(-1, dz.shape[-1])
        if layer == "C3":
            dcols = dz @ params[layer].T
            dh = col2im(dcols, c=cache["C3_in_shape"][-1])
    return grads


def loss_and_grads(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """Cross-entropy loss of a batch and the gradients of every parameter."""
    logits, cache = forward(params, x, return_cache=True)
    loss, dlogits = softmax_cross_entropy(logits, y)
    return loss, backward(params, cache, dlogits)


def predict(params: dict[str, np.ndarray], images: np.ndarray, matmul: MatMul | None = None,
            batch_size: int = 500) -> np.ndarray:
    """Predicted classes for uint8 images (N, 28, 28), in batches."""
    out = [forward(params, preprocess(images[i:i + batch_size]), matmul).argmax(axis=1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def accuracy(params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
             matmul: MatMul | None = None, batch_size: int = 500) -> float:
    """Fraction of images classified correctly."""
    return float(np.mean(predict(params, images, matmul, batch_size) == np.asarray(labels)))

"""The array-free operations of a network in numpy (NHWC activations), forward and adjoint.

Convolutions are im2col products: each output pixel's k x k x C patch is unrolled into one row in
(dy, dx, c) order, channel fastest, so row `(dy*k + dx)*C + c` of a conv weight matrix (k*k*C,
C_out) is the array's input line; these rows are exactly the vectors the hardware applies.
"""

from __future__ import annotations

import numpy as np


def im2col(x: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """NHWC (N, H, W, C) -> patches (N, Ho, Wo, k*k*C) in (dy, dx, c) order (zero padding)."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # N,Ho,Wo,C,k,k
    if stride > 1:
        win = win[:, ::stride, ::stride]
    n, ho, wo, c = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, ho, wo, k * k * c)


def col2im(dcols: np.ndarray, shape: tuple, k: int, stride: int = 1, pad: int = 0
           ) -> np.ndarray:
    """Adjoint of im2col: patch gradients (N, Ho, Wo, k*k*C) -> input gradient `shape`."""
    n, h, w, c = shape
    _, ho, wo, _ = dcols.shape
    d = dcols.reshape(n, ho, wo, k, k, c)
    dx = np.zeros((n, h + 2 * pad, w + 2 * pad, c))
    for dy in range(k):
        for dxx in range(k):
            dx[:, dy:dy + stride * (ho - 1) + 1:stride,
               dxx:dxx + stride * (wo - 1) + 1:stride, :] += d[:, :, :, dy, dxx, :]
    return dx[:, pad:pad + h, pad:pad + w, :]


def out_size(n: int, k: int, stride: int, pad: int = 0, ceil: bool = False) -> int:
    """Output length of a window op along one axis."""
    span = n + 2 * pad - k
    return (-(-span // stride) if ceil else span // stride) + 1


def _windows(x: np.ndarray, p: int, fill: float) -> np.ndarray:
    """(N, Ho, Wo, C, p*p) non-overlapping p x p windows, ceil mode (edge windows padded)."""
    n, h, w, c = x.shape
    ho, wo = -(-h // p), -(-w // p)
    padded = np.full((n, ho * p, wo * p, c), fill)
    padded[:, :h, :w, :] = x
    return padded.reshape(n, ho, p, wo, p, c).transpose(0, 1, 3, 5, 2, 4).reshape(
        n, ho, wo, c, p * p)


def maxpool(x: np.ndarray, p: int, ceil: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool p x p, stride p (ceil mode keeps partial edge windows). Returns (y, argmax)."""
    if not ceil:
        x = x[:, :x.shape[1] // p * p, :x.shape[2] // p * p]
    win = _windows(x, p, -np.inf)
    arg = win.argmax(axis=-1)
    return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0], arg


def maxpool_backward(dy: np.ndarray, arg: np.ndarray, shape: tuple, p: int) -> np.ndarray:
    """Route pooled gradients back to the arg-max position of each window."""
    n, h, w, c = shape
    ho, wo = dy.shape[1:3]
    win = np.zeros((n, ho, wo, c, p * p))
    np.put_along_axis(win, arg[..., None], dy[..., None], axis=-1)
    full = win.reshape(n, ho, wo, c, p, p).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, ho * p, wo * p, c)
    out = np.zeros(shape)
    hh, ww = min(h, ho * p), min(w, wo * p)
    out[:, :hh, :ww] = full[:, :hh, :ww]
    return out


def avgpool(x: np.ndarray, p: int) -> np.ndarray:
    """Average-pool p x p, stride p (floor: partial edge windows dropped)."""
    n, h, w, c = x.shape
    ho, wo = h // p, w // p
    return x[:, :ho * p, :wo * p].reshape(n, ho, p, wo, p, c).mean(axis=(2, 4))


def avgpool_backward(dy: np.ndarray, shape: tuple, p: int) -> np.ndarray:
    """Adjoint of `avgpool`."""
    out = np.zeros(shape)
    ho, wo = dy.shape[1:3]
    out[:, :ho * p, :wo * p] = np.repeat(np.repeat(dy, p, axis=1), p, axis=2) / (p * p)
    return out


def shortcut(x: np.ndarray, stride: int, channels: int) -> np.ndarray:
    """Parameter-free residual shortcut ("option A" of He et al. 2016): subsample by `stride`
    and zero-pad the channels equally on both sides up to `channels`."""
    y = x[:, ::stride, ::stride, :]
    extra = channels - y.shape[-1]
    return np.pad(y, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


def shortcut_backward(dy: np.ndarray, shape: tuple, stride: int) -> np.ndarray:
    """Adjoint of `shortcut`."""
    c = shape[-1]
    lo = (dy.shape[-1] - c) // 2
    out = np.zeros(shape)
    out[:, ::stride, ::stride, :] = dy[..., lo:lo + c]
    return out


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy loss and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -logp[np.arange(n), y].mean()
    grad = np.exp(logp)
    grad[np.arange(n), y] -= 1.0
    return float(loss), grad / n

"""Hybrid training (Yao et al. 2020): keep the programmed convolution layers, train only the FC
layer in situ, with its updates applied as programming pulses to the FC devices.

Per mini-batch (default 100 images; 300 batches): the convolution outputs of the training
images come from the hardware (they do not change during hybrid training, so they are computed
once by the caller), the FC layer runs on the current FC conductances through the same engine,
the cross-entropy gradient of the FC weights is computed digitally, and the desired change of
each weight is accumulated in conductance units (dG = -lr dL/dW x g_unit / layer scale). Where
the accumulated |dG| exceeds `threshold` (reference: about 1.5 uS, unconfirmed), a pulse train
is applied to that pair, open loop through the pulse-update model with its noise: n =
clip(round(|dG| / nominal step), 1, max_pulses) pulses, ceil(n/2) to G+ and the rest to G-
(SET on G+ / RESET on G- for an increase, the opposite for a decrease, which keeps each pair
centred); the accumulator is reduced by the nominal change applied. The FC bias is digital and
updated by plain SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitnn.devices.pulse import PulseModel
from circuitnn.errors import CircuitnnError
from circuitnn.network import cnn
from circuitnn.network.engines import ChipEngine
from circuitnn.network.mapping import Mapping
from circuitnn.reference import REF
from circuitnn.training.transfer import update_pulses


@dataclass
class HybridConfig:
    """In-situ FC training settings."""

    batches: int = REF.hybrid.batches
    batch_size: int = REF.hybrid.batch_size
    lr: float = REF.choices.hybrid_lr
    threshold: float = REF.choices.hybrid_threshold  # S
    max_pulses: int = 16
    bias_lr: float = 0.05
    eval_every: int = 10

    def check(self) -> None:
        """Raise CircuitnnError on impossible values."""
        if self.batches < 1 or self.batch_size < 1 or self.max_pulses < 1:
            raise CircuitnnError("hybrid training needs batches, batch size and max pulses >= 1")
        if not self.lr > 0 or not self.threshold > 0 or self.bias_lr < 0:
            raise CircuitnnError("hybrid training needs lr > 0 and threshold > 0 S")


def fc_cells(mapping: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pe, row, col_plus, col_minus) index arrays of shape (192, 10) for every FC weight."""
    pe, row, cp = (np.full((192, 10), -1) for _ in range(3))
    for p in mapping.of("FC", 0):
        nr, nc = p.w_rows.stop - p.w_rows.start, p.w_cols.stop - p.w_cols.start
        rr, cc = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
        pe[p.w_rows, p.w_cols] = p.pe
        row[p.w_rows, p.w_cols] = p.rows.start + rr
        cp[p.w_rows, p.w_cols] = p.cols.start + 2 * cc
    if (pe < 0).any():
        raise CircuitnnError("mapping does not place every FC weight")
    return pe, row, cp, cp + 1


def train_fc(engine: ChipEngine, bias: np.ndarray, feats: np.ndarray, labels: np.ndarray,
             model: PulseModel, devices: dict[str, np.ndarray], stuck: np.ndarray,
             rng: np.random.Generator, config: HybridConfig | None = None,
             test_feats: np.ndarray | None = None, test_labels: np.ndarray | None = None,
             progress=None) -> tuple[np.ndarray, dict[str, list]]:
    """Train the FC devices of `engine.conductances` in place; returns (bias, history).

    feats: hardware FC inputs (N, 192) of the training images; devices/stuck: per-cell arrays
    of the chip's shape (from write-verify).
    """
    cfg = config or HybridConfig()
    cfg.check()
    if len(feats) != len(labels) or len(feats) == 0:
        raise CircuitnnError("hybrid training needs equal, non-zero numbers of features/labels")
    g = engine.conductances
    pe, row, cp, cm = fc_cells(engine.mapping)
    sub_dev = {k: (v[pe, row, cp], v[pe, row, cm]) for k, v in devices.items()}
    dev_p = {k: v[0] for k, v in sub_dev.items()}
    dev_m = {k: v[1] for k, v in sub_dev.items()}
    stuck_p, stuck_m = stuck[pe, row, cp], stuck[pe, row, cm]
    step = (model.g_max - model.g_min) / model.pmax_p  # nominal conductance change per pulse
    to_g = engine.g_unit / engine.weight_scales["FC"]
    acc = np.zeros((192, 10))
    bias = np.array(bias, float)
    hist: dict[str, list] = {"batch": [], "batch_acc": [], "loss": [], "pulses": [],
                             "test_batch": [], "test_acc": []}

    def test_acc() -> float:
        if test_feats is None or test_labels is None:
            return float("nan")
        return float(np.mean((engine("FC", test_feats) + bias).argmax(1) == test_labels))

    order = rng.permutation(len(feats))
    pos = 0
    for b in range(cfg.batches):
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(len(feats)), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        x = feats[idx]
        logits = engine("FC", x) + bias
        loss, dlogits = cnn.softmax_cross_entropy(logits, labels[idx])
        acc += -cfg.lr * (x.T @ dlogits) * to_g
        bias -= cfg.bias_lr * dlogits.sum(axis=0)
        fire = np.abs(acc) >= cfg.threshold
        n = np.where(fire, np.clip(np.rint(np.abs(acc) / step), 1, cfg.max_pulses), 0)
        sign = np.sign(acc).astype(np.int64)
        n_p = (np.ceil(n / 2)).astype(np.int64)
        n_m = n.astype(np.int64) - n_p
        gp, gm = g[pe, row, cp], g[pe, row, cm]
        g[pe, row, cp] = update_pulses(gp, sign * n_p, model, dev_p, stuck_p, rng)
        g[pe, row, cm] = update_pulses(gm, -sign * n_m, model, dev_m, stuck_m, rng)
        acc -= sign * n * step
        engine._eff.clear()  # the "ideal" engine caches effective weights
        hist["batch"].append(b + 1)
        hist["batch_acc"].append(float(np.mean(logits.argmax(1) == labels[idx])))
        hist["loss"].append(loss)
        hist["pulses"].append(int(n.sum()))
        if (b + 1) % cfg.eval_every == 0 or b == 0 or b + 1 == cfg.batches:
            hist["test_batch"].append(b + 1)
            hist["test_acc"].append(test_acc())
        if progress is not None:
            progress(1)
    return bias, hist


def plot_hybrid(histories: dict[str, dict[str, list]], path) -> None:
    """Accuracy per batch (training mini-batch, smoothed) and test accuracy during training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from circuitnn.io import save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, h), colour in zip(histories.items(), ("tab:blue", "tab:red"), strict=False):
        a = np.asarray(h["batch_acc"]) * 100
        k = min(10, len(a))
        smooth = np.convolve(a, np.ones(k) / k, mode="valid")
        ax.plot(h["batch"], a, color=colour, alpha=0.2, lw=0.6)
        ax.plot(h["batch"][k - 1:], smooth, color=colour, lw=1.2,
                label=f"{name}: training batch (10-batch mean)")
        ax.plot(h["test_batch"], np.asarray(h["test_acc"]) * 100, marker="o", color=colour,
                ms=2.5, lw=1, ls="--", label=f"{name}: test set")
    ax.set_xlabel("mini-batch (100 images)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("hybrid training: FC layer trained in situ by programming pulses", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)

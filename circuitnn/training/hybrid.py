"""Hybrid training (Yao et al. 2020): keep the programmed layers, train only the last (linear)
layer in situ, with its updates applied as programming pulses to that layer's devices.

Per mini-batch (default 100 images; 300 batches): the inputs of the last layer come from the
hardware (they do not change during hybrid training, so the caller computes them once), the last
layer runs on its current conductances through the same engine, the cross-entropy gradient of
its weights is computed digitally, and the desired change of each weight is accumulated in
conductance units (dG = -lr dL/dW x unit / layer scale). Where the accumulated |dG| exceeds
`threshold` (reference: about 1.5 uS, unconfirmed), and half the step one pulse makes on G+ at
its present conductance (the pulse model's mean step: a strongly nonlinear law, e.g. one derived
from a steep I-V card, moves a cell near one end of its window by tens of nominal steps, and
would otherwise overshoot every wish), a pulse train is applied to that pair, open loop through
the pulse-update model with its noise: n = clip(round(|dG| / mean of the G+ and G- steps), 1,
max_pulses) pulses, ceil(n/2) to G+ and the rest to G- (SET on G+ / RESET on G- for an increase,
the opposite for a decrease, which keeps each pair centred); the accumulator is reduced by the
train's expected change (the pulses on G+ and G- times their steps). The layer's bias is
digital and updated by plain SGD.

Speed: programming a circuit tile (the surrogate's per-tile matrices) costs far more than a
batch of reads, so the layer's tiles are re-programmed from the true conductances every
`refresh_every` batches (and before every test evaluation); in between, the forward pass adds the
conductance change since the last refresh as an ideal crossbar term, x @ (W(G) - W(G_refresh)).
`refresh_every=1` is the exact loop (every batch through the re-programmed circuit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitnn.devices.pulse import PulseModel
from circuitnn.errors import CircuitnnError
from circuitnn.network.engines import ChipState, build_engine
from circuitnn.network.layers import softmax_cross_entropy
from circuitnn.network.mapping import Mapping, effective_levels
from circuitnn.reference import REF
from circuitnn.training.transfer import update_pulses


@dataclass
class HybridConfig:
    """In-situ training settings of the last layer."""

    batches: int = REF.hybrid.batches
    batch_size: int = REF.hybrid.batch_size
    lr: float = REF.choices.hybrid_lr
    threshold: float = REF.choices.hybrid_threshold  # S
    max_pulses: int = 16
    bias_lr: float = 0.05
    eval_every: int = 10
    refresh_every: int = 10

    def check(self) -> None:
        """Raise CircuitnnError on impossible values."""
        if self.batches < 1 or self.batch_size < 1 or self.max_pulses < 1:
            raise CircuitnnError("hybrid training needs batches, batch size and max pulses >= 1")
        if not self.lr > 0 or not self.threshold > 0 or self.bias_lr < 0:
            raise CircuitnnError("hybrid training needs lr > 0 and threshold > 0 S")
        if self.eval_every < 1 or self.refresh_every < 1:
            raise CircuitnnError("hybrid eval_every and refresh_every must be >= 1")


def layer_cells(mapping: Mapping, layer: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tile, row, col_plus, col_minus) index arrays of the weight matrix's shape."""
    if mapping.groups[layer] != 1:
        raise CircuitnnError(f"hybrid training needs the last layer '{layer}' unreplicated")
    shape = mapping.shapes[layer]
    tile, row, cp = (np.full(shape, -1) for _ in range(3))
    for p in mapping.of(layer, 0):
        nr, nc = p.w_rows.stop - p.w_rows.start, p.w_cols.stop - p.w_cols.start
        rr, cc = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
        tile[p.w_rows, p.w_cols] = p.tile
        row[p.w_rows, p.w_cols] = p.rows.start + rr
        cp[p.w_rows, p.w_cols] = p.cols.start + 2 * cc
    if (tile < 0).any():
        raise CircuitnnError(f"mapping does not place every weight of '{layer}'")
    return tile, row, cp, cp + 1


def train_last_layer(chip: ChipState, engine: str, bias: np.ndarray, feats: np.ndarray,
                     labels: np.ndarray, model: PulseModel, devices: dict[str, np.ndarray],
                     stuck: np.ndarray, rng: np.random.Generator,
                     config: HybridConfig | None = None, test_feats: np.ndarray | None = None,
                     test_labels: np.ndarray | None = None, group: int | None = None,
                     tile_options: dict | None = None, progress=None
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, list]]:
    """Train the last layer's devices; returns (conductances after training, bias, history).

    feats: hardware inputs (N, F) of the last layer for the training images; model: the pulse
    model in the array's window; devices/stuck: per-cell arrays of the chip's shape (from
    write-verify). The chip's own conductances are not modified.
    """
    cfg = config or HybridConfig()
    cfg.check()
    if len(feats) != len(labels) or len(feats) == 0:
        raise CircuitnnError("hybrid training needs equal, non-zero numbers of features/labels")
    layer = chip.net.last_layer
    m = chip.mapping
    unit = chip.device.window.unit
    scale = chip.weight_scales[layer]
    g = chip.conductances.copy()
    g_ref = g.copy()  # what the circuit tiles are programmed with (refreshed periodically)
    eng = build_engine(chip.with_conductances(g_ref), engine, group=group,
                       tile_options=tile_options)
    w_ref = effective_levels(m, g_ref, layer, 0, unit) * scale
    tile, row, cp, cm = layer_cells(m, layer)
    dev_p = {k: v[tile, row, cp] for k, v in devices.items()}
    dev_m = {k: v[tile, row, cm] for k, v in devices.items()}
    stuck_p, stuck_m = stuck[tile, row, cp], stuck[tile, row, cm]
    nominal = (model.g_max - model.g_min) / model.pmax_p  # mean conductance change per pulse
    to_g = unit / scale
    acc = np.zeros(m.shapes[layer])
    bias = np.array(bias, float)
    hist: dict[str, list] = {"batch": [], "batch_acc": [], "loss": [], "pulses": [],
                             "test_batch": [], "test_acc": []}

    def refresh() -> None:
        nonlocal w_ref
        g_ref[...] = g
        w_ref = effective_levels(m, g_ref, layer, 0, unit) * scale

    def forward(x: np.ndarray) -> np.ndarray:
        delta = effective_levels(m, g, layer, 0, unit) * scale - w_ref
        return eng(layer, x) + x @ delta + bias

    order = rng.permutation(len(feats))
    pos = 0
    for b in range(cfg.batches):
        if b % cfg.refresh_every == 0:
            refresh()
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(len(feats)), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        x = feats[idx]
        logits = forward(x)
        loss, dlogits = softmax_cross_entropy(logits, labels[idx])
        acc += -cfg.lr * (x.T @ dlogits) * to_g
        bias -= cfg.bias_lr * dlogits.sum(axis=0)
        sign = np.sign(acc).astype(np.int64)
        # expected change of one pulse at the cells' present conductances: on G+ (a train's
        # first pulse) and on G- in the opposite direction
        step_p = np.abs(model.mean_step(g[tile, row, cp], sign, dev_p))
        step_m = np.abs(model.mean_step(g[tile, row, cm], -sign, dev_m))
        step_p, step_m = (np.where(a > 0, a, nominal) for a in (step_p, step_m))
        fire = np.abs(acc) >= np.maximum(cfg.threshold, 0.5 * step_p)
        n = np.where(fire, np.clip(np.rint(2 * np.abs(acc) / (step_p + step_m)), 1,
                                   cfg.max_pulses), 0)
        n_p = np.ceil(n / 2).astype(np.int64)
        n_m = n.astype(np.int64) - n_p
        g[tile, row, cp] = update_pulses(g[tile, row, cp], sign * n_p, model, dev_p, stuck_p, rng)
        g[tile, row, cm] = update_pulses(g[tile, row, cm], -sign * n_m, model, dev_m, stuck_m,
                                         rng)
        acc -= sign * (n_p * step_p + n_m * step_m)
        hist["batch"].append(b + 1)
        hist["batch_acc"].append(float(np.mean(logits.argmax(1) == labels[idx])))
        hist["loss"].append(loss)
        hist["pulses"].append(int(n.sum()))
        if ((b + 1) % cfg.eval_every == 0 or b == 0 or b + 1 == cfg.batches) and (
                test_feats is not None and test_labels is not None):
            refresh()
            hist["test_batch"].append(b + 1)
            hist["test_acc"].append(float(np.mean(forward(test_feats).argmax(1)
                                                  == test_labels)))
        if progress is not None:
            progress(1)
    return g, bias, hist


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

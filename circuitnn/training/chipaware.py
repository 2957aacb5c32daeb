"""Ex-situ training that knows the chip (`--exsitu chip`): the forward pass of training runs
through the chip's own arithmetic, the backward pass straight through its quantisers.

Forward, every weight product of every step (`ChipModel.product`), computed by the network
engine that inference uses (`circuitnn.network.engines.ChipEngine`: one definition of the input
codes, bit-serial slots, ADC and shift-and-add, from `circuitnn.periphery`):

- the current float weights quantised to 15 levels by the quantise stage's rule
  (`circuitnn.network.quantise`) and mapped onto the conductances of the device's window, on the
  run's tiles (`target_conductances`); optionally with the programming error that write-verify
  leaves: each used cell off its target by a uniform draw within +-tolerance, new every step;
- every layer input as 8-bit codes (the activation steps re-calibrated on training images at
  every refresh) applied bit-serially, every slot digitised by the ADC, shift-and-add;
- engine "surrogate": every 1-bit read of a block through its tile's surrogate (IR drop, the
  access transistor, the device's I-V), *linearised*: every `refresh_every` steps the tiles are
  programmed with the weights of that step (the surrogate's exact per-tile matrices) and, with
  column calibration, the columns' gains are re-measured through them; in between, the
  conductance change since that refresh is read as an ideal crossbar, V @ (G - G_ref), added to
  the surrogate's first-order term (as hybrid training does, `training/hybrid.py`). At a refresh
  the forward is exactly the chip engine's inference on the target conductances;
- engine "quantised": the same with ideal crossbar reads; "ideal": quantised weights only.

Backward: straight through. The gradient of each product is that of the software product X @ W
with the float inputs and weights (`graph.backward` in numpy; in PyTorch the chip's output is
added to the software product as a constant, y + (y_chip - y).detach()), so the rounding of the
weights, the input codes and the ADC codes passes gradients unchanged, while the loss, every
activation and every ReLU and pooling decision are the chip's.

Batch normalisation is folded into the weights before chip-aware training (the chip holds folded
weights), so the network trains with its statistics frozen: chip-aware training fine-tunes a
trained float network (`train_on_chip`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.network import quantise
from circuitnn.network.device import ArrayDevice
from circuitnn.network.engines import (
    ChipEngine,
    ChipState,
    build_engine,
    calibrate_activation_scales,
    calibrate_columns,
    layer_inputs,
)
from circuitnn.network.graph import Network
from circuitnn.network.mapping import Mapping, target_conductances
from circuitnn.reference import REF
from circuitnn.surrogate.model import stack_blocks
from circuitnn.training.exsitu import TrainConfig, TrainResult, train

#: engines whose arithmetic chip-aware training can run (the circuit solvers are far too slow)
CHIP_ENGINES = ("ideal", "quantised", "surrogate")
ACT_IMAGES = 200  # training images that calibrate the activation steps (as the quantise stage)
COLUMN_IMAGES = 8  # training images that calibrate the columns (as the calibrate stage)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def check_chip_training(network: str, engine: str, device: ArrayDevice | None = None) -> None:
    """Raise CircuitnnError when the chip model cannot train `network` on `engine` and `device`
    (checked before any stage)."""
    if engine not in CHIP_ENGINES:
        raise CircuitnnError(f"--exsitu chip cannot train through engine '{engine}' (circuit "
                             f"solves per read are too slow): use one of "
                             f"{', '.join(CHIP_ENGINES)} (surrogate: the fitted model of the "
                             "same circuit)")
    if network != "cnn5" and not torch_available():
        raise CircuitnnError(f"--exsitu chip for {network} needs PyTorch: pip install "
                             "'circuitnn[torch]' (without it, chip-aware training runs in numpy "
                             "for cnn5 only)")
    if device is not None and device.window.levels - 1 < quantise.WEIGHT_LEVELS:
        raise CircuitnnError(f"--exsitu chip: the device's {device.window.levels} states per "
                             f"cell cannot hold the {2 * quantise.WEIGHT_LEVELS + 1} weight "
                             f"levels (need >= {quantise.WEIGHT_LEVELS + 1} states)")


@dataclass
class LinearisedEngine(ChipEngine):
    """A chip engine whose surrogate reads are those of the tiles programmed with `reference`
    conductances plus an ideal-crossbar read of the change since (see the module docstring)."""

    reference: np.ndarray | None = None

    def _block_matrix(self, blocks):
        if self.engine != "surrogate" or self.reference is None or self.counter is not None:
            return super()._block_matrix(blocks)
        c, vr = self.chip, self.v_read
        parts = [self.circuit.surrogate_block(self.reference[p.tile], p) for p in blocks]
        m, zero = stack_blocks(parts, scale=vr, dtype=np.float64)
        ref = np.hstack([self.reference[p.tile, p.rows, p.cols] for p in blocks])
        delta = np.hstack([c.conductances[p.tile, p.rows, p.cols] for p in blocks]) - ref
        n = delta.shape[1]
        m[:, :n] += delta * (m[:, :n] / ref)  # the change, attenuated as its cell's read
        return np.ascontiguousarray(m, dtype=self.dtype), zero


class ChipModel:
    """The chip a network is trained for: its mapping, device, engine and periphery.

    `product(params)` is the weight product of one training step (a `graph.forward` matmul);
    every `refresh_every` calls it first refreshes the activation steps, the programmed surrogate
    tiles and the column calibration from the parameters of that step."""

    def __init__(self, net: Network, mapping: Mapping, device: ArrayDevice, images: np.ndarray,
                 engine: str = "surrogate", *, adc_bits: int | None = REF.hardware.adc_bits,
                 adc_fraction: float = REF.choices.adc_fraction, calibrate: bool = False,
                 tile_options: dict[str, Any] | None = None, refresh_every: int = 200,
                 noise: float = 0.0, seed: int = 0) -> None:
        check_chip_training("cnn5", engine, device)  # the backend is checked by the trainer
        if refresh_every < 1 or noise < 0:
            raise CircuitnnError("refresh_every must be >= 1 and the programming noise >= 0")
        self.net, self.mapping, self.device, self.engine = net, mapping, device, engine
        self.images = np.asarray(images)[:ACT_IMAGES]
        self.adc_bits, self.adc_fraction, self.calibrate = adc_bits, adc_fraction, calibrate
        self.tile_options = tile_options or None
        self.refresh_every, self.noise = refresh_every, noise
        self.rng = np.random.default_rng([seed, 27])
        self.used = mapping.used_cells()
        self.steps = self.refreshes = 0
        self.refresh_seconds = 0.0
        self.act_scales: dict[str, float] = {}
        self.gains: dict[str, np.ndarray] | None = None
        self.reference: np.ndarray | None = None
        self.circuit = None

    def _state(self, params: dict[str, np.ndarray], noise: bool
               ) -> tuple[ChipState, dict[str, np.ndarray]]:
        levels, scales = quantise.quantise_params(self.net, params)
        g = target_conductances(self.mapping, levels, self.device.window)
        if noise and self.noise > 0:
            g += self.rng.uniform(-self.noise, self.noise, g.shape) * self.used
        return ChipState(self.net, self.mapping, g, scales, self.act_scales, self.device,
                         self.adc_bits, self.adc_fraction, self.gains), levels

    def refresh(self, params: dict[str, np.ndarray]) -> None:
        """Re-calibrate the activation steps, re-program the tiles (surrogate) with the current
        weights and re-measure the column gains (with `calibrate`)."""
        t0 = time.perf_counter()
        self.act_scales = calibrate_activation_scales(self.net, params, self.images)
        self.gains = None
        chip, levels = self._state(params, noise=False)
        self.reference = chip.conductances
        eng = build_engine(chip, self.engine, tile_options=self.tile_options)
        if self.engine == "surrogate":  # program every tile now (else the next step would)
            for tile in sorted({p.tile for p in self.mapping.placements}):
                eng.circuit.surrogate_reader(eng.tile_conductances(tile))
        if self.calibrate and self.engine != "ideal":
            inputs = layer_inputs(self.net, params, self.images[:COLUMN_IMAGES])
            self.gains = calibrate_columns(eng, levels, inputs)[0]
        self.circuit = eng.circuit
        self.refreshes += 1
        self.refresh_seconds += time.perf_counter() - t0

    def product(self, params: dict[str, np.ndarray]) -> LinearisedEngine:
        """The chip's `matmul(layer, X, W)` for a training step with these parameters."""
        if self.steps % self.refresh_every == 0:
            self.refresh(params)
        self.steps += 1
        chip, _ = self._state(params, noise=True)
        eng = build_engine(chip, self.engine, tile_options=self.tile_options,
                           circuit=self.circuit)
        fields = {f.name: getattr(eng, f.name) for f in dataclasses.fields(ChipEngine)}
        return LinearisedEngine(**fields, reference=self.reference)


@dataclass
class ChipTrainConfig:
    """Hyper-parameters of chip-aware fine-tuning (Adam, learning rate x 0.3 at every new
    epoch; `backend` "auto" = PyTorch where installed, else numpy)."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 5e-4
    max_shift: int = 2
    seed: int = 0
    backend: str = "auto"


def train_on_chip(net: Network, params: dict[str, np.ndarray], x_train: np.ndarray,
                  y_train: np.ndarray, chip: ChipModel, config: ChipTrainConfig | None = None,
                  progress: bool = True) -> tuple[TrainResult, str]:
    """Fine-tune the parameters of a network without batch normalisation (fold it first) with
    every forward pass through `chip`; returns the result and the backend used."""
    cfg = config or ChipTrainConfig()
    if any(n.op == "batchnorm" for n in net.nodes):
        raise CircuitnnError("fold batch normalisation into the weights before chip-aware "
                             "training (graph.fold_batchnorm)")
    backend = cfg.backend
    if backend == "auto":
        backend = "torch" if torch_available() else "numpy"
    if backend not in ("numpy", "torch"):
        raise CircuitnnError(f"backend must be auto, numpy or torch, got '{cfg.backend}'")
    if backend == "torch":
        from circuitnn.training.torch_train import TorchTrainConfig, train_torch

        tcfg = TorchTrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                weight_decay=0.0, max_shift=cfg.max_shift, seed=cfg.seed,
                                optimizer="adam")
        res = train_torch(net, x_train, y_train, tcfg, params=params, product=chip.product,
                          progress=progress)
    else:
        ncfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           lr_decay_every=1, lr_decay=0.3, weight_decay=0.0,
                           max_shift=cfg.max_shift, seed=cfg.seed)
        res = train(net, x_train, y_train, ncfg, params=params, product=chip.product,
                    progress=progress, desc="chip-aware training")
    res.history["refreshes"] = chip.refreshes
    return res, backend

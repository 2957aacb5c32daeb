"""The accuracy question for any network, as checkpointed stages (`circuitnn network run`, and
the reference system's `circuitnn mcnn run` on top of it).

    device -> data -> exsitu -> quantise -> mapping -> transfer -> eval_transfer -> hybrid
           -> eval_hybrid -> energy

The device stage comes first, so that everything that can refuse the device (its cards, its
window, a surrogate that fails validation against ngspice) does so before any long stage.

Each stage is a function with typed inputs and a dataclass output (`circuitnn.training.stages`
saves, keys and resumes them). Every option is checked by `RunConfig.check` before any stage
starts. Hardware modes: each run evaluates and hybrid-trains one or more ways of using the
replicated layers, `modes` = {name: group}: group None = every replica computes its band of
output rows (the replicated system), g = replica g alone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from circuitnn.devices import DEVICE_MODELS_DIR
from circuitnn.devices.choice import OperatingChoice
from circuitnn.errors import CircuitnnError
from circuitnn.io import write_text
from circuitnn.network import graph, quantise
from circuitnn.network.data import Dataset, check_dataset_spec, load_dataset
from circuitnn.network.device import VARIATION_KEYS, ArrayDevice, array_device, check_variation
from circuitnn.network.energy import EnergyCounter, summarise
from circuitnn.network.engines import (
    ChipState,
    build_engine,
    calibrate_activation_scales,
    calibrate_columns,
    layer_inputs,
)
from circuitnn.network.graph import Network
from circuitnn.network.mapping import (
    Mapping,
    auto_map,
    describe_mapping,
    plot_mapping,
    reference_map,
    target_conductances,
)
from circuitnn.network.presets import PRESETS, preset
from circuitnn.reference import REF
from circuitnn.surrogate.read import check_engine
from circuitnn.tile.spec import TileSpec
from circuitnn.tile.verify import verify_reads
from circuitnn.training import exsitu
from circuitnn.training.chipaware import (
    ChipModel,
    ChipTrainConfig,
    check_chip_training,
    train_on_chip,
)
from circuitnn.training.hybrid import HybridConfig, plot_hybrid, train_last_layer
from circuitnn.training.stages import Stage, StageLog, run_stages
from circuitnn.training.transfer import (
    ProgramConfig,
    plot_transfer,
    program_config,
    write_verify,
)

TILE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TileSpec)}
N_CLASSES = 10  # every supported dataset (MNIST, IDX digits, CIFAR-10) has 10 classes
STAGES = ("device", "data", "exsitu", "quantise", "mapping", "transfer", "eval_transfer", "hybrid",
          "eval_hybrid", "energy", "calibrate")  # (index = seed of a stage's random numbers)
CALIBRATION_IMAGES = 8  # training images whose layer inputs calibrate the columns
WEIGHTS_FILE = "weights.npz"  # the run's trained (folded) parameters, for --weights


@dataclass
class RunConfig:
    """Every option of a run (defaults: cnn5 on the embedded 5k MNIST split)."""

    network: str = "cnn5"
    dataset: str = "mnist5k"
    seed: int = 0
    n_test_split: int = 1000  # test images split from the 5k subset
    train_images: int | None = None  # use a seeded random subset of N training images
    test_images: int | None = None
    weights: str | None = None  # NPZ of trained parameters; None: shipped if any, else train
    epochs: int | None = None  # of float training (None: 30 numpy cnn5 / 15 PyTorch) and of
    #                            chip-aware fine-tuning (None: 2)
    exsitu: str = "float"  # "float" or "chip" (`circuitnn.training.chipaware`)
    exsitu_images: int | None = None  # chip: fine-tune on a seeded subset of N training images
    exsitu_noise: bool = False  # chip: programming error (uniform within +-tolerance) in training
    replicate_first: int = 1
    mapping: str = "auto"  # "auto" (first-fit on tiles) or "reference" (cnn5 on eight PEs)
    modes: dict[str, int | None] = field(default_factory=lambda: {"all": None})
    hybrid_fraction: float | None = None  # None: 0.03 for the ResNets, cnn5 see hybrid_images
    engine: str = "surrogate"
    iv_card: str | None = None
    accept_read_error: bool = False  # use an I-V card off from its data at v_read anyway
    pulse_card: str | None = None
    g_min: float | None = None  # S; None: the device's window (module circuitnn.network.device)
    g_max: float | None = None
    v_read: float | None = None  # V; None: the I-V card's safe read voltage
    # the operating point (circuitnn.devices.choice): None = what the card carries, else the
    # rules; "rule": the rules; "search": chosen by circuitnn.search, which sets `choice`
    operating_point: str | None = None
    gate_set: float | None = None  # V, SET word line; None: the operating point's
    amplitude_reset: float | None = None  # V; None: the operating point's
    tolerance_rel: float | None = None  # of the level spacing; None: the operating point's
    scheme: str | None = None  # "fixed" or "incremental"; None: the operating point's
    choice: dict | None = None  # an operating point as JSON (source, settings, candidates)
    chip_seed: int = 0  # seed of the chip drawn by transfer (programming noise, stuck cells)
    pair_compensation: bool = True  # re-target the partner of a cell that ends off its target
    device_levels: int = REF.hardware.device_levels
    tolerance: float | None = None  # S, absolute write-verify tolerance; overrides tolerance_rel
    max_pulses: int = REF.choices.max_pulses
    variation_scale: float = 1.0  # multiplies the device-to-device spreads
    # what differs between cells and reads (`circuitnn.network.device.device_variation`);
    # None: the device's own (measured spread, the preset's stuck cells, the card's read noise)
    device_spread: float | None = None
    read_noise: float | None = None
    stuck_low: float | None = None
    stuck_high: float | None = None
    adc_bits: int = REF.hardware.adc_bits
    adc_fraction: float = REF.choices.adc_fraction
    hybrid_batches: int = REF.hybrid.batches
    hybrid_batch_size: int = REF.hybrid.batch_size
    hybrid_lr: float = REF.choices.hybrid_lr
    hybrid_threshold: float = REF.choices.hybrid_threshold
    refresh_every: int = 10
    n_energy: int = 20
    tile_options: dict[str, Any] = field(default_factory=dict)
    calibrate_columns: bool = True  # per-column digital gain/offset after transfer

    def check(self, device: bool = True) -> None:
        """Raise CircuitnnError for options that cannot work (fast: before any stage);
        `device`: also load and check the cards, read voltage and window (the search checks its
        candidates itself)."""
        if self.network not in PRESETS:
            raise CircuitnnError(f"unknown network '{self.network}' (choose from "
                                 f"{', '.join(PRESETS)})")
        check_dataset_spec(self.dataset)
        if not check_engine(self.engine).chain:
            raise CircuitnnError(f"engine '{self.engine}' is too slow for the whole chain; use "
                                 "it for spot checks (mcnn run --n-check, Chip.predict)")
        if self.mapping not in ("auto", "reference"):
            raise CircuitnnError(f"mapping must be 'auto' or 'reference', got {self.mapping}")
        if self.chip_seed < 0:
            raise CircuitnnError(f"--chip-seed must be >= 0, got {self.chip_seed}")
        if self.mapping == "reference" and self.network != "cnn5":
            raise CircuitnnError("the reference placement exists for cnn5 only")
        if not isinstance(self.replicate_first, int) or not 1 <= self.replicate_first <= 64:
            raise CircuitnnError(f"--replicate-first must be 1..64, got {self.replicate_first}")
        if self.hybrid_fraction is not None and not 0 < self.hybrid_fraction <= 1:
            raise CircuitnnError(f"--hybrid-fraction must be in (0, 1], got "
                                 f"{self.hybrid_fraction}")
        if self.epochs is not None and self.epochs < 1:
            raise CircuitnnError(f"--epochs must be >= 1, got {self.epochs}")
        if self.exsitu not in ("float", "chip"):
            raise CircuitnnError(f"--exsitu must be 'float' or 'chip', got '{self.exsitu}'")
        if self.exsitu == "chip":
            check_chip_training(self.network, self.engine)  # the device: below
        if self.exsitu_images is not None and self.exsitu_images < 10:
            raise CircuitnnError(f"--exsitu-images must be >= 10, got {self.exsitu_images}")
        if not 1 <= self.adc_bits <= 16:
            raise CircuitnnError(f"--adc-bits must be 1..16, got {self.adc_bits}")
        if not 0 < self.adc_fraction <= 1:
            raise CircuitnnError(f"adc_fraction must be in (0, 1], got {self.adc_fraction}")
        if self.n_energy < 1:
            raise CircuitnnError("n_energy must be >= 1")
        for name in ("train_images", "test_images"):
            v = getattr(self, name)
            if v is not None and v < 10:
                raise CircuitnnError(f"--{name.replace('_', '-')} must be >= 10, got {v}")
        if self.weights is not None:
            check_weights(self.weights, self.network, self.dataset)
        if not isinstance(self.tile_options, dict):
            raise CircuitnnError("tile options must be a JSON object")
        if (self.g_min is None) != (self.g_max is None):
            raise CircuitnnError("give both --g-min and --g-max, or neither (the device's window)")
        if self.operating_point not in (None, "rule", "search"):
            raise CircuitnnError(f"--operating-point must be 'rule' or 'search', got "
                                 f"{self.operating_point!r}")
        if device and self.operating_point == "search" and self.choice is None:
            raise CircuitnnError("the operating-point search runs above the chain (the search "
                                 "layer's run_searched); or use --operating-point rule")
        ProgramConfig(1.0 if self.tolerance is None else self.tolerance, self.max_pulses,
                      variation_scale=self.variation_scale).check()
        check_variation(self.variation())
        self.hybrid().check()
        if device:
            dev = self.device()  # loads and checks the cards, the read voltage and the window
            if self.exsitu == "chip":
                check_chip_training(self.network, self.engine, dev)

    def variation(self) -> dict[str, float | None]:
        """The variation options as `circuitnn.network.device.array_device` takes them."""
        return {k: getattr(self, k) for k in VARIATION_KEYS}

    def device(self) -> ArrayDevice:
        window = None if self.g_min is None else (self.g_min, self.g_max)
        if self.choice is not None:
            chosen = OperatingChoice.from_json(self.choice)
            dev = array_device(self.iv_card, self.pulse_card, levels=self.device_levels,
                               choice=chosen, accept_read_error=self.accept_read_error,
                               variation=self.variation())
            dev.summary["operating_point"] = dict(self.choice)
        else:
            settings = {k: getattr(self, k) for k in (
                "gate_set", "amplitude_reset", "tolerance_rel", "scheme")}
            dev = array_device(self.iv_card, self.pulse_card, window, self.v_read,
                               self.device_levels, self.operating_point, settings,
                               accept_read_error=self.accept_read_error,
                               variation=self.variation())
        if self.tolerance is not None:
            rel = self.tolerance / dev.window.unit
            choice = dataclasses.replace(dev.choice, tolerance_rel=rel, source="given")
            dev.summary["operating_point"].update(tolerance_rel=rel, source="given")
            dev = dataclasses.replace(dev, choice=choice)
        return dev

    def hybrid(self) -> HybridConfig:
        every = max(self.refresh_every, self.hybrid_batches // 30 // self.refresh_every
                    * self.refresh_every)
        return HybridConfig(batches=self.hybrid_batches, batch_size=self.hybrid_batch_size,
                            lr=self.hybrid_lr, threshold=self.hybrid_threshold,
                            eval_every=every, refresh_every=self.refresh_every)


# ----------------------------------------------------------------------------- stage results
@dataclass
class DeviceInfo:
    device: dict  # the report's `device` entry
    surrogate: dict  # the report's `surrogate` entry


@dataclass
class DataInfo:
    info: dict


@dataclass
class Trained:
    network: dict  # the network description (batch normalisation folded)
    params: dict[str, np.ndarray]
    source: str
    software_test_accuracy: float
    software_train_accuracy: float
    history: dict
    exsitu: str = "float"
    train_seconds: dict = field(default_factory=dict)  # {"float": s, "chip": s} trained here
    float_software_test_accuracy: float | None = None  # of the float weights chip training took


@dataclass
class Quantised:
    levels: dict[str, np.ndarray]
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    quantized_weights_only_test_accuracy: float
    quantized_test_accuracy: float


@dataclass
class Mapped:
    mapping: dict
    target: np.ndarray
    tiles: int
    utilisation: float
    summary: dict


@dataclass
class Transferred:
    conductance: np.ndarray
    pulses: np.ndarray
    stuck: np.ndarray
    converged: np.ndarray
    devices: dict[str, np.ndarray]
    report: dict


@dataclass
class Calibration:
    """Per-column digital gains and offsets of the programmed chip (empty: not calibrated)."""

    gains: dict[str, np.ndarray]
    report: dict


@dataclass
class Features:
    """Last-layer inputs through the hardware, per mode; accuracies after transfer."""

    train_idx: np.ndarray
    feats: dict[str, np.ndarray]  # "<mode>/train", "<mode>/test", "group<g>/test"
    accuracy: dict


@dataclass
class Hybrid:
    conductances: dict[str, np.ndarray]  # per mode
    bias: dict[str, np.ndarray]
    history: dict
    config: dict


@dataclass
class Evaluated:
    accuracy: dict


@dataclass
class Energy:
    energy: dict


# ----------------------------------------------------------------------------- context
class Context:
    """A run's configuration, output folder, stage log and lazily loaded data and device."""

    def __init__(self, cfg: RunConfig, out: Path, progress: bool) -> None:
        self.cfg, self.out, self.progress = cfg, out, progress
        self.log = StageLog()
        self._data: Dataset | None = None
        self._device: ArrayDevice | None = None
        self._circuit = None  # the circuit reads shared by this run's engines

    def __getitem__(self, stage: str) -> Any:
        return self.log.results[stage]

    @property
    def data(self) -> Dataset:
        if self._data is None:
            c = self.cfg
            d = load_dataset(c.dataset, c.n_test_split, c.seed)
            rng = np.random.default_rng([c.seed, 1000])
            if c.train_images and c.train_images < len(d.y_train):  # a seeded random subset
                i = np.sort(rng.permutation(len(d.y_train))[:c.train_images])
                d.x_train, d.y_train = d.x_train[i], d.y_train[i]
            if c.test_images and c.test_images < len(d.y_test):
                i = np.sort(rng.permutation(len(d.y_test))[:c.test_images])
                d.x_test, d.y_test = d.x_test[i], d.y_test[i]
            self._data = d
        return self._data

    @property
    def device(self) -> ArrayDevice:
        if self._device is None:
            self._device = self.cfg.device()
        return self._device

    def bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

    def rng(self, stage: str) -> np.random.Generator:
        """The stage's random numbers; the transfer's also by chip (`chip_seed`)."""
        key = [self.cfg.seed, STAGES.index(stage)]
        if stage == "transfer" and self.cfg.chip_seed:
            key.append(self.cfg.chip_seed)
        return np.random.default_rng(key)

    def net(self) -> Network:
        return Network.from_dict(self["exsitu"].network)

    def chip(self, conductances: np.ndarray | None = None) -> ChipState:
        q, m = self["quantise"], Mapping.from_dict(self["mapping"].mapping)
        g = self["transfer"].conductance if conductances is None else conductances
        gains = self.log.results["calibrate"].gains if "calibrate" in self.log.results else {}
        return ChipState(self.net(), m, g, q.weight_scales, q.act_scales, self.device,
                         self.cfg.adc_bits, self.cfg.adc_fraction, gains or None)

    def engine(self, chip: ChipState, group: int | None, **kw: Any):
        """An engine of the run's kind; circuit engines share one set of programmed tiles."""
        eng = build_engine(chip, self.cfg.engine, group=group,
                           tile_options=self.cfg.tile_options or None, circuit=self._circuit,
                           **kw)
        self._circuit = eng.circuit
        return eng


# ----------------------------------------------------------------------------- stages
def device_surrogate(dev: ArrayDevice, tile_options: dict[str, Any] | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """`tile_surrogate` of the device over its read range."""
    return tile_surrogate(dev.tile_card, dev.v_read, dev.read_range,
                          Path(dev.summary["iv_card"]["path"]).name, tile_options, progress)


def tile_surrogate(card: Any, v_read: float, read_range: tuple[float, float], name: str,
                   tile_options: dict[str, Any] | None = None, progress: bool = True
                   ) -> dict[str, Any]:
    """{card_sha256, calibrated, validation} of the surrogate card that covers the PEs of a
    device (I-V card `card` read at v_read) over `read_range` (S): shipped, cached, or
    calibrated now and validated against ngspice (refused above 1% RMS error;
    `circuitnn.surrogate.auto.surrogate_for`)."""
    from circuitnn.surrogate.auto import surrogate_for

    opts = dict(tile_options or {})
    r = [float(opts.pop(k, TILE_DEFAULTS[k])) for k in ("r_row", "r_col")]
    _, info = surrogate_for(card, REF.hardware.pe_rows, REF.hardware.pe_cols, (min(r), max(r)),
                            read_range, v_read, opts, name, progress=progress)
    return {k: info[k] for k in ("card_sha256", "calibrated", "validation")}


def stage_device(ctx: Context) -> DeviceInfo:
    """The device summary and, for the surrogate engine, the surrogate card that covers the
    device's tiles: shipped, cached, or calibrated now and validated against ngspice (refused
    above 1% RMS error; `circuitnn.surrogate.auto.surrogate_for`)."""
    dev, c = ctx.device, ctx.cfg
    surrogate: dict[str, Any] = {"card_sha256": None, "calibrated": False, "validation": None,
                                 "used": c.engine == "surrogate"}
    if c.engine == "surrogate" and dev.tile_card is not None:
        surrogate.update(device_surrogate(dev, c.tile_options, ctx.progress))
    if dev.tile_card is not None:
        from circuitnn.devices.figure import device_figure

        iv, pulses = dev.summary["iv_card"], dev.summary["pulse"].get("pulses")
        drive = None if not pulses else tuple(
            next(p["amplitude"] for p in pulses.values() if p["kind"] == kind)
            for kind in ("set", "reset"))
        device_figure(dev.tile_card, dev.thresholds, dev.v_read,
                      (dev.window.g_min, dev.window.g_max), dev.pulse_model,
                      f"device: {Path(iv['path']).name} ({iv['model']}), pulse law "
                      f"{dev.summary['pulse']['source']}", ctx.out / "device.png", drive)
    return DeviceInfo(dict(dev.summary), surrogate)


def stage_data(ctx: Context) -> DataInfo:
    d = ctx.data
    info = dict(d.info)
    info.update({"n_train": int(len(d.y_train)), "n_test": int(len(d.y_test)),
                 "image_shape": list(d.x_train.shape[1:])})
    return DataInfo(info)


def shipped_weights(network: str, dataset: str) -> Path | None:
    """The shipped trained parameters of a preset on a standard dataset (see
    device_models/weights.md), or None."""
    kind = dataset.partition(":")[0]
    if kind not in ("mnist", "cifar10"):
        return None
    path = DEVICE_MODELS_DIR / f"weights-{network}-{kind}.npz"
    return path if path.is_file() else None


def check_weights(path: str, network: str, dataset: str) -> None:
    """Raise CircuitnnError unless `path` holds parameters of the preset `network` for the
    images of `dataset` (checked before any stage)."""
    if not Path(path).is_file():
        raise CircuitnnError(f"weights file not found: {path}")
    shape = (32, 32, 3) if dataset.partition(":")[0] == "cifar10" else (28, 28, 1)
    try:
        load_weights(path, preset(network, shape, N_CLASSES))
    except CircuitnnError as exc:
        raise CircuitnnError(f"weights {Path(path).name} are not {network}'s: {exc}") from None


def load_weights(path: str | Path, net: Network) -> tuple[Network, dict[str, np.ndarray]]:
    """The network with batch normalisation folded and its parameters, from a file of either
    the preset's parameters (`exsitu.save_params`; batch normalisation statistics included)
    or its folded form (a run's weights.npz)."""
    arrays = exsitu.read_params(path)
    if set(net.param_shapes()) <= set(arrays):
        return graph.fold_batchnorm(net, exsitu.params_of(net, arrays))
    folded = graph.fold_batchnorm(net, net.init_params())[0]
    return folded, exsitu.params_of(folded, arrays)


def stage_exsitu(ctx: Context) -> Trained:
    """The float network: weights given, shipped, or trained here (numpy for cnn5, PyTorch for
    the others); batch normalisation folded. With `exsitu` "chip", then fine-tuned with every
    forward pass through the run's chip (`circuitnn.training.chipaware`)."""
    c, d = ctx.cfg, ctx.data
    shape = d.x_train.shape[1:] if d.x_train.ndim == 4 else d.x_train.shape[1:] + (1,)
    net = preset(c.network, shape, N_CLASSES)
    path = Path(c.weights) if c.weights else shipped_weights(c.network, c.dataset)
    history: dict = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if path is not None:
        (folded, fparams), source = load_weights(path, net), f"weights file {path.name}"
    else:
        if c.network == "cnn5":
            res = exsitu.train(net, d.x_train, d.y_train,
                               exsitu.TrainConfig(epochs=c.epochs or 30, seed=c.seed),
                               progress=ctx.progress)
            source = "trained ex situ (numpy)"
        else:
            from circuitnn.training.torch_train import TorchTrainConfig, train_torch

            res = train_torch(net, d.x_train, d.y_train,
                              TorchTrainConfig(epochs=c.epochs or 15, seed=c.seed),
                              progress=ctx.progress)
            source = "trained ex situ (PyTorch)"
        history, seconds["float"] = res.history, time.perf_counter() - t0
        folded, fparams = graph.fold_batchnorm(net, res.params)
    float_acc = graph.accuracy(folded, fparams, d.x_test, d.y_test)
    if c.exsitu == "chip":
        fparams, history, how, seconds["chip"] = _train_on_chip(ctx, folded, fparams, history)
        source += f"; {how}"
    exsitu.save_params(ctx.out / WEIGHTS_FILE, folded, fparams)
    n_acc = min(len(d.y_train), 10000 if c.network == "cnn5" else 1000)  # numpy float cost
    return Trained(folded.to_dict(), fparams, source,
                   graph.accuracy(folded, fparams, d.x_test, d.y_test),
                   graph.accuracy(folded, fparams, d.x_train[:n_acc], d.y_train[:n_acc]),
                   history, c.exsitu, seconds, float_acc)


def _train_on_chip(ctx: Context, net: Network, params: dict[str, np.ndarray], history: dict
                   ) -> tuple[dict[str, np.ndarray], dict, str, float]:
    """Chip-aware fine-tuning of the folded float network: (params, history, how, seconds)."""
    c, d = ctx.cfg, ctx.data
    x, y = d.x_train, d.y_train
    if c.exsitu_images and c.exsitu_images < len(y):
        i = np.sort(ctx.rng("exsitu").permutation(len(y))[:c.exsitu_images])
        x, y = x[i], y[i]
    chip = ChipModel(net, _mapping(c, net), ctx.device, d.x_train, c.engine,
                     adc_bits=c.adc_bits, adc_fraction=c.adc_fraction,
                     calibrate=c.calibrate_columns and c.engine != "ideal",
                     tile_options=c.tile_options or None,
                     noise=ctx.device.tolerance if c.exsitu_noise else 0.0, seed=c.seed)
    small = net.name == "cnn5"  # numpy is the faster backend for it; deep nets take a smaller lr
    cfg = ChipTrainConfig(epochs=c.epochs or 2, seed=c.seed, lr=5e-4 if small else 5e-5,
                          backend="numpy" if small else "torch")
    t0 = time.perf_counter()
    res, backend = train_on_chip(net, params, x, y, chip, cfg, ctx.progress)
    seconds = time.perf_counter() - t0
    how = (f"fine-tuned through the chip ({c.engine} engine, {backend}, {cfg.epochs} epochs on "
           f"{len(y)} images)")
    return res.params, {"float": history, "chip": res.history}, how, seconds


def _mapping(cfg: RunConfig, net: Network) -> Mapping:
    if cfg.mapping == "reference":
        return reference_map(cfg.replicate_first)
    first = net.weight_layers[0]
    return auto_map({k: net.weight_shape(k) for k in net.weight_layers},
                    {first: cfg.replicate_first} if cfg.replicate_first > 1 else None)


def stage_quantise(ctx: Context) -> Quantised:
    d, tr = ctx.data, ctx["exsitu"]
    net = ctx.net()
    q, scales = quantise.quantise_params(net, tr.params)
    act = calibrate_activation_scales(net, tr.params, d.x_train[:200])
    m = _mapping(ctx.cfg, net)
    chip = ChipState(net, m, target_conductances(m, q, ctx.device.window), scales, act,
                     ctx.device, ctx.cfg.adc_bits, ctx.cfg.adc_fraction)
    weights_only = graph.accuracy(net, quantise.dequantise(tr.params, q, scales), d.x_test,
                                  d.y_test)
    with ctx.bar(len(d.y_test), "quantised inference") as bar:
        pred = graph.predict(net, tr.params, d.x_test, build_engine(chip, "quantised", group=0),
                             250, bar.update)
    return Quantised(q, scales, act, weights_only, float(np.mean(pred == d.y_test)))


def stage_mapping(ctx: Context) -> Mapped:
    net = ctx.net()
    m = _mapping(ctx.cfg, net)
    target = target_conductances(m, ctx["quantise"].levels, ctx.device.window)
    plot_mapping(m, ctx.out / "mapping.png")
    write_text(ctx.out / "mapping.txt", describe_mapping(m) + "\n")
    return Mapped(m.to_dict(), target, m.tiles_used, m.utilisation(), m.summary())


def verify_read(c: RunConfig, dev: ArrayDevice, shape: tuple[int, ...]):
    """The transfer's verify read of `dev`'s tiles (shape (tiles, rows, cols)) for the run's
    circuit engine: each tile's cells as a chip reads them one row at a time
    (`circuitnn.tile.verify.verify_reads`, with the run's tile options and the device's read
    range, as the engine sees them); None for the ideal engines (the devices themselves)."""
    if not check_engine(c.engine).circuit:
        return None
    lo, hi = dev.read_range
    try:
        ref = TileSpec(conductance=np.full(shape[1:], lo), device=dev.tile_card,
                       v_read=dev.v_read, **(c.tile_options or {}))
    except TypeError as exc:
        raise CircuitnnError(f"bad tile option: {exc}") from None
    cols = shape[2]

    def read(g: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Only the rows that hold cells of idx are read, all tiles' in one call (each row is
        read on its own: only its place in its tile matters)."""
        rows = np.unique(idx // cols)  # row index over all tiles
        cells = rows[:, None] * cols + np.arange(cols)
        out = np.empty(g.size)
        out[cells] = verify_reads(ref, np.clip(g[cells], lo, hi), rows % shape[1])
        return out[idx]

    return read


def stage_transfer(ctx: Context) -> Transferred:
    c = ctx.cfg
    target = ctx["mapping"].target
    m = Mapping.from_dict(ctx["mapping"].mapping)
    laws = ctx.device.programming_laws(c.variation_scale)
    pcfg = program_config(ctx.device, c.max_pulses, c.variation_scale)
    with ctx.bar(c.max_pulses, "write-verify (pulse rounds)") as bar:
        res = write_verify(target, laws, ctx.rng("transfer"), pcfg,
                           progress=lambda n: bar.update(1),
                           verify_read=verify_read(c, ctx.device, target.shape),
                           partner=m.partners() if c.pair_compensation else None)
    used = m.used_cells()
    plot_transfer(res, used, ctx.out / "transfer_error_hist.png",
                  ctx.out / "transfer_pulse_hist.png", pcfg.tolerance)
    per_layer = {}
    for layer in m.shapes:
        mask = np.zeros_like(used)
        for p in (q for q in m.placements if q.layer == layer):
            mask[p.tile, p.rows, p.cols] = True
        per_layer[layer] = res.summary(mask)
    w = ctx.device.window
    verify = "cell read" if check_engine(c.engine).circuit else "device"
    report = {"pulse": ctx.device.summary["pulse"], "window_S": [w.g_min, w.g_max],
              "program": dataclasses.asdict(pcfg) | {"tolerance_rel": ctx.device.choice
                                                     .tolerance_rel,
                                                     "scheme": ctx.device.choice.scheme,
                                                     "verify": verify,
                                                     "pair_compensation": c.pair_compensation},
              "all_used_cells": res.summary(used),
              "per_layer": per_layer}
    return Transferred(res.conductance, res.pulses, res.stuck, res.converged, res.devices,
                       report)


def stage_calibrate(ctx: Context) -> Calibration:
    """With `calibrate_columns`: each row block's output columns measured through the run's
    engine with the layer inputs of `CALIBRATION_IMAGES` training images and given a digital
    gain and offset (`circuitnn.network.engines.calibrate_columns`); the ideal engine has no
    periphery to calibrate."""
    c = ctx.cfg
    if not c.calibrate_columns or c.engine == "ideal":
        return Calibration({}, {"enabled": False})
    chip = ctx.chip().with_column_gains(None)
    net, params = ctx.net(), ctx["exsitu"].params
    inputs = layer_inputs(net, params, ctx.data.x_train[:CALIBRATION_IMAGES])
    gains, per_layer = calibrate_columns(ctx.engine(chip, None), ctx["quantise"].levels, inputs)
    return Calibration(gains, {"enabled": True, "images": CALIBRATION_IMAGES,
                               "per_layer": per_layer})


def hybrid_images(cfg: RunConfig, n_train: int) -> int:
    """Training images used by hybrid training (and the train-set error): the fraction given,
    else 3% for the ResNets (the reference's ResNet-56 run) and for cnn5 all of a small
    training set, 10% (REF.hybrid.train_fraction) of a large one."""
    f = cfg.hybrid_fraction
    if f is None:
        if cfg.network != "cnn5":
            f = REF.published.resnet56_hybrid_fraction
        else:
            f = 1.0 if n_train <= 10000 else REF.hybrid.train_fraction
    return max(1, int(round(f * n_train)))


def _group_count(ctx: Context) -> int:
    return Mapping.from_dict(ctx["mapping"].mapping).max_groups


def stage_eval_transfer(ctx: Context) -> Features:
    c, d = ctx.cfg, ctx.data
    n_h = hybrid_images(c, len(d.y_train))
    idx = np.sort(ctx.rng("eval_transfer").permutation(len(d.y_train))[:n_h])
    chip, net, params = ctx.chip(), ctx.net(), ctx["exsitu"].params
    k = _group_count(ctx)
    jobs = [(f"{mode}/{part}", group, x) for mode, group in c.modes.items()
            for part, x in (("train", d.x_train[idx]), ("test", d.x_test))]
    if k > 1:
        jobs += [(f"group{g}/test", g, d.x_test) for g in range(k)]
    feats = {}
    with ctx.bar(sum(len(x) for _, _, x in jobs), f"hardware features ({c.engine})") as bar:
        for name, group, x in jobs:
            feats[name] = graph.features(net, params, x, ctx.engine(chip, group),
                                         progress=bar.update)
    bias = params.get(f"b_{net.last_layer}")
    return Features(idx, feats, _evaluate(ctx, chip, feats, idx,
                                          {m: (chip.conductances, bias) for m in c.modes}))


def _evaluate(ctx: Context, chip: ChipState, feats: dict, idx: np.ndarray,
              state: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> dict:
    """Test accuracy and train-set error per mode (last layer through the engine, features
    given), and per-group test error with the replicated mode's last layer."""
    d, layer = ctx.data, ctx.net().last_layer
    out: dict[str, Any] = {}

    def acc(mode: str, x: np.ndarray, y: np.ndarray, group: int | None) -> float:
        g, b = state[mode]
        logits = ctx.engine(chip.with_conductances(g), group)(layer, x)
        return float(np.mean((logits + (0 if b is None else b)).argmax(1) == y))

    for mode, group in ctx.cfg.modes.items():
        out[mode] = {"test_accuracy": acc(mode, feats[f"{mode}/test"], d.y_test, group),
                     "train_error": 1 - acc(mode, feats[f"{mode}/train"], d.y_train[idx],
                                            group)}
    shared = next((m for m, g in ctx.cfg.modes.items() if g is None), None)
    if shared is not None and "group0/test" in feats:
        out["per_group_test_error"] = {
            f"G{g + 1}": 1 - acc(shared, feats[f"group{g}/test"], d.y_test, g)
            for g in range(_group_count(ctx))}
    return out


def stage_hybrid(ctx: Context) -> Hybrid:
    c, d = ctx.cfg, ctx.data
    f, tr = ctx["eval_transfer"], ctx["transfer"]
    net = ctx.net()
    chip = ctx.chip()
    model = ctx.device.programming_model(c.variation_scale)
    hcfg = c.hybrid()
    bias0 = ctx["exsitu"].params.get(f"b_{net.last_layer}", np.zeros(net.n_classes))
    g_out, b_out, hist = {}, {}, {}
    for mode, group in c.modes.items():
        with ctx.bar(hcfg.batches, f"hybrid training ({mode})") as bar:
            g, b, h = train_last_layer(
                chip, c.engine, bias0, f.feats[f"{mode}/train"], d.y_train[f.train_idx], model,
                tr.devices, tr.stuck, ctx.rng("hybrid"), hcfg, f.feats[f"{mode}/test"],
                d.y_test, group=group, tile_options=c.tile_options or None,
                progress=bar.update)
        g_out[mode], b_out[mode], hist[mode] = g, b, h
    plot_hybrid(hist, ctx.out / "hybrid_accuracy.png")
    return Hybrid(g_out, b_out, hist, dataclasses.asdict(hcfg))


def stage_eval_hybrid(ctx: Context) -> Evaluated:
    f, h = ctx["eval_transfer"], ctx["hybrid"]
    return Evaluated(_evaluate(ctx, ctx.chip(), f.feats, f.train_idx,
                               {m: (h.conductances[m], h.bias[m]) for m in ctx.cfg.modes}))


def stage_energy(ctx: Context) -> Energy:
    c, d = ctx.cfg, ctx.data
    mode = next(iter(c.modes))
    h = ctx["hybrid"]
    chip = ctx.chip(h.conductances[mode])
    counter = EnergyCounter(v_read=ctx.device.v_read)
    name = "quantised" if c.engine == "ideal" else c.engine  # bit-serial reads
    eng = build_engine(chip, name, group=c.modes[mode], counter=counter,
                       tile_options=c.tile_options or None,
                       circuit=ctx._circuit if name == c.engine else None)
    n = min(c.n_energy, len(d.y_test))
    net = ctx.net()
    graph.predict(net, ctx["exsitu"].params, d.x_test[:n], eng)
    out = summarise(counter, n, net.macs())
    out["currents_from"] = (
        f"{name} reads of the whole {chip.mapping.rows} x {chip.mapping.cols} tile of each "
        "weight block (block rows driven, other rows at 0 V)" if check_engine(name).circuit
        else "ideal crossbar reads (I = V G)")
    return Energy(out)


NETWORK_STAGES = [  # the data first: a bad data set is refused before any device work
    Stage("data", DataInfo, stage_data,
          lambda ctx: {k: getattr(ctx.cfg, k) for k in (
              "dataset", "seed", "n_test_split", "train_images", "test_images")}),
    Stage("device", DeviceInfo, stage_device,
          lambda ctx: {"device": ctx.device.digest, "engine": ctx.cfg.engine,
                       "tile_options": ctx.cfg.tile_options}),
    Stage("exsitu", Trained, stage_exsitu, lambda ctx: _exsitu_key(ctx)),
    Stage("quantise", Quantised, stage_quantise,
          lambda ctx: {k: getattr(ctx.cfg, k) for k in (
              "adc_bits", "adc_fraction", "replicate_first", "mapping")}
          | {"device": ctx.device.digest}),
    Stage("mapping", Mapped, stage_mapping),
    Stage("transfer", Transferred, stage_transfer,
          lambda ctx: {k: getattr(ctx.cfg, k) for k in (
              "tolerance", "max_pulses", "variation_scale", "chip_seed", "engine",
              "tile_options", "pair_compensation")} | {"device": ctx.device.digest}),
    Stage("calibrate", Calibration, stage_calibrate,
          lambda ctx: {k: getattr(ctx.cfg, k) for k in (
              "calibrate_columns", "engine", "tile_options")}
          | {"images": CALIBRATION_IMAGES}),
    Stage("eval_transfer", Features, stage_eval_transfer,
          lambda ctx: {k: getattr(ctx.cfg, k) for k in (
              "engine", "tile_options", "modes", "hybrid_fraction")}),
    Stage("hybrid", Hybrid, stage_hybrid,
          lambda ctx: dataclasses.asdict(ctx.cfg.hybrid())),
    Stage("eval_hybrid", Evaluated, stage_eval_hybrid),
    Stage("energy", Energy, stage_energy, lambda ctx: {"n_energy": ctx.cfg.n_energy}),
]


def _exsitu_key(ctx: Context) -> dict:
    c = ctx.cfg
    key = {"network": c.network, "epochs": c.epochs, "weights": _file_key(c.weights)}
    if c.exsitu == "chip":  # what the chip-aware forward pass depends on
        key |= {k: getattr(c, k) for k in (
            "exsitu", "exsitu_images", "exsitu_noise", "engine", "adc_bits", "adc_fraction",
            "replicate_first", "mapping", "calibrate_columns", "tile_options", "tolerance")}
        key["device"] = ctx.device.digest
    return key


def _file_key(path: str | None) -> str | None:
    if path is None:
        return None
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


NETWORK_SALT = "circuitnn-network-1"
TRAINING = ("data", "exsitu")  # the stages that train the network, whatever the device


def stage_order(cfg: RunConfig, stages: list[Stage]) -> list[Stage]:
    """The stages in order (the data, then the device: each refuses bad input before any long
    stage), except for an operating point found by a search: the search trained the network
    with the `TRAINING` stages into the run's folder first, so they lead and the run loads
    them."""
    if (cfg.choice or {}).get("source") != "search":
        return stages
    first = [s for s in stages if s.name in TRAINING]
    return first + [s for s in stages if s.name not in TRAINING]


def run_pipeline(cfg: RunConfig, out: str | os.PathLike, stages: list[Stage] | None = None,
                 salt: str = NETWORK_SALT, progress: bool = True,
                 until: str | None = None) -> Context:
    """Check every option, then run (resuming) the stages into `out`; returns the context
    (its `log` has results, timings and the stages computed)."""
    cfg.check()
    ctx = Context(cfg, Path(out), progress)
    run_stages(stage_order(cfg, stages or NETWORK_STAGES), ctx, Path(out), salt, progress,
               until)
    return ctx


def exsitu_entries(tr: Trained) -> dict:
    """The report's ex-situ entries: the kind of training and its own time (seconds of the
    training done in this run, 0 for weights loaded as they are)."""
    return {"exsitu": tr.exsitu,
            "exsitu_train_seconds": float(sum(tr.train_seconds.values())),
            "exsitu_train_seconds_by_kind": dict(tr.train_seconds),
            "float_software_test_accuracy": (tr.software_test_accuracy
                                             if tr.float_software_test_accuracy is None
                                             else tr.float_software_test_accuracy)}


def network_report(ctx: Context) -> dict:
    """report.json of `circuitnn network run`."""
    r, c = ctx.log.results, ctx.cfg
    mode = next(iter(c.modes))
    et, eh = r["eval_transfer"].accuracy, r["eval_hybrid"].accuracy
    d = r["data"].info
    return {
        "network": c.network,
        **exsitu_entries(r["exsitu"]),
        "software_test_accuracy": r["exsitu"].software_test_accuracy,
        "quantized_test_accuracy": r["quantise"].quantized_test_accuracy,
        "quantized_weights_only_test_accuracy":
            r["quantise"].quantized_weights_only_test_accuracy,
        "transfer_test_accuracy": et[mode]["test_accuracy"],
        "hybrid_test_accuracy": eh[mode]["test_accuracy"],
        "train_error_before_hybrid": et[mode]["train_error"],
        "train_error_after_hybrid": eh[mode]["train_error"],
        "per_group_test_error": {"before": et.get("per_group_test_error"),
                                 "after": eh.get("per_group_test_error")},
        "tiles": int(r["mapping"].tiles),
        "tile_utilisation": r["mapping"].utilisation,
        "groups": int(c.replicate_first),
        "engine": c.engine,
        "weights": r["exsitu"].source,
        "hybrid_images": int(len(r["eval_transfer"].train_idx)),
        "hybrid_pulses_total": int(np.sum(r["hybrid"].history[mode]["pulses"])),
        "energy": r["energy"].energy,
        "column_calibration": r["calibrate"].report,
        "transfer": r["transfer"].report,
        "mapping": r["mapping"].summary,
        "data": {"source": d["source"], "n_train": d["n_train"], "n_test": d["n_test"]},
        "device": r["device"].device,
        "surrogate": r["device"].surrogate,
        "config": {k: getattr(c, k) for k in c.__dataclass_fields__},
        "timings_s": dict(ctx.log.timings),
        "reference": REF.published.as_dict(),
    }


def exsitu_text(rep: dict) -> str:
    """One sentence on a report's ex-situ training (for report.md)."""
    secs = rep["exsitu_train_seconds_by_kind"]
    took = ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()) or "none (weights loaded)"
    text = f"Ex-situ training: **{rep['exsitu']}** ({rep['weights']}); training time: {took}."
    if rep["exsitu"] == "chip":
        acc = 100 * rep["float_software_test_accuracy"]
        text += f" The float weights it started from: {acc:.2f}% software test accuracy."
    return text


def network_markdown(rep: dict) -> list[str]:
    """report.md of `circuitnn network run` (its lines): the accuracy of each stage, the
    training and the write-verify programming."""
    d, before = rep["data"], rep["train_error_before_hybrid"]
    used = rep["transfer"]["all_used_cells"]
    rows = [("software (float)", rep["software_test_accuracy"]),
            ("quantised (15 levels, 8-bit bit-serial inputs, ADC, ideal arrays)",
             rep["quantized_test_accuracy"]),
            (f"after write-verify transfer ({rep['engine']} reads)",
             rep["transfer_test_accuracy"]),
            ("after hybrid training of the last layer", rep["hybrid_test_accuracy"])]
    lines = [f"# {rep['network']} on memristor tiles", "",
             f"Data: {d['source']}; {d['n_train']} training / {d['n_test']} test images. "
             f"{rep['tiles']} tiles, engine {rep['engine']}.", "",
             exsitu_text(rep) + f" The trained weights: `{WEIGHTS_FILE}` (batch normalisation "
             "folded; another run takes them with `--weights`).", "",
             "| stage | test accuracy |", "|---|---|",
             *(f"| {name} | {100 * v:.2f}% |" for name, v in rows), "",
             f"Training-set error before -> after hybrid: {100 * before:.2f}% -> "
             f"{100 * rep['train_error_after_hybrid']:.2f}% (on {rep['hybrid_images']} "
             "images). Energy: "
             f"{rep['energy']['energy_per_inference_J'] * 1e9:.1f} nJ per inference.", "",
             f"Write-verify: {used['pulses_mean']:.1f} pulses per used cell, "
             f"{used['not_converged']} of {used['n_cells']} used cells not converged"
             + (f", {used['compensated']} re-targeted to make up for their pair partner "
                "(pair compensation)." if used.get("compensated") else "."), ""]
    return lines

"""Hardware-style inference engines for the CNN's three array products, in numbers only.

Every weight block is read by `circuitnn.periphery.bit_serial_matmul` (8-bit input codes as 8
binary slots, a pluggable `column_read(V, G)` per slot: the ideal V @ G or a circuit engine, the
ADC, shift-and-add, G+ minus G- columns), rescaled to (input code x weight level) units.

ADC full scale: the current of all the block's rows at v_read through g_max cells, times
`adc_fraction` (default 0.5: a fraction < 1 trades saturation of rare large currents for a finer
step; below ~0.2 the g_min baseline of the G- cells saturates the ADC and accuracy collapses).

Activation quantisation: each layer's input is turned into 8-bit codes with a per-layer scale:
C1 inputs are pixels/255, so the scale is exactly 1/255 (codes = the original pixels); C3 and FC
inputs are ReLU/pooled activations, whose scale is P(x, act_percentile) / 255 over a
calibration batch of training images (larger values saturate at code 255).

Engines (`build_engine`): "ideal" = the float software product; "quantised" = 15-level weights
mapped onto the PEs as conductance pairs + 8-bit activations + bit-serial reads + ADC, with
partial sums of split blocks added digitally and, for several convolver groups, the output rows
of the convolution layers divided top to bottom among the groups. The quantised engine is a
`ChipEngine`, the one engine class; `circuitnn.mcnn.chip` plugs its circuit reads (whole-PE
tile reads, energy counter) into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.network import cnn
from circuitnn.network.mapping import (
    DEFAULT_G_MAX,
    DEFAULT_G_MIN,
    DEVICE_LEVELS,
    Mapping,
    Placement,
    conductance_unit,
    map_weights,
    pe_conductances,
)
from circuitnn.network.quantise import quantise_params
from circuitnn.periphery.bitserial import ColumnRead, bit_serial_matmul
from circuitnn.reference import REF
from circuitnn.tile.read import CIRCUIT_ENGINES

V_READ = REF.hardware.v_read  # V, read voltage of the reference hardware
#: every network inference engine: "ideal" (float effective weights), "quantised" (bit-serial
#: periphery over the ideal crossbar I = V G), and the tile's circuit engines under the same
#: periphery (names from the one tile-engine registry, `circuitnn.tile.read.ENGINES`)
ENGINES = ("ideal", "quantised", *CIRCUIT_ENGINES)


def check_engine(engine: str) -> str:
    """Return `engine` if it is a network engine, else raise CircuitnnError."""
    if engine not in ENGINES:
        raise CircuitnnError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
    return engine


def calibrate_activation_scales(params: dict[str, np.ndarray], images: np.ndarray,
                                act_percentile: float = 99.99, bits: int = 8
                                ) -> dict[str, float]:
    """Per-layer input step (value of one code): C1 1/255; C3, FC P(x, act_percentile)/255."""
    seen: dict[str, list] = {"C3": [], "FC": []}

    def record(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if layer in seen:
            seen[layer].append(x.ravel())
        return x @ w

    cnn.forward(params, cnn.preprocess(images), matmul=record)
    top = 2 ** bits - 1
    scales = {"C1": 1.0 / 255.0}
    for layer, xs in seen.items():
        p = float(np.percentile(np.concatenate(xs), act_percentile))
        scales[layer] = p / top if p > 0 else 1.0
    return scales


@dataclass
class ChipEngine:
    """A `matmul(layer, X, W)` for `cnn.forward` that runs C1/C3/FC through the mapped PEs.

    The W handed in by `forward` is ignored: the weights are the programmed `conductances`
    (n_pes, rows, cols), which callers may perturb (programming error, drift, hybrid updates).
    engine: "ideal" = float product with the effective weights (G+ - G-) / g_unit x scale
    (programming errors included, no input or ADC quantisation); any other name = 8-bit inputs,
    bit-serial reads through the column read, ADC. groups: 1 = convolver group `group` takes
    the whole image; n > 1 = group g takes output-row band g (top to bottom); FC uses group 0.
    Plug-ins for circuit reads: full_pe = `column_read` gets the whole PE (the block's rows
    driven, all other rows at 0 V, `pad_rows` extra low-state rows if larger than the PE);
    block_read(engine, placement) -> a block's column read, or None for the default;
    counter: an object whose `wrap(read)` records every block read (energy counting).
    """

    mapping: Mapping
    conductances: np.ndarray
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    g_unit: float
    g_max: float
    engine: str = "quantised"
    groups: int = 1
    group: int = 0
    adc_bits: int | None = 8
    adc_fraction: float = 0.5
    v_read: float = V_READ
    column_read: ColumnRead | None = None
    full_pe: bool = False
    pad_rows: int | None = None
    block_read: Callable[[ChipEngine, Placement], ColumnRead | None] | None = None
    input_bits: int = 8
    counter: Any = None
    chunk: int = 16384  # slots x images per column_read call
    _eff: dict = field(default_factory=dict, repr=False)

    def quantise_input(self, layer: str, x: np.ndarray) -> np.ndarray:
        """Layer inputs -> integer codes 0..2**input_bits-1 with the layer's scale."""
        top = 2 ** self.input_bits - 1
        return np.clip(np.rint(x / self.act_scales[layer]), 0, top).astype(np.int64)

    def effective_weights(self, layer: str, group: int) -> np.ndarray:
        """(G+ - G-) / g_unit x scale of a layer's blocks (the chip's weights as floats)."""
        w = np.zeros(cnn.SHAPES[layer])
        for p in self.mapping.of(layer, group):
            g = self.conductances[p.pe, p.rows, p.cols]
            w[p.w_rows, p.w_cols] = (g[:, 0::2] - g[:, 1::2]) / self.g_unit
        return w * self.weight_scales[layer]

    def _pe_conductances(self, pe: int) -> np.ndarray:
        """The whole PE (pad_rows: a larger array, extra rows at the PE's lowest conductance)."""
        g_pe = self.conductances[pe]
        rows = self.pad_rows or g_pe.shape[0]
        if rows > g_pe.shape[0]:
            g_pe = np.vstack([g_pe, np.full((rows - g_pe.shape[0], g_pe.shape[1]),
                                            g_pe.min())])
        return g_pe

    def _block_read(self, p: Placement) -> ColumnRead | None:
        """The column read of one block: V (slots, block rows), G block -> block currents."""
        if self.block_read is not None:
            read = self.block_read(self, p)
            if read is not None:
                return read
        if not self.full_pe:
            return self.column_read
        inner = self.column_read
        if inner is None:
            raise CircuitnnError(f"engine '{self.engine}' needs a column read")
        g_pe = self._pe_conductances(p.pe)

        def read_pe(v: np.ndarray, g: np.ndarray) -> np.ndarray:
            full = np.zeros((v.shape[0], g_pe.shape[0]))
            full[:, p.rows] = v
            return inner(full, g_pe)[:, p.cols]

        return read_pe

    def _block(self, codes: np.ndarray, p: Placement) -> np.ndarray:
        g = self.conductances[p.pe, p.rows, p.cols]
        read = self._block_read(p)
        if self.counter is not None:
            read = self.counter.wrap(read)
        return bit_serial_matmul(
            codes[:, p.w_rows], g[:, 0::2], g[:, 1::2], g_unit=self.g_unit, v_read=self.v_read,
            adc_bits=self.adc_bits, adc_range=self.adc_fraction * (p.rows.stop - p.rows.start)
            * self.v_read * self.g_max, column_read=read, input_bits=self.input_bits,
            chunk=self.chunk)

    def _run_group(self, layer: str, x: np.ndarray, group: int) -> np.ndarray:
        if self.engine == "ideal":
            key = (layer, group)
            if key not in self._eff:
                self._eff[key] = self.effective_weights(layer, group)
            return x @ self._eff[key]
        codes = self.quantise_input(layer, x)
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, codes.shape[-1])
        out = np.zeros((flat.shape[0], cnn.SHAPES[layer][1]))
        for p in self.mapping.of(layer, group):
            out[:, p.w_cols] += self._block(flat, p)
        scale = self.act_scales[layer] * self.weight_scales[layer]
        return out.reshape(lead + (out.shape[-1],)) * scale

    def __call__(self, layer: str, x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        if layer == "FC":
            return self._run_group("FC", x, 0)
        if self.groups == 1:
            return self._run_group(layer, x, self.group)
        bands = np.array_split(np.arange(x.shape[1]), self.groups)
        return np.concatenate([self._run_group(layer, x[:, b], g)
                               for g, b in enumerate(bands)], axis=1)


def build_engine(params: dict[str, np.ndarray], calib_images: np.ndarray | None = None,
                 kind: str = "quantised", *, n_groups: int = 1, rule: str = "percentile",
                 percentile: float = 99.5, act_percentile: float = 99.99,
                 levels: int = DEVICE_LEVELS, g_min: float = DEFAULT_G_MIN,
                 g_max: float = DEFAULT_G_MAX, v_read: float = V_READ,
                 adc_bits: int | None = 8, adc_fraction: float = 0.5,
                 column_read: ColumnRead | None = None) -> cnn.MatMul:
    """An engine by name: "ideal" (X @ W) or "quantised" (weights quantised to 2*levels-1
    levels and mapped, activations calibrated on `calib_images`, bit-serial reads, ADC)."""
    if kind == "ideal":
        return cnn.default_matmul
    if kind != "quantised":
        raise CircuitnnError(f"unknown engine '{kind}' (choose from ideal, quantised)")
    if calib_images is None or len(calib_images) == 0:
        raise CircuitnnError("the quantised engine needs calibration images")
    if not 0 < adc_fraction <= 1:
        raise CircuitnnError(f"adc_fraction must be in (0, 1], got {adc_fraction}")
    q, scales = quantise_params(params, rule, percentile, levels - 1)
    mapping = map_weights(q, n_groups)
    return ChipEngine(
        mapping=mapping, conductances=pe_conductances(mapping, levels, g_min, g_max),
        weight_scales=scales, act_scales=calibrate_activation_scales(params, calib_images,
                                                                     act_percentile),
        g_unit=conductance_unit(levels, g_min, g_max), g_max=g_max, groups=n_groups,
        v_read=v_read, adc_bits=adc_bits, adc_fraction=adc_fraction, column_read=column_read)

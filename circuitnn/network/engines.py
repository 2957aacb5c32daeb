"""Inference through the programmed chip: one engine constructor for any mapped network.

`build_engine(chip, engine)` gives a `matmul(layer, X, W)` for `graph.forward` that runs every
weight product through the tiles of `chip` (a `ChipState`: mapping, programmed conductances,
per-layer weight and activation scales, the device). The W handed in by `forward` is ignored:
the weights are the programmed conductances. Engines (the registry `ENGINES` of
`circuitnn.surrogate.read`):

- "ideal": float product with the chip's effective weights (G+ - G-) / unit x scale
  (programming errors included; no input or ADC quantisation);
- "quantised": 8-bit input codes applied bit-serially, ideal crossbar I = V G, ADC,
  shift-and-add (`circuitnn.periphery.bit_serial_matmul`), partial sums of row blocks added
  digitally;
- "surrogate", "nodal", "ngspice": as "quantised", but every 1-bit read of a block is a circuit
  read of its whole tile (the block's rows driven, all other rows at 0 V, every cell's
  programmed conductance present) by `circuitnn.surrogate.read`, with the device's I-V card; the
  surrogate uses its binary-input fast path on the programmed tile (`SurrogateTile`).

Activation quantisation: each layer's input becomes 8-bit codes with a per-layer step: the
network input is pixels / 255, so its step is exactly 1/255 (codes = the pixels); other layers'
inputs (ReLU outputs) use P(x, act_percentile) / 255 over calibration images.

ADC full scale: the current of all the block's rows at v_read through g_max cells, times
`adc_fraction` (reference preset). Replicated layers: with `group=None` replica g computes the
g-th band of output rows (top to bottom); with `group=g` replica g (mod its count) computes all.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.network import graph
from circuitnn.network.device import ArrayDevice
from circuitnn.network.graph import Network
from circuitnn.network.layers import im2col
from circuitnn.network.mapping import Mapping, Placement, effective_levels
from circuitnn.periphery.bitserial import (
    ColumnRead,
    bit_planes,
    block_product,
    block_tables,
    differential_output,
    ideal_column_read,
)
from circuitnn.periphery.calibration import (
    apply_column_gains,
    fit_column_gains,
    relative_error,
)
from circuitnn.reference import REF
from circuitnn.surrogate.engine import programmed
from circuitnn.surrogate.model import stack_blocks
from circuitnn.surrogate.read import check_engine
from circuitnn.surrogate.read import read as tile_read
from circuitnn.tile.spec import TileSpec

INPUT_BITS = REF.hardware.input_bits
READER_CACHE = 4096  # surrogate tile readers kept per engine (about 50 kB each at 128 x 16)


def calibrate_activation_scales(net: Network, params: dict[str, np.ndarray],
                                images: np.ndarray, act_percentile: float = 99.99,
                                bits: int = INPUT_BITS, max_samples: int = 2_000_000
                                ) -> dict[str, float]:
    """Per-layer input step (value of one code): 1/255 for layers fed by the network input,
    P(x, act_percentile) / (2**bits - 1) for the others. Refuses negative layer inputs (the
    bit-serial input drivers apply unsigned codes)."""
    seen: dict[str, list] = {}
    first = {n.name for n in net.nodes if n.op in graph.WEIGHT_OPS and n.inputs[0] == "input"}

    def record(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if layer not in first:
            flat = x.ravel()
            step = max(1, flat.size // max_samples)
            seen.setdefault(layer, []).append(flat[::step])
        return x @ w

    graph.forward(net, params, graph.preprocess(net, images), matmul=record)
    top = 2 ** bits - 1
    scales = {k: 1.0 / 255.0 for k in first}
    for layer, xs in seen.items():
        x = np.concatenate(xs)
        if x.min() < -1e-12:
            raise CircuitnnError(f"layer '{layer}' receives negative inputs ({x.min():.3g}); the "
                                 "arrays take unsigned bit-serial inputs (put a ReLU before it)")
        p = float(np.percentile(x, act_percentile))
        scales[layer] = p / top if p > 0 else 1.0
    return scales


@dataclass
class ChipState:
    """A programmed chip: the network, where its layers sit, every cell's conductance, the
    scales that turn levels and codes back into numbers, and the device."""

    net: Network
    mapping: Mapping
    conductances: np.ndarray  # (n_tiles, rows, cols) S
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    device: ArrayDevice
    adc_bits: int | None = REF.hardware.adc_bits
    adc_fraction: float = REF.choices.adc_fraction
    #: per-column digital gain and offset of each row block (`calibrate_columns`), by
    #: `gain_key(layer, group)`: (2, row blocks, outputs); None = no column calibration
    column_gains: dict[str, np.ndarray] | None = None

    def with_conductances(self, g: np.ndarray) -> ChipState:
        """The same chip with other conductances (e.g. after hybrid training); the column
        calibration is kept (the periphery is not re-calibrated)."""
        return dataclasses.replace(self, conductances=g)

    def with_column_gains(self, gains: dict[str, np.ndarray] | None) -> ChipState:
        """The same chip with another column calibration (None: none)."""
        return dataclasses.replace(self, column_gains=gains)


def gain_key(layer: str, group: int) -> str:
    """Key of a replica's column calibration in `ChipState.column_gains`."""
    return f"{layer}@{group}"


class CircuitRead:
    """Circuit reads of whole tiles through `circuitnn.tile.read` with the device's I-V card.

    Tile specs and programmed surrogate tiles are cached by conductances, so a tile whose
    conductances did not change is never re-programmed."""

    def __init__(self, engine: str, device: ArrayDevice, tile_options: dict[str, Any] | None,
                 pad_rows: int | None = None) -> None:
        self.engine, self.device = engine, device
        self.opts = dict(tile_options or {})
        if "device" in self.opts or "conductance" in self.opts:
            raise CircuitnnError("tile options may not set 'device' or 'conductance' (the "
                                 "device comes from the I-V card)")
        self.lo, self.hi = device.read_range if device.tile_card is not None else (0.0, np.inf)
        self.pad_rows = pad_rows
        self._specs: OrderedDict[bytes, TileSpec] = OrderedDict()  # the last few tiles read
        self._tiles: OrderedDict[bytes, Any] = OrderedDict()

    def whole_tile(self, g: np.ndarray) -> np.ndarray:
        """The tile's conductances, padded with low-state rows to `pad_rows` if that is larger
        (a larger array simulated around the same block)."""
        rows = self.pad_rows or g.shape[0]
        if rows > g.shape[0]:
            g = np.vstack([g, np.full((rows - g.shape[0], g.shape[1]), g.min())])
        return g

    def spec(self, g: np.ndarray) -> TileSpec:
        """The TileSpec of a whole tile's conductances g (cached)."""
        key = np.ascontiguousarray(g).tobytes()
        spec = self._specs.get(key)
        if spec is None:
            try:
                # the rare cells programmed outside the device's read range (stuck, device-to-
                # device bounds) are read at its nearest end
                spec = TileSpec(conductance=np.clip(g, self.lo, self.hi),
                                device=self.device.tile_card, v_read=self.device.v_read,
                                **self.opts)
            except TypeError as exc:
                raise CircuitnnError(f"bad tile option: {exc}") from None
            self._specs[key] = spec
            while len(self._specs) > 64:
                self._specs.popitem(last=False)
        return spec

    def surrogate_reader(self, g: np.ndarray):
        """The binary-input reader of a whole tile's programmed surrogate (`BinaryReader`),
        validated once (the card must cover the tile, a read with every row at v_read must pass
        the input checks). Readers are small, so one is kept for every tile of the chip (up to
        `READER_CACHE` conductance patterns)."""
        key = np.ascontiguousarray(g).tobytes()
        reader = self._tiles.get(key)
        if reader is None:
            spec = self.spec(g)
            tile_read(spec, np.full((1, spec.rows), spec.v_read), engine="surrogate")
            reader = self._tiles[key] = programmed(spec)[0].binary_reader()
            while len(self._tiles) > READER_CACHE:
                self._tiles.popitem(last=False)
        else:
            self._tiles.move_to_end(key)
        return reader

    def surrogate_block(self, g_tile: np.ndarray, p: Placement) -> tuple[np.ndarray, ...]:
        """(A, P, Q, y0) of block p of a tile through its programmed surrogate
        (`BinaryReader.block`)."""
        return self.surrogate_reader(self.whole_tile(g_tile)).block(p.rows, p.cols)

    def block_read(self, g_tile: np.ndarray, p: Placement) -> ColumnRead:
        """`column_read(V, G)` of block p: V (slots, block rows) -> its columns' currents."""
        g_full = self.whole_tile(g_tile)
        if self.engine == "surrogate":
            reader = self.surrogate_reader(g_full)
            return lambda v, g: reader.read_driven_rows(v, p.rows, p.cols)
        spec = self.spec(g_full)

        def read_tile(v: np.ndarray, g: np.ndarray) -> np.ndarray:
            full = np.zeros((v.shape[0], g_full.shape[0]))
            full[:, p.rows] = v
            return tile_read(spec, full, engine=self.engine)[:, p.cols]

        return read_tile


@dataclass
class ChipEngine:
    """`matmul(layer, X, W)` through the chip (build it with `build_engine`)."""

    chip: ChipState
    engine: str
    group: int | None = None
    adc_bits: int | None = REF.hardware.adc_bits
    circuit: CircuitRead | None = None
    counter: Any = None
    chunk: int = 16384  # input vectors (patches) per column read
    input_bits: int = INPUT_BITS
    dtype: type = np.float64  # of the slot voltages (float32: faster array products)
    #: draws the read noise of every read (`_add_read_noise`); seeded, so runs repeat
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    @property
    def mapping(self) -> Mapping:
        return self.chip.mapping

    @property
    def v_read(self) -> float:
        return self.chip.device.v_read

    def tile_conductances(self, tile: int) -> np.ndarray:
        """The whole tile as the circuit engines read it (padded for a larger simulated array)."""
        g = self.chip.conductances[tile]
        return self.circuit.whole_tile(g) if self.circuit is not None else g

    def quantise_input(self, layer: str, x: np.ndarray) -> np.ndarray:
        """Layer inputs -> integer codes 0..2**input_bits-1 with the layer's step."""
        top = 2 ** self.input_bits - 1
        q = np.divide(x, self.chip.act_scales[layer])
        np.rint(q, out=q)
        np.clip(q, 0, top, out=q)
        return q.astype(np.uint8 if self.input_bits <= 8 else np.int64)

    def effective_weights(self, layer: str, group: int) -> np.ndarray:
        """The chip's weights of one replica as floats: (G+ - G-) / unit x layer scale."""
        c = self.chip
        return effective_levels(c.mapping, c.conductances, layer, group,
                                c.device.window.unit) * c.weight_scales[layer]

    def _column_read(self, p: Placement, layer: str) -> ColumnRead:
        read = None
        if self.circuit is not None:
            read = self.circuit.block_read(self.chip.conductances[p.tile], p)
        if self.counter is not None:
            return self.counter.wrap(read, layer)
        return read or ideal_column_read

    def _row_blocks(self, layer: str, group: int) -> dict[tuple[int, int], list[Placement]]:
        """A replica's placements grouped by the input rows they take, in row order."""
        out: dict[tuple[int, int], list[Placement]] = {}
        for p in self.mapping.of(layer, group):
            out.setdefault((p.w_rows.start, p.w_rows.stop), []).append(p)
        return dict(sorted(out.items()))

    def _read_block_row(self, layer: str, blocks: list[Placement], planes: np.ndarray
                        ) -> np.ndarray:
        """Column currents (slots, all columns of `blocks`) for slot bit planes (slots, rows):
        every block of one row block reads the same slots. Slots with no input bit set are not
        read (they all carry the current of one zero-input read), unless energy is counted."""
        c, vr = self.chip, self.v_read
        gs = [c.conductances[p.tile, p.rows, p.cols] for p in blocks]
        live = None if self.counter is not None else np.flatnonzero(planes.any(axis=1))
        rows = planes if live is None else planes[live]
        v = rows.astype(self.dtype) * self.dtype(vr)
        if self.circuit is None and self.counter is None:  # ideal crossbar: one product
            parts = [v @ np.hstack(gs).astype(self.dtype)]
            zero = [np.zeros(sum(g.shape[1] for g in gs))]
        else:
            reads = [self._column_read(p, layer) for p in blocks]
            parts = [np.asarray(r(v, g)) for r, g in zip(reads, gs, strict=True)]
            zero = [] if live is None else [np.asarray(r(np.zeros((1, v.shape[1])), g))[0]
                                            for r, g in zip(reads, gs, strict=True)]
        cur_live = np.hstack(parts) if len(parts) > 1 else parts[0]
        if live is None:
            return np.asarray(cur_live, dtype=float)
        cur = np.empty((planes.shape[0], cur_live.shape[1]))
        cur[:] = np.concatenate(zero)
        cur[live] = cur_live
        return cur

    def _block_matrix(self, blocks: list[Placement]) -> tuple[np.ndarray, np.ndarray] | None:
        """(M, zero) for a row block read as one product of 0/1 bit planes, or None (energy is
        counted, the engine reads tiles by circuit solves, or the codes have more than 8 bits):
        the ideal crossbar's M = v_read [G of every block side by side]; the surrogate's
        `stack_blocks` of every block's surrogate matrices. zero: the columns' currents with no
        row driven."""
        c, vr = self.chip, self.v_read
        if (self.counter is not None or self.engine not in ("quantised", "surrogate")
                or self.input_bits > 8):
            return None
        if self.engine == "quantised":
            m = np.hstack([c.conductances[p.tile, p.rows, p.cols] for p in blocks])
            return np.ascontiguousarray(m * vr, dtype=self.dtype), np.zeros(m.shape[1])
        parts = [self.circuit.surrogate_block(c.conductances[p.tile], p) for p in blocks]
        return stack_blocks(parts, scale=vr, dtype=self.dtype)

    def _read_noise_var(self, blocks: list[Placement]) -> np.ndarray | None:
        """Each cell's read-noise variance (rows, all columns of `blocks`) in S^2, or None
        without read noise (`ArrayDevice.read_noise`: every cell's conductance fluctuates
        independently in every read, by an absolute and a relative standard deviation; a
        column's current then has the standard deviation v_read sqrt(sum over its driven
        cells of the variance))."""
        sig_abs, sig_rel = self.chip.device.read_noise
        if not (sig_abs or sig_rel):
            return None
        g = np.hstack([self.chip.conductances[p.tile, p.rows, p.cols] for p in blocks])
        return sig_abs ** 2 + (sig_rel * g) ** 2

    def block_outputs(self, layer: str, codes: np.ndarray, group: int
                      ) -> Iterator[tuple[int, np.ndarray | slice, int, np.ndarray]]:
        """The digital outputs of each row block before partial sums are added: yields
        (row block index, its output columns (a slice where they are contiguous, as they are
        in every mapping made here), first input vector, outputs (vectors, columns) in code x
        level units, no column calibration) for codes (n, rows) of a layer. A row
        block with a `_block_matrix` is read by the compiled `block_product`, the others slot
        by slot through their column reads."""
        c, vr = self.chip, self.v_read
        unit, g_max = c.device.window.unit, c.device.window.g_max
        for i, ((r0, r1), blocks) in enumerate(self._row_blocks(layer, group).items()):
            cols = _columns(blocks)
            full_scale = c.adc_fraction * (r1 - r0) * vr * g_max
            fast, var = self._block_matrix(blocks), self._read_noise_var(blocks)
            tables = None if fast is None else block_tables(
                fast[0] if var is None else np.hstack([fast[0], vr ** 2 * var]))
            for s in range(0, codes.shape[0], self.chunk):
                xb = codes[s:s + self.chunk, r0:r1]
                if fast is None:
                    planes = bit_planes(xb, self.input_bits).transpose(1, 0, 2)
                    planes = planes.reshape(-1, r1 - r0)
                    cur = self._read_block_row(layer, blocks, planes)
                    if var is not None:
                        cur = cur + vr * np.sqrt(planes.astype(float) @ var) * (
                            self.rng.standard_normal(cur.shape))
                    y = differential_output(cur, len(xb), g_unit=unit, v_read=vr,
                                            adc_bits=self.adc_bits, full_scale=full_scale,
                                            input_bits=self.input_bits)
                else:
                    noise = None if var is None else self.rng.standard_normal(
                        (len(xb), self.input_bits, var.shape[1]), dtype=np.float32)
                    y = block_product(xb, tables, fast[1],
                                      parts=1 if self.engine == "quantised" else 3,
                                      g_unit=unit, v_read=vr, adc_bits=self.adc_bits,
                                      full_scale=full_scale, input_bits=self.input_bits,
                                      noise=noise)
                yield i, cols, s, y

    def _run_group(self, layer: str, x: np.ndarray, group: int, coded: bool) -> np.ndarray:
        if self.engine == "ideal":
            return x @ self.effective_weights(layer, group)
        codes = x if coded else self.quantise_input(layer, x)
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, codes.shape[-1])
        out = np.zeros((flat.shape[0], self.mapping.shapes[layer][1]))
        c = self.chip
        gains = (c.column_gains or {}).get(gain_key(layer, group))
        for i, cols, s, y in self.block_outputs(layer, flat, group):
            if gains is not None:
                apply_column_gains(y, gains[:, i, cols])
            out[s:s + len(y), cols] += y
        scale = c.act_scales[layer] * c.weight_scales[layer]
        return out.reshape(lead + (out.shape[-1],)) * scale

    def __call__(self, layer: str, x: np.ndarray, w: np.ndarray | None = None, *,
                 coded: bool = False) -> np.ndarray:
        """The layer's product of input vectors x (..., rows); `coded`: x holds their codes
        (`quantise_input`)."""
        k = self.mapping.groups[layer]
        if k == 1 or self.group is not None or x.ndim < 4:
            return self._run_group(layer, x, 0 if self.group is None else self.group % k, coded)
        bands = np.array_split(np.arange(x.shape[1]), k)
        return np.concatenate([self._run_group(layer, x[:, b], g, coded)
                               for g, b in enumerate(bands)], axis=1)

    def conv(self, layer: str, x: np.ndarray, k: int, stride: int = 1, pad: int = 0
             ) -> np.ndarray:
        """A convolution's product of NHWC inputs x (`graph.conv_product`): the inputs are
        quantised before their patches are unrolled (the same codes, in an eighth of the
        memory of float patches)."""
        if self.engine == "ideal":
            return self(layer, im2col(x, k, stride, pad))
        return self(layer, im2col(self.quantise_input(layer, x), k, stride, pad), coded=True)


def _columns(blocks: list[Placement]) -> np.ndarray | slice:
    """The output columns of a row block's placements, as a slice where contiguous (an
    indexed add of outputs then needs no gather and scatter)."""
    if all(a.w_cols.stop == b.w_cols.start
           for a, b in zip(blocks, blocks[1:], strict=False)):
        return slice(blocks[0].w_cols.start, blocks[-1].w_cols.stop)
    return np.concatenate([np.arange(p.w_cols.start, p.w_cols.stop) for p in blocks])


def build_engine(chip: ChipState, engine: str = "surrogate", *, group: int | None = None,
                 adc_bits: int | None | str = "chip", counter: Any = None,
                 tile_options: dict[str, Any] | None = None, pad_rows: int | None = None,
                 circuit: CircuitRead | None = None) -> ChipEngine:
    """The one engine constructor: a `matmul` for `graph.forward` through the programmed chip.

    group: None = replicated layers split the output rows among their replicas; g = replica g
    alone. adc_bits: "chip" = the chip's ADC, None = no ADC (analog shift-and-add), or bits.
    counter: records every block read (energy). tile_options: extra TileSpec fields (r_row,
    r_col, ...) for the circuit engines; pad_rows: simulate a larger array of that many rows.
    circuit: the `CircuitRead` of another engine of the same engine name, device and options,
    to share its programmed tiles (see `circuit_read`).
    """
    if check_engine(engine).circuit:
        if circuit is None:
            circuit = CircuitRead(engine, chip.device, tile_options, pad_rows)
        elif circuit.engine != engine or circuit.device is not chip.device:
            raise CircuitnnError("a shared circuit read must be of the same engine and device")
    elif tile_options or pad_rows:
        raise CircuitnnError(f"tile options and array size need a circuit engine, not '{engine}'")
    else:
        circuit = None
    bits = chip.adc_bits if adc_bits == "chip" else adc_bits
    return ChipEngine(chip, engine, group, bits, circuit, counter,
                      chunk=4096 if engine in ("nodal", "ngspice") else 16384,
                      dtype=np.float32 if engine in ("quantised", "surrogate") else np.float64)


def layer_inputs(net: Network, params: dict[str, np.ndarray], images: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """Every weight layer's input vectors (n, rows) in the float network for uint8 images."""
    seen: dict[str, np.ndarray] = {}

    def record(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        seen[layer] = x.reshape(-1, x.shape[-1])
        return x @ w

    graph.forward(net, params, graph.preprocess(net, images), matmul=record)
    return seen


def calibrate_columns(engine: ChipEngine, levels: dict[str, np.ndarray],
                      inputs: dict[str, np.ndarray], max_vectors: int = 2048
                      ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Per-column digital gain and offset of every row block of every replica, measured
    through `engine` (a bit-serial engine of the programmed chip) with calibration inputs.

    inputs: each layer's input vectors (`layer_inputs` of a few calibration images; at most
    `max_vectors` of them, evenly spaced, are used); levels: the intended integer weight
    levels (rows, outputs) of each layer. Each row block's outputs are fitted to the codes
    times the intended levels of its rows (`fit_column_gains`). Returns (gains for
    `ChipState.column_gains`, per layer: relative RMS output error before and after, gain
    range)."""
    if engine.engine == "ideal":
        raise CircuitnnError("column calibration needs a bit-serial engine, not 'ideal'")
    gains: dict[str, np.ndarray] = {}
    report: dict[str, dict] = {}
    m = engine.mapping
    for layer in m.shapes:
        x = inputs[layer]
        x = x[np.linspace(0, len(x) - 1, min(len(x), max_vectors)).astype(int)]
        codes = engine.quantise_input(layer, x)
        lv = np.asarray(levels[layer], dtype=float)
        err = {"before": [], "after": []}
        for group in range(m.groups[layer]):
            blocks = list(engine._row_blocks(layer, group))
            measured = np.zeros((len(blocks), len(codes), lv.shape[1]))
            for i, cols, s, y in engine.block_outputs(layer, codes, group):
                measured[i][s:s + len(y), cols] = y
            g = np.empty((2, len(blocks), lv.shape[1]))
            for i, (r0, r1) in enumerate(blocks):
                target = codes[:, r0:r1].astype(float) @ lv[r0:r1]
                g[:, i] = fit_column_gains(measured[i], target)
                err["before"].append(relative_error(measured[i], target))
                err["after"].append(relative_error(apply_column_gains(measured[i], g[:, i]),
                                                   target))
            gains[gain_key(layer, group)] = g
        gk = np.concatenate([gains[gain_key(layer, k)][0].ravel() for k in range(m.groups[layer])])
        report[layer] = {"rel_error_before": float(np.mean(err["before"])),
                         "rel_error_after": float(np.mean(err["after"])),
                         "gain_min": float(gk.min()), "gain_max": float(gk.max()),
                         "vectors": len(codes)}
    return gains, report


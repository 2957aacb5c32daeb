"""Bit-serial reads: 8-bit inputs as 8 binary pulse slots, and shift-and-add of the outputs.

As in the reference hardware (Yao et al., Nature 2020): an unsigned `bits`-bit input code x_i of
row i is applied as `bits` time slots; in slot k (k = 0 is the least significant bit) row i is
driven at v_read if bit k of x_i is 1 and at 0 V otherwise (the DAC is this 1-bit slicing). The
column currents I_k of each slot are digitised by the ADC (`circuitnn.periphery.adc`), then
combined by shift-and-add: out = sum_k 2^k I_k. For a linear tile superposition makes this
exactly one analog read at V = x * v_read; nonlinear cells (the HfOx card's sinh I-V, the access
transistor) break that equality, and bit-serial reads avoid the nonlinearity because every slot
uses only 0 V or v_read.

One decomposition serves everything: `bit_planes` slices codes, `shift_add` recombines.
- `bit_serial_matmul`: a differential array product (G+ and G- columns) through any
  `column_read(V, G)`, as the network engines run every weight block;
- `bitserial_read`: the slots of a tile through `circuitnn.surrogate.read` (any engine; all slots
  in ONE call);
- `bitserial_transient`: the slots as PWL sources in one ngspice transient of a small tile,
  column currents sampled in the middle of each slot.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from circuitnn.cache import compiled_module
from circuitnn.errors import CircuitnnError
from circuitnn.periphery import slotkernel
from circuitnn.periphery.adc import ADC, FLOAT32_BITS, adc_codes, adc_step
from circuitnn.reference import REF
from circuitnn.spice import fmt, run_netlist
from circuitnn.surrogate.read import read
from circuitnn.tile import netlist as tnl
from circuitnn.tile.spec import TileSpec, check_inputs

MAX_BITS = 16
INPUT_BITS = REF.hardware.input_bits
ColumnRead = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class BitSerialResult:
    """slots: (batch, bits, cols) column currents per slot (after the ADC, if any);
    raw_slots: the same before the ADC; output: (batch, cols) shift-and-add sum_k 2^k I_k."""

    slots: np.ndarray
    raw_slots: np.ndarray
    output: np.ndarray
    t: np.ndarray | None = field(default=None, repr=False)
    waveforms: np.ndarray | None = field(default=None, repr=False)


def check_codes(x, rows: int, bits: int = INPUT_BITS) -> np.ndarray:
    """Validate input codes: integers in 0..2^bits-1, shape (batch, rows) or (rows,)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise CircuitnnError(f"bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
    if isinstance(x, str):
        raise CircuitnnError("input codes must be an integer array, not a string")
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != rows or a.shape[0] < 1:
        raise CircuitnnError(f"input codes must have shape (batch, {rows}), got {np.shape(x)}")
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise CircuitnnError(f"input codes must be integers, got dtype {a.dtype}")
    if a.min() < 0 or a.max() > 2 ** bits - 1:
        raise CircuitnnError(f"input codes must lie in 0..{2 ** bits - 1}, got "
                             f"{int(a.min())}..{int(a.max())}")
    return a.astype(np.int64)


def bit_planes(codes: np.ndarray, bits: int = INPUT_BITS) -> np.ndarray:
    """(batch, bits, rows) uint8 0/1: plane k holds bit k (LSB first) of each code."""
    codes = np.asarray(codes)
    if bits <= 8:
        return np.unpackbits(codes.astype(np.uint8)[:, None, :], axis=1, count=bits,
                             bitorder="little")
    k = np.arange(bits)
    return ((codes.astype(np.int64)[:, None, :] >> k[None, :, None]) & 1).astype(np.uint8)


def shift_add(slots: np.ndarray) -> np.ndarray:
    """sum_k 2^k slots[:, k, :] for (batch, bits, cols) slot outputs."""
    slots = np.asarray(slots, dtype=float)
    return np.tensordot(slots, 2.0 ** np.arange(slots.shape[1]), axes=([1], [0]))


def ideal_column_read(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Ideal crossbar: column currents I = V @ G (A), V (batch, rows) in volts, G (rows, cols)."""
    return v @ g


def slot_voltages(x_codes: np.ndarray, input_bits: int = INPUT_BITS,
                  v_read: float = REF.hardware.v_read) -> np.ndarray:
    """Row voltages of every slot, slot-major: (input_bits * batch, rows), 0 or v_read (the
    1-bit DAC); row k * batch + b is slot k of input vector b."""
    x = np.asarray(x_codes)
    return bit_planes(x, input_bits).transpose(1, 0, 2).reshape(-1, x.shape[1]) * v_read


def differential_output(cur: np.ndarray, batch: int, *, g_unit: float, v_read: float,
                        adc_bits: int | None, full_scale: float,
                        input_bits: int = INPUT_BITS) -> np.ndarray:
    """Slot-major column currents (input_bits * batch, 2 * outs) of interleaved G+ / G-
    columns -> ADC per column and slot, shift-and-add, G+ minus G-, in code x level units:
    (batch, outs). The ADC works in codes and shift-and-add sums codes (exact integers, also in
    float32); the step is applied once at the end."""
    step = 1.0
    if adc_bits is not None:
        cur, step = adc_codes(cur, adc_bits, full_scale)
    else:  # analog currents: G+ minus G- cancels most of them, so sum in float64
        cur = np.asarray(cur, dtype=float)
    weights = (2.0 ** np.arange(input_bits)).astype(cur.dtype)
    acc = (weights @ cur.reshape(input_bits, -1)).reshape(batch, -1)
    return _difference(acc, step / (v_read * g_unit))


def _difference(acc: np.ndarray, scale: float) -> np.ndarray:
    """Shift-and-added columns (batch, 2 * outs) of interleaved G+ / G- -> (G+ minus G-) x
    scale, (batch, outs) float64."""
    diff = np.asarray(acc[:, 0::2] - acc[:, 1::2], dtype=float)
    diff *= scale
    return diff


NO_NOISE = np.zeros((0, 0, 0), dtype=np.float32)  # `block_product` without read noise


@functools.cache
def _kernel() -> ModuleType:
    """`circuitnn.periphery.slotkernel`, compiled (once per machine)."""
    return compiled_module(inspect.getsource(slotkernel), "slotkernel", _compile_kernel,
                           "the bit-serial block read is compiled in memory (about 5 s, "
                           "every run)")


def _compile_kernel(module: ModuleType) -> None:
    """Compile (or load from numba's cache) the kernel for the argument types
    `block_product` passes."""
    tables = module.partial_sums(np.zeros((9, 3), dtype=np.float32))
    module.shift_add_rows(np.zeros((1, 9), dtype=np.uint8), tables,
                          np.zeros(1, dtype=np.float32), 3, 8, 1, np.float32(1.0), 1.0, 255.0,
                          NO_NOISE, 0, 1, np.zeros((1, 1)))


#: input vectors per task when a block read is shared among threads
CHUNK = 512


@functools.cache
def _workers() -> tuple[ThreadPoolExecutor | None, int]:
    """The worker threads that help the calling thread with block reads: one per further core
    this process may use, within OMP_NUM_THREADS where it is set (as numpy's BLAS and PyTorch
    read it; dask's worker processes set it to 1)."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) >= 1:
        cores = min(cores, int(limit))
    n = cores - 1
    return (ThreadPoolExecutor(n, thread_name_prefix="circuitnn-read") if n else None), n


def _shared_rows(read_rows: Callable[[int, int], None], n: int) -> None:
    """read_rows(start, stop) over 0..n, CHUNK vectors at a time, by the calling thread and
    the idle workers: each thread takes the next chunk when it is free and the caller waits
    only for the chunks being read, so a worker kept off its core by another process or by a
    library's spinning threads costs at most the chunk it holds, never a share of the read."""
    pool, workers = _workers()
    total = -(-n // CHUNK)
    if pool is None or total < 2:
        read_rows(0, n)
        return
    chunks = itertools.count()  # its next() is atomic under the GIL
    lock, finished = threading.Lock(), threading.Event()
    done, errors = [0], []

    def work() -> None:
        for c in chunks:
            if c >= total:
                return
            try:
                read_rows(c * CHUNK, min(n, (c + 1) * CHUNK))
            except BaseException as e:  # raised in the calling thread below
                errors.append(e)
            with lock:
                done[0] += 1
                if done[0] == total:
                    finished.set()

    for _ in range(min(workers, total - 1)):
        pool.submit(work)
    work()
    finished.wait()
    if errors:
        raise errors[0]


def block_tables(m: np.ndarray) -> np.ndarray:
    """The partial sums of a row block's read matrix M (rows, width) over every 8-row bit
    pattern (float32), which `block_product` reads the block's slots with."""
    return _kernel().partial_sums(np.ascontiguousarray(m, dtype=np.float32))


def block_product(codes: np.ndarray, tables: np.ndarray, zero: np.ndarray, *, parts: int,
                  g_unit: float, v_read: float, adc_bits: int | None, full_scale: float,
                  input_bits: int = INPUT_BITS, noise: np.ndarray | None = None) -> np.ndarray:
    """`differential_output` of the bit-serial read of codes (batch, rows) (at most 8 bits)
    through a row block whose slot currents are binary planes @ M (`block_tables(M)`):
    `parts` 1, I = V @ M (ideal crossbar, M = v_read G); 3, the surrogate's binary read of
    M = [A | P | Q] (`circuitnn.surrogate.model.stack_blocks`, `binary_currents`) with the
    zero-input currents `zero`, which every slot without an input bit set reads. noise:
    standard normal draws (batch, input_bits, cols) of each slot's read noise, whose variance
    tables then follow M's parts (M = [... | v_read^2 var(G)]). Compiled
    (`circuitnn.periphery.slotkernel`): no slot current is stored; the input vectors are shared
    among threads (`_shared_rows`), each read the same whichever thread reads it."""
    if not 1 <= input_bits <= 8 or parts not in (1, 3):
        raise CircuitnnError(f"block_product takes 1-8 bit codes and 1 or 3 matrix parts, got "
                             f"{input_bits} bits, {parts} parts")
    if adc_bits is None:
        mode, lsb, top = 0, 1.0, 0
    else:
        lsb, top = adc_step(adc_bits, full_scale)
        mode = 1 if adc_bits <= FLOAT32_BITS else 2
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    zero = np.asarray(zero, dtype=np.float32)
    z = NO_NOISE if noise is None else np.ascontiguousarray(noise, dtype=np.float32)
    acc = np.zeros((codes.shape[0], tables.shape[1] // (parts + (noise is not None))))
    kernel = _kernel()

    def read_rows(start: int, stop: int) -> None:
        kernel.shift_add_rows(codes, tables, zero, parts, input_bits, mode,
                              np.float32(1.0 / lsb), lsb, float(top), z, start, stop, acc)

    _shared_rows(read_rows, codes.shape[0])
    return _difference(acc, (1.0 if adc_bits is None else lsb) / (v_read * g_unit))


def bit_serial_matmul(x_codes: np.ndarray, g_plus: np.ndarray, g_minus: np.ndarray, *,
                      g_unit: float, v_read: float = REF.hardware.v_read,
                      adc_bits: int | None = REF.hardware.adc_bits,
                      adc_range: float | None = None, column_read: ColumnRead | None = None,
                      input_bits: int = INPUT_BITS, chunk: int = 16384) -> np.ndarray:
    """Bit-serial differential array product, ~ x_codes @ ((G+ - G-) / g_unit).

    x_codes: integer inputs (batch, rows) in 0..2**input_bits-1. g_plus, g_minus: (rows, outs)
    in siemens; they are interleaved as columns (G+, G-, G+, ...) before `column_read`, which
    gets all slots of a chunk at once, V (slots*batch, rows) (`slot_voltages`). adc_bits None =
    no ADC; adc_range = ADC full scale in amperes (None: rows * v_read * max G, which never
    saturates on an ideal array). Returns float (batch, outs) in code x level units
    (`differential_output`).
    """
    x = np.asarray(x_codes)
    gp, gm = np.asarray(g_plus, float), np.asarray(g_minus, float)
    if x.ndim != 2 or gp.ndim != 2 or gp.shape != gm.shape or x.shape[1] != gp.shape[0]:
        raise CircuitnnError(f"bit_serial_matmul: inputs {x.shape} do not match conductances "
                             f"{gp.shape} / {gm.shape}")
    check_matmul_inputs(x, input_bits, g_unit, v_read)
    read_cols = column_read or ideal_column_read
    rows, outs = gp.shape
    g = np.empty((rows, 2 * outs))
    g[:, 0::2], g[:, 1::2] = gp, gm
    full_scale = adc_range if adc_range is not None else rows * v_read * g.max()
    out = np.empty((x.shape[0], outs))
    for s in range(0, x.shape[0], chunk):
        xb = x[s:s + chunk]
        v = slot_voltages(xb, input_bits, v_read)
        cur = np.asarray(read_cols(v, g), dtype=float)
        if cur.shape != (v.shape[0], 2 * outs):
            raise CircuitnnError(f"column_read returned shape {cur.shape}, expected "
                                 f"{(v.shape[0], 2 * outs)}")
        out[s:s + chunk] = differential_output(cur, len(xb), g_unit=g_unit, v_read=v_read,
                                               adc_bits=adc_bits, full_scale=full_scale,
                                               input_bits=input_bits)
    return out


def check_matmul_inputs(x: np.ndarray, input_bits: int, g_unit: float, v_read: float) -> None:
    """Raise CircuitnnError unless x holds integer codes of `input_bits` bits and g_unit,
    v_read are positive."""
    if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0
                                                              or x.max() >= 2 ** input_bits)):
        raise CircuitnnError(f"bit_serial_matmul: inputs must be integers in "
                             f"0..{2 ** input_bits - 1}")
    if g_unit <= 0 or v_read <= 0:
        raise CircuitnnError("bit_serial_matmul: g_unit and v_read must be positive")


def _finish(raw: np.ndarray, adc: ADC | None, **extra) -> BitSerialResult:
    if adc is not None and not isinstance(adc, ADC):
        raise CircuitnnError("adc must be an ADC or None")
    slots = raw if adc is None else adc(raw)
    return BitSerialResult(slots, raw, shift_add(slots), **extra)


def bitserial_read(spec: TileSpec, x, *, bits: int = INPUT_BITS, engine: str = "ngspice",
                   adc: ADC | None = None) -> BitSerialResult:
    """Bit-serial DC read of input codes x (batch, rows); all slots in one `read` call."""
    codes = check_codes(x, spec.rows, bits)
    planes = bit_planes(codes, bits)  # (batch, bits, rows)
    v = planes.reshape(-1, spec.rows) * spec.v_read
    cur = read(spec, v, engine=engine)
    return _finish(cur.reshape(codes.shape[0], bits, spec.cols), adc)


def slot_waveform(levels: np.ndarray, slot: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """PWL corners of a sequence of slot levels (n,): each level held for `slot` seconds, with
    linear transitions of `edge` seconds at slot boundaries; starts and ends at 0 V."""
    t: list[float] = [0.0]
    v: list[float] = [0.0]
    for n, lv in enumerate(np.asarray(levels, dtype=float)):
        t0 = n * slot
        t += [t0 + edge, t0 + slot - edge]
        v += [lv, lv]
    t.append(len(levels) * slot)
    v.append(0.0)
    return np.array(t), np.array(v)


def bitserial_netlist(spec: TileSpec, x, *, bits: int = INPUT_BITS,
                      slot: float = REF.hardware.read_pulse_s,
                      edge: float = 1e-9, dt: float | None = None) -> str:
    """Transient netlist: the slots of every input vector one after another as PWL row drivers
    (vector b's slot k is time slot b * bits + k). Cells are static (a read does not switch)."""
    from circuitnn.spice.subckt import pwl_source

    codes = check_codes(x, spec.rows, bits)
    for name, val in (("slot", slot), ("edge", edge)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not (
                np.isfinite(val) and 0 < val <= 1e-3):
            raise CircuitnnError(f"{name} must be a time in (0, 1 ms], got {val!r}")
    if not 2 * edge < slot:
        raise CircuitnnError(f"slot ({slot:g} s) must be longer than two edges ({edge:g} s)")
    dt = slot / 10 if dt is None else dt
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not 0 < dt <= slot:
        raise CircuitnnError(f"dt must be a time in (0, slot], got {dt!r}")
    v = bit_planes(codes, bits).reshape(-1, spec.rows) * spec.v_read
    v, _ = check_inputs(spec, v)  # range, disturb and passive row-mask handling
    lines = [f"* circuitnn bit-serial transient read, {codes.shape[0]} vector(s) x {bits} slots",
             *tnl.circuit_lines(spec), "* row drivers: one slot after another"]
    for i in range(spec.rows):
        t, w = slot_waveform(v[:, i], slot, edge)
        lines.append(pwl_source(f"in{i}", tnl.driver_node(spec, i), "0", t, w))
    lines += [tnl.options_line(spec),
              f".tran {fmt(dt)} {fmt(v.shape[0] * slot)} 0 {fmt(dt)}",
              ".save " + " ".join(tnl.output_vectors(spec)), ".end"]
    return "\n".join(lines) + "\n"


def bitserial_transient(spec: TileSpec, x, *, bits: int = INPUT_BITS,
                        slot: float = REF.hardware.read_pulse_s,
                        edge: float = 1e-9, dt: float | None = None, adc: ADC | None = None,
                        backend: str = "subprocess", timeout: float = 300) -> BitSerialResult:
    """Bit-serial read as one ngspice transient; currents sampled in the middle of each slot.

    The result also carries the time axis `t` and the column-current waveforms (time, cols).
    """
    codes = check_codes(x, spec.rows, bits)
    text = bitserial_netlist(spec, codes, bits=bits, slot=slot, edge=edge, dt=dt)
    plot = run_netlist(text, backend=backend, timeout=timeout,
                       name="bit-serial transient").plot("Transient")
    t = plot.data["time"].real
    wave = np.stack([plot.data[name].real for name in tnl.output_vectors(spec)], axis=1)
    wave = tnl.outputs_to_current(spec, wave)
    n = codes.shape[0] * bits
    mid = (np.arange(n) + 0.5) * slot
    sampled = np.stack([np.interp(mid, t, wave[:, j]) for j in range(spec.cols)], axis=1)
    return _finish(sampled.reshape(codes.shape[0], bits, spec.cols), adc, t=t, waveforms=wave)

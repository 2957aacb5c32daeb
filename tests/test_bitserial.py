"""Bit-serial reads: slots, shift-and-add, ADC, and the ngspice transient form vs the DC form."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from circuitnn.devices import builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.periphery import (
    ADC,
    bit_planes,
    bitserial,
    bitserial_netlist,
    bitserial_read,
    bitserial_transient,
    check_codes,
    shift_add,
)
from circuitnn.periphery.bitserial import block_product, block_tables, differential_output
from circuitnn.surrogate.model import binary_currents
from circuitnn.tile.read import read
from circuitnn.tile.spec import TileSpec

RNG = np.random.default_rng(7)
G_CARD = RNG.uniform(10e-6, 100e-6, (4, 4))
X = RNG.integers(0, 256, (3, 4))
X[0] = [255, 0, 128, 1]


def card_tile(**kw) -> TileSpec:
    return TileSpec(conductance=G_CARD, device=builtin_card(), **kw)


def test_bit_planes_reconstruct_codes():
    planes = bit_planes(X)
    assert planes.shape == (3, 8, 4) and set(np.unique(planes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(shift_add(planes), X)
    np.testing.assert_array_equal(planes[0, :, 0], np.ones(8))
    np.testing.assert_array_equal(planes[0, :, 3], [1, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("engine", ["nodal", pytest.param("ngspice", marks=pytest.mark.ngspice)])
def test_linear_tile_bitserial_equals_analog_read(engine):
    spec = TileSpec(conductance=RNG.uniform(10e-6, 100e-6, (5, 3)), cell="passive",
                    r_row=5.0, r_col=5.0)
    x = RNG.integers(0, 256, (4, 5))
    res = bitserial_read(spec, x, engine=engine)
    assert res.slots.shape == (4, 8, 3)
    # superposition: sum_k 2^k I(bit_k v_read) = I(x v_read) = 255 I(x v_read / 255)
    analog = 255 * read(spec, x * spec.v_read / 255, engine="nodal")
    np.testing.assert_allclose(res.output, analog, rtol=1e-9)


def test_nonlinear_tile_bitserial_differs_from_analog_read():
    spec = card_tile()
    res = bitserial_read(spec, X, engine="nodal")
    analog = 255 * read(spec, X * spec.v_read / 255, engine="nodal")
    rel = np.abs(res.output - analog) / np.abs(res.output)
    assert rel.max() > 0.02  # sinh I-V + transistor: analog low-voltage read is not linear
    # every slot uses only 0 V or v_read: each slot equals the read of its bit plane
    k = 7
    v = bit_planes(X)[:, k, :] * spec.v_read
    np.testing.assert_allclose(res.slots[:, k, :], read(spec, v, engine="nodal"), rtol=1e-9)


@pytest.mark.ngspice
def test_transient_slots_agree_with_dc_read():
    spec = card_tile()
    dc = bitserial_read(spec, X, engine="ngspice")
    tr = bitserial_transient(spec, X, slot=50e-9, edge=1e-9)
    scale = np.max(np.abs(dc.slots))
    assert np.max(np.abs(tr.slots - dc.slots)) < 1e-6 * scale
    np.testing.assert_allclose(tr.output, dc.output, rtol=1e-6)
    # one continuous pulsed waveform: starts at 0 A, peaks at the largest slot current
    assert tr.waveforms.shape[1] == 4 and tr.t[-1] == pytest.approx(3 * 8 * 50e-9)
    assert np.all(np.abs(tr.waveforms[0]) < 1e-9 * scale)
    assert np.max(tr.waveforms) == pytest.approx(scale, rel=1e-6)


def test_adc_quantises_and_saturates():
    spec = card_tile()
    raw = bitserial_read(spec, X, engine="nodal")
    fs = 0.5 * raw.raw_slots.max()
    adc = ADC(bits=4, full_scale=fs)
    q = bitserial_read(spec, X, engine="nodal", adc=adc)
    np.testing.assert_allclose(q.raw_slots, raw.raw_slots)
    codes = q.slots / adc.lsb
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-9)
    assert q.slots.max() == pytest.approx(fs)  # saturated at full scale
    inside = raw.raw_slots < fs
    assert np.all(np.abs(q.slots - raw.raw_slots)[inside] <= adc.lsb / 2 + 1e-15)
    np.testing.assert_allclose(q.output, shift_add(q.slots))
    assert not np.allclose(q.output, raw.output)
    # a fine ADC with ample range is close to no ADC
    fine = bitserial_read(spec, X, engine="nodal",
                          adc=ADC(bits=16, full_scale=2 * raw.raw_slots.max()))
    np.testing.assert_allclose(fine.output, raw.output, rtol=1e-3)


@pytest.mark.parametrize(
    "x, bits, match",
    [
        ([[1, 2, 3, -1]], 8, "0..255"),
        ([[1, 2, 3, 256]], 8, "0..255"),
        ([[1, 2, 3, 16]], 4, "0..15"),
        ([[0.5, 2, 3, 4]], 8, "integers"),
        ([[1, 2, 3]], 8, "shape"),
        ("1234", 8, "not a string"),
        ([[1, 2, 3, 4]], 0, "bits must be"),
    ],
)
def test_bad_codes(x, bits, match):
    with pytest.raises(CircuitnnError, match=match):
        check_codes(x, 4, bits)


def test_bad_adc_and_timing():
    with pytest.raises(CircuitnnError, match="ADC bits"):
        ADC(bits=0)
    with pytest.raises(CircuitnnError, match="full_scale"):
        ADC(full_scale=-1e-6)
    with pytest.raises(CircuitnnError, match="adc must be"):
        bitserial_read(card_tile(), X, engine="nodal", adc=8)
    with pytest.raises(CircuitnnError, match="two edges"):
        bitserial_netlist(card_tile(), X, slot=2e-9, edge=1e-9)
    with pytest.raises(CircuitnnError, match="slot must be"):
        bitserial_netlist(card_tile(), X, slot=float("inf"))
    with pytest.raises(CircuitnnError, match="dt must be"):
        bitserial_netlist(card_tile(), X, dt=1.0)


@pytest.mark.parametrize("rows, bits", [(9, 8), (72, 8), (5, 3)])
def test_compiled_block_read_equals_the_plane_products(rows, bits):
    """The compiled block read (8-row partial sums, every slot through the ADC, shift-and-add)
    against the numpy form of the same arithmetic: 0/1 planes @ M, the surrogate's binary
    currents, `differential_output`."""
    rng = np.random.default_rng(rows)
    n, outs, vr, unit = 300, 6, 0.2, 1.2e-6
    codes = rng.integers(0, 2 ** bits, (n, rows), dtype=np.uint8)
    codes[rng.random((n, rows)) < 0.6] = 0  # sparse, as ReLU outputs: some slots have no bit
    codes[:3] = 0  # vectors of zeros: every slot reads the zero-input currents
    g = rng.uniform(6e-6, 24e-6, (rows, 2 * outs))
    p, q = rng.normal(0, 1e-3, (2, rows, 2 * outs))  # the surrogate's bilinear factors
    y0 = rng.uniform(0, 1e-7, 2 * outs)
    planes = bit_planes(codes, bits).transpose(1, 0, 2).reshape(-1, rows).astype(np.float32)
    full_scale = 0.5 * rows * vr * g.max()
    var = (0.05 * g) ** 2  # each cell's read noise variance (S^2)
    z = rng.standard_normal((n, bits, 2 * outs)).astype(np.float32)
    for (parts, m, zero), noisy in itertools.product(
            ((1, vr * g, np.zeros(2 * outs)), (3, np.hstack([vr * g, vr * p, vr * q]), y0)),
            (False, True)):
        m = m.astype(np.float32)
        x = planes @ m
        cur = x if parts == 1 else binary_currents(x, zero)
        cur[~planes.any(axis=1)] = zero  # a slot without a bit set reads no row
        if noisy:  # slot-major draws: slot k of vector i is row k n + i
            cur = cur + vr * np.sqrt(planes @ var) * z.transpose(1, 0, 2).reshape(bits * n, -1)
            m = np.hstack([m, vr ** 2 * var]).astype(np.float32)
        tables = block_tables(m)
        for adc in (8, None):
            kw = dict(g_unit=unit, v_read=vr, adc_bits=adc, full_scale=full_scale,
                      input_bits=bits)
            want = differential_output(cur, n, **kw)
            got = block_product(codes, tables, zero, parts=parts, noise=z if noisy else None,
                                **kw)
            if adc is None:  # float32 sums in another order: rounding only
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
            else:  # a current within rounding of an ADC threshold may take the next code
                step = 2 ** bits * full_scale / 255 / (vr * unit)
                assert np.mean(got != want) < 1e-3 and np.abs(got - want).max() <= step
    with pytest.raises(CircuitnnError, match="1-8 bit codes"):
        block_product(codes, tables, y0, parts=2, g_unit=unit, v_read=vr, adc_bits=8,
                      full_scale=full_scale)


def test_block_read_shared_among_threads(monkeypatch):
    """A block read split into chunks among threads gives each input vector the same
    arithmetic as one thread reading them all; a failing chunk raises in the caller."""
    rng = np.random.default_rng(7)
    rows, n = 24, 1000
    codes = rng.integers(0, 256, (n, rows), dtype=np.uint8)
    m = rng.uniform(1e-6, 5e-6, (rows, 12)).astype(np.float32)
    tables = block_tables(m)
    kw = dict(parts=3, g_unit=1e-6, v_read=0.2, adc_bits=8, full_scale=rows * 0.2 * 5e-6)
    monkeypatch.setattr(bitserial, "CHUNK", 10 ** 9)  # one chunk: the calling thread alone
    alone = block_product(codes, tables, np.zeros(4), **kw)
    monkeypatch.setattr(bitserial, "CHUNK", 37)  # 28 chunks, the last one short
    shared = block_product(codes, tables, np.zeros(4), **kw)
    np.testing.assert_array_equal(shared, alone)  # the same code reads each vector

    seen = []

    def read_rows(start: int, stop: int) -> None:
        seen.append((start, stop))
        if start == 37 * 5:
            raise ValueError("chunk 5")

    with pytest.raises(ValueError, match="chunk 5"):
        bitserial._shared_rows(read_rows, n)
    assert sorted(seen) == [(s, min(n, s + 37)) for s in range(0, n, 37)]  # each once


def test_block_read_threads_follow_omp_num_threads(monkeypatch):
    """OMP_NUM_THREADS caps the block read's threads (1: the calling thread alone)."""
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        bitserial._workers.cache_clear()
        assert bitserial._workers() == (None, 0)
        monkeypatch.setenv("OMP_NUM_THREADS", "not a number")  # ignored, as numpy ignores it
        bitserial._workers.cache_clear()
        cores = len(os.sched_getaffinity(0))
        assert bitserial._workers()[1] == cores - 1
    finally:
        bitserial._workers.cache_clear()

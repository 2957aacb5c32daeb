"""The compiled loop of the fast bit-serial read of a row block (`bitserial.block_product`).

This module is a template: `circuitnn.periphery.bitserial` compiles its text as an entry of the
user cache (`circuitnn.cache.compiled_module`, once per machine); nothing imports it directly.

Every slot k of an input vector reads x = b_k @ M, with b_k the 0/1 bit plane of the codes and
M (rows, width) the block's read matrix (v_read x the conductances; for the surrogate its A, P
and Q side by side, `circuitnn.surrogate.model.stack_blocks`). The rows are taken eight at a
time: `partial_sums` tabulates, for every group of eight rows, the sum of M's rows for each of
the 256 bit patterns, so x is the sum of one table row per group whose pattern is not 0 (an
8 x 8 bit transpose of eight codes gives their patterns in all eight slots at once). Then, per
slot and column: the current (`parts` 1: x; 3: the surrogate's binary read A + P Q + y0, as
`circuitnn.surrogate.model.binary_currents`), the ADC code (as `circuitnn.periphery.adc
.adc_codes`: nearest code, saturating at 0 and `top`; mode 1 in float32 with the step's
reciprocal, mode 2 in float64, mode 0 no ADC) and shift-and-add sum_k 2^k code_k. A slot with
no bit set reads the zero-input currents. Read noise, where drawn, is added to each slot's
current before the ADC: its variance is a further part of M (v_read^2 x each cell's conductance
variance), so a slot's standard deviation is the square root of its driven cells' sum. The
arithmetic is that of the numpy path in another
order of the float32 sums (a current within rounding of an ADC threshold may take the other
code). The loop releases the GIL: `bitserial.block_product` shares a read's input vectors out
among the calling thread and idle worker threads, chunk by chunk as each thread is free.
"""

import numba
import numpy as np

#: False in a text compiled in memory (no cache folder to keep numba's cache in)
CACHE = True

jit = numba.njit(cache=CACHE, error_model="numpy")


@jit
def partial_sums(m):
    """(groups * 256, width) table: row 256 g + p = the sum of the rows 8 g + j of m (rows,
    width) over the set bits j of p (rows past the end count as 0)."""
    rows, width = m.shape
    groups = (rows + 7) // 8
    t = np.zeros((groups * 256, width), dtype=m.dtype)
    for g in range(groups):
        for p in range(1, 256):
            low = p & -p
            j = 0
            while (1 << j) != low:
                j += 1
            dst, src, row = 256 * g + p, 256 * g + (p ^ low), 8 * g + j
            if row < rows:
                for q in range(width):
                    t[dst, q] = t[src, q] + m[row, q]
            else:
                for q in range(width):
                    t[dst, q] = t[src, q]
    return t


@jit
def _patterns(codes, i, out):
    """out[g] (uint64): byte k = the bit pattern of rows 8 g .. 8 g + 7 in slot k (bit j = bit
    k of code 8 g + j) of input vector i."""
    rows = codes.shape[1]
    for g in range(out.shape[0]):
        x = np.uint64(0)
        for j in range(min(8, rows - 8 * g)):
            x |= np.uint64(codes[i, 8 * g + j]) << np.uint64(8 * j)
        # transpose the 8 x 8 bit matrix (byte j, bit k) -> (byte k, bit j)
        t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
        x = x ^ t ^ (t << np.uint64(7))
        t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
        x = x ^ t ^ (t << np.uint64(14))
        t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
        out[g] = x ^ t ^ (t << np.uint64(28))


@jit
def _digitise(v, adc, inv_lsb, lsb, top):
    """One ADC conversion in codes (mode 0: the current itself, in float64)."""
    if adc == 0:
        return np.float64(v)
    if adc == 1:
        c = np.rint(v * inv_lsb)
    else:
        c = np.rint(np.float64(v) / lsb)
    return min(max(np.float64(c), 0.0), top)


@numba.njit(cache=CACHE, error_model="numpy", nogil=True)
def shift_add_rows(codes, tables, zero, parts, bits, adc, inv_lsb, lsb, top, z, start, stop,
                   out):
    """Rows start..stop of out (n, cols) float64 += sum_k 2^k (ADC code of slot k's column
    currents) for codes (n, rows) uint8, `partial_sums` tables of the block's matrix (width =
    parts * cols, + cols of read noise variance where z is drawn) and the columns'
    zero-input currents (cols,) float32. z: standard normal draws (n, bits, cols) float32 of the
    read noise, or (0, 0, 0) for none. Runs without the GIL: threads may share out the rows."""
    width = tables.shape[1]
    noisy = z.shape[0] > 0
    cols = width // (parts + 1) if noisy else width // parts
    groups = tables.shape[0] // 256
    idle = np.empty(cols)
    for j in range(cols):
        idle[j] = _digitise(zero[j], adc, inv_lsb, lsb, top)
    x = np.empty(width, dtype=tables.dtype)
    pat = np.empty(groups, dtype=np.uint64)
    for i in range(start, stop):
        _read_vector(codes, i, tables, zero, parts, bits, adc, inv_lsb, lsb, top, z, noisy,
                     cols, groups, width, idle, x, pat, out)


@jit
def _read_vector(codes, i, tables, zero, parts, bits, adc, inv_lsb, lsb, top, z, noisy, cols,
                 groups, width, idle, x, pat, out):
    """Adds input vector i's shift-and-add sums to row i of `shift_add_rows`'s out, with the
    scratch arrays x and pat."""
    _patterns(codes, i, pat)
    for k in range(bits):
        shift = np.uint64(8 * k)
        live = False
        for g in range(groups):
            p = np.int64((pat[g] >> shift) & np.uint64(255))
            if p != 0:
                r = 256 * g + p
                if live:
                    for q in range(width):
                        x[q] += tables[r, q]
                else:
                    for q in range(width):
                        x[q] = tables[r, q]
                    live = True
        w = np.float64(1 << k)
        if not live:
            for j in range(cols):
                out[i, j] += w * idle[j]
        else:
            for j in range(cols):
                if parts == 1:
                    v = x[j]
                else:
                    v = x[j] + x[cols + j] * x[2 * cols + j] + zero[j]
                if noisy:
                    v += np.sqrt(max(x[parts * cols + j], 0.0)) * z[i, k, j]
                out[i, j] += w * _digitise(v, adc, inv_lsb, lsb, top)

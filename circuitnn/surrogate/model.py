"""The surrogate of a 1T1R tile read: a physics-structured expansion at near-matmul cost.

A read of inputs V (batch, rows) gives column currents

    I = y0 + V @ A1 + V^2 @ A2 + V^3 @ A3 + (V @ P + V^2 @ P2 + Z @ K) * (V @ Q)

(powers and * element-wise; Z = 1[V = 0], the rows held at 0 V). Derivation, in the wire
resistance to first order around the exact linear tile:

* y0 + V @ A1 is the tile with every cell replaced by its small-signal conductance
  p1 = f'(0+), solved exactly (all IR drop, sneak paths, driver and sense; `LinearNetwork`). The
  slope is one-sided: reads bias cells at v >= 0, and an asymmetric compact model (Yakopcic,
  MSS: other prefactors for v < 0) has a slope jump, the kink f'(0+) - f'(0-), at 0 V;
* each cell's nonlinearity n_ij(v) = f_ij(v) - p1 v (device I-V in series with the transistor,
  cubic fit p2 v^2 + p3 v^3) is evaluated at the input voltage of its row: V^2 @ p2 + V^3 @ p3;
* the IR drop d_ij that a cell sees changes its nonlinear current by -n'_ij(V_i) d_ij. Its own-row
  part (row line, self-heating of the column line by the cell itself) depends on V_i alone and is
  folded into A2, A3 per cell; the part caused by the other rows of a column is a bilinear form
  sum_i sum_k n'_ij(V_i) K_j[i, k] g_kj V_k with K_j the column line's resistance kernel,
  whose leading eigen-pair lambda_j phi_j carries almost all of it (a smooth ladder kernel):
  (V @ P + V^2 @ P2) * (V @ Q) with P = -2 p2 lambda phi, P2 = -3 p3 lambda phi, Q = g_chord phi;
* a cell whose row is at 0 V is reverse-biased by the column's IR drop, by u_ij = (W_j V)_i in
  the linear tile (`LinearNetwork.reverse_transfer`), and conducts kink_ij u_ij more than there
  (its slope is f'(0-), not p1): sum_i Z_i kink_ij (W_j V)_i, with W_j projected on the same
  Q_j (rank 1, as the bilinear term): K = kink (W_j Q_j) / |Q_j|^2. For binary inputs
  Z = 1 - V / v_read, so the term folds into A1 and P.

Five global factors theta = (nl, row, diag, bil, kink) scale the nonlinear terms (1 = pure first
order); each is a + b_row r_row + b_col r_col, calibrated against circuit solutions
(`circuitnn.surrogate.calibrate`), so that they absorb the second-order terms, which grow with
the wire resistance. Binary inputs (0 or v_read per line) collapse the powers, so a
read is one (batch, rows) @ (rows, 3 cols) product plus (batch, cols) work.

Accuracy (BENCHMARKS.md, surrogate sections): the shipped HfOx card (128 x 16, 0-3 ohm,
4.95-40 uS) is within 0.24% RMS of ngspice; a 16 x 8 Knowm M1 Yakopcic tile (a2 / a1 = 0.057)
at 2 ohm within 0.11% of nodal with theta = 1 (1.0% without the kink term, 44% with the
central-difference slope). Limit: when the column IR drop is of the order of v_read (128 x 16
at 2 ohm with cells of hundreds of uS: the ideal V @ G is off by 100-400%), which cells are
reverse-biased depends on the input pattern and no first-order term captures it; calibration
then fails validation and such tiles are read with nodal or ngspice.

All matrices are computed once per programmed tile (`SurrogateTile`); `SurrogateTile.vjp` gives
gradients with respect to the inputs and the conductances (through that per-tile computation;
the kink term's reverse-bias transfer W is held fixed there, within a few % of finite
differences on an asymmetric card).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitnn.surrogate import physics as ph
from circuitnn.tile.spec import TileSpec

THETA_NAMES = ("nl", "row", "diag", "bil", "kink")
UNIT_THETA = {k: 1.0 for k in THETA_NAMES}
_REL_EPS = 1e-6  # relative conductance step for the per-cell derivative of the cell curves


def resolve_theta(theta: dict | None, spec: TileSpec) -> dict[str, float]:
    """Effective factors for a spec: each entry is a number or [a, b_row, b_col]."""
    if theta is None:
        return dict(UNIT_THETA)
    out = {}
    for k in THETA_NAMES:
        t = theta[k]
        if isinstance(t, (list, tuple, np.ndarray)):
            out[k] = float(t[0] + t[1] * spec.r_row + t[2] * spec.r_col)
        else:
            out[k] = float(t)
    return out


@dataclass(frozen=True)
class BinaryReader:
    """Binary-input (bit-serial) reads of a programmed tile: its m_bin and y0 only."""

    m_bin: np.ndarray  # (rows, 3 cols): [A1 + vr A2 + vr^2 A3 | P + vr P2 | Q]
    y0: np.ndarray
    cols: int

    def block(self, rows: slice, cols: slice | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A, P, Q, y0) of a block: `rows` x `cols` (default all columns) of each matrix."""
        c = self.cols
        cs = slice(0, c) if cols is None else slice(*cols.indices(c))
        m = self.m_bin[rows]
        return (m[:, cs], m[:, c:2 * c][:, cs], m[:, 2 * c:][:, cs], self.y0[cs])

    def read_driven_rows(self, v: np.ndarray, rows: slice, cols: slice | None = None
                         ) -> np.ndarray:
        """Bit-serial read with only `rows` driven and the other rows at 0 V (no checks).

        v: (batch, rows.stop - rows.start), every entry exactly 0 or v_read. Returns the currents
        of `cols` (default all): `SurrogateTile.read(V_full, binary=True)[:, cols]` with V_full
        the inputs zero-padded to all rows, up to floating-point rounding (the zero rows are
        skipped). A float32 v is read in float32 (about twice as fast; rounding ~1e-7).
        """
        m, y0 = stack_blocks([self.block(rows, cols)],
                             dtype=np.float32 if v.dtype == np.float32 else float)
        return binary_currents(v @ m, y0)


def stack_blocks(blocks: list[tuple[np.ndarray, ...]], scale: float = 1.0,
                 dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One matrix for the bit-serial reads of several blocks (`BinaryReader.block`) that take
    the same row inputs: (M, y0) with M = scale x [A_1 .. A_m | P_1 .. P_m | Q_1 .. Q_m] and
    y0 the blocks' zero-input currents side by side; read with `binary_currents(V @ M, y0)`
    (scale = v_read turns 0/1 bit planes into the row voltages)."""
    m = np.concatenate([b[t] for t in range(3) for b in blocks], axis=1)
    if scale != 1.0:
        m = m * scale
    return np.ascontiguousarray(m, dtype=dtype), np.concatenate([b[3] for b in blocks])


def binary_currents(x: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Column currents from x = V @ M of `stack_blocks`: A-part + P-part * Q-part + y0."""
    n = x.shape[1] // 3
    out = x[:, n:2 * n] * x[:, 2 * n:]
    out += x[:, :n]
    if np.any(y0):
        out += y0.astype(out.dtype)
    return out


class SurrogateTile:
    """A programmed tile: the surrogate's matrices for one conductance pattern and spec."""

    def __init__(self, spec: TileSpec, theta: dict[str, float] | None = None,
                 parts: ph.TileParts | None = None) -> None:
        self.spec = spec
        self.theta = resolve_theta(theta, spec)
        self.parts = parts or ph.tile_parts(spec)
        self.v_read = float(spec.v_read)
        self._build()

    def _build(self) -> None:
        p, t = self.parts, self.theta
        cc = p.cc
        cols = self.spec.cols
        self.y0 = p.lin.y0
        self.a1 = p.lin.a1
        self.a2 = t["nl"] * cc.p2 - t["row"] * p.hr[0] - t["diag"] * p.hd[0]
        self.a3 = t["nl"] * cc.p3 - t["row"] * p.hr[1] - t["diag"] * p.hd[1]
        self.p = -t["bil"] * 2.0 * cc.p2 * p.lam_phi
        self.p2 = -t["bil"] * 3.0 * cc.p3 * p.lam_phi
        self.q = cc.gch * p.phi
        # kink: cells of rows at 0 V conduct f'(0-) = p1 - kink when reverse-biased
        self.k = t["kink"] * cc.kink * p.rev if p.rev is not None else None
        self.m1 = np.ascontiguousarray(np.concatenate([self.a1, self.p, self.q], axis=1))
        self.m2 = np.ascontiguousarray(np.concatenate([self.a2, self.p2], axis=1))
        vr = self.v_read
        a_bin = self.a1 + vr * self.a2 + vr * vr * self.a3
        p_bin = self.p + vr * self.p2
        if self.k is not None:  # binary: 1[V = 0] = 1 - V / v_read, the constant folds into A
            a_bin = a_bin + self.k.sum(axis=0) * self.q
            p_bin = p_bin - self.k / vr
        self.m_bin = np.ascontiguousarray(np.concatenate([a_bin, p_bin, self.q], axis=1))
        self._c = cols

    # --- reads -----------------------------------------------------------------------------
    def is_binary(self, v: np.ndarray) -> bool:
        """True when every input is 0 or v_read (bit-serial slots)."""
        return bool(np.all((v == 0.0) | (v == self.v_read)))

    def read(self, v: np.ndarray, binary: bool | None = None) -> np.ndarray:
        """Column currents (batch, cols) in A for inputs v (batch, rows) in V (no checks)."""
        c = self._c
        if binary is None:
            binary = self.is_binary(v)
        if binary:
            x = v @ self.m_bin
            out = x[:, :c] * 1.0
            out += x[:, c:2 * c] * x[:, 2 * c:]
        else:
            x = v @ self.m1
            v2 = v * v
            x2 = v2 @ self.m2
            v2 *= v
            out = x[:, :c] + x2[:, :c]
            out += v2 @ self.a3
            pq = x[:, c:2 * c] + x2[:, c:]
            if self.k is not None:
                pq += (v == 0.0) @ self.k
            out += pq * x[:, 2 * c:]
        if np.any(self.y0):
            out += self.y0
        return out

    def binary_reader(self) -> BinaryReader:
        """What bit-serial reads need of this tile (small enough to keep for every tile of a
        large network)."""
        return BinaryReader(self.m_bin, self.y0, self._c)

    def terms(self, v: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The fixed part y0 + V @ A1 and each theta's term at theta = 1 (for calibration)."""
        p, cc = self.parts, self.parts.cc
        v2 = v * v
        v3 = v2 * v
        base = self.y0 + v @ self.a1
        out = {
            "nl": v2 @ cc.p2 + v3 @ cc.p3,
            "row": -(v2 @ p.hr[0] + v3 @ p.hr[1]),
            "diag": -(v2 @ p.hd[0] + v3 @ p.hd[1]),
            "bil": (v @ (-2.0 * cc.p2 * p.lam_phi) + v2 @ (-3.0 * cc.p3 * p.lam_phi))
            * (v @ self.q),
            "kink": np.zeros_like(base) if p.rev is None
            else ((v == 0.0) @ (cc.kink * p.rev)) * (v @ self.q),
        }
        return base, out

    # --- gradients -------------------------------------------------------------------------
    def vjp(self, v: np.ndarray, d_out: np.ndarray, wrt_g: bool = True
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """(dL/dV, dL/dG) for dL/dI = d_out (batch, cols) at inputs v (batch, rows).

        dL/dG goes through the whole per-tile computation (linear network by its adjoint, the
        per-cell curves by a finite difference of each cell's own series circuit).
        """
        v = np.asarray(v, dtype=float)
        g = np.asarray(d_out, dtype=float)
        v2 = v * v
        v3 = v2 * v
        a = v @ self.p + v2 @ self.p2
        zero = (v == 0.0).astype(float) if self.k is not None else None
        if zero is not None:  # the zero-row mask is piecewise constant: no input gradient
            a = a + zero @ self.k
        b = v @ self.q
        gb = g * b
        ga = g * a
        dv = (g @ self.a1.T + 2 * v * (g @ self.a2.T) + 3 * v2 * (g @ self.a3.T)
              + gb @ self.p.T + 2 * v * (gb @ self.p2.T) + ga @ self.q.T)
        if not wrt_g:
            return dv, None
        d = {"a1": v.T @ g, "a2": v2.T @ g, "a3": v3.T @ g, "p": v.T @ gb, "p2": v2.T @ gb,
             "q": v.T @ ga, "y0": g.sum(axis=0)}
        if zero is not None:
            d["k"] = zero.T @ gb
        return dv, self._vjp_g(d)

    def _vjp_g(self, d: dict[str, np.ndarray]) -> np.ndarray:
        p, t, cc = self.parts, self.theta, self.parts.cc
        vs = cc.vs
        d_p1 = p.lin.vjp_p1(d["a1"], d["y0"])
        d_p2 = t["nl"] * d["a2"] - t["bil"] * 2.0 * p.lam_phi * d["p"]
        d_p3 = t["nl"] * d["a3"] - t["bil"] * 3.0 * p.lam_phi * d["p2"]
        d_q = d["q"].copy()
        d_kink = np.zeros_like(d_q)
        if "k" in d:  # k = theta kink rev, rev = (W q) / |q|^2 (W held fixed, see docstring)
            qq = np.sum(self.q ** 2, axis=0)
            d_rev = t["kink"] * cc.kink * d["k"]
            d_kink = t["kink"] * p.rev * d["k"]
            d_q += np.einsum("icl,ic->lc", p.w_rev, d_rev) / qq
            d_q -= 2.0 * self.q * np.sum(d_rev * p.rev, axis=0) / qq
        d_gch = p.phi * d_q
        d_a23 = np.stack([d["a2"], d["a3"]])
        dh_row = ph.fit23_adjoint(vs, -t["row"] * d_a23)
        dh_diag = ph.fit23_adjoint(vs, -t["diag"] * d_a23)
        # h_row = df * rho - p1 * rho_lin
        d_df = dh_row * p.rho
        d_rho = dh_row * cc.df
        d_p1 -= np.sum(dh_row * p.rho_lin, axis=-1)
        d_rho_lin = -dh_row * cc.p1[..., None]
        d_f = np.einsum("rcd,rcs->rds", p.kr, d_rho)
        d_p1 += np.einsum("rcd,rc->rd", p.kr, np.sum(d_rho_lin * vs, axis=-1))
        # h_diag = diag * (df * gch - p1^2) * vs
        w = dh_diag * p.diag[..., None] * vs
        d_df += w * cc.gch[..., None]
        d_gch += np.sum(w * cc.df, axis=-1)
        d_p1 -= 2.0 * cc.p1 * np.sum(w, axis=-1)
        # per-cell curves depend on each cell's own conductance only
        g0 = self.spec.conductance
        h = _REL_EPS * g0
        lo, hi = self.spec.device_model.g_range if self.spec.device is not None else (0, np.inf)
        up = np.minimum(g0 + h, hi)
        dn = np.maximum(g0 - h, lo)
        c_up = ph.cell_curves(self.spec, up)
        c_dn = ph.cell_curves(self.spec, dn)
        span = up - dn
        grad = np.zeros_like(g0)
        for name, dq in (("p1", d_p1), ("p2", d_p2), ("p3", d_p3), ("gch", d_gch),
                         ("kink", d_kink)):
            grad += dq * (getattr(c_up, name) - getattr(c_dn, name)) / span
        grad += np.sum(d_f * (c_up.f - c_dn.f) + d_df * (c_up.df - c_dn.df), axis=-1) / span
        return grad


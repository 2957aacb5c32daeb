"""Per-tile physics of the surrogate: cell I-V polynomials, line kernels, the linearised network.

Everything here is computed once when a tile is programmed (from its `TileSpec`), never per
read, in one pass (`tile_parts`): the cell curves sampled, the tile's network assembled once and
solved linearised, the wire kernels (cached per `settings_key`: they do not depend on the
conductances). The circuit is `circuitnn.tile.nodal`'s (same node space, same cell equations):

* `cell_curves`: each cell's current f_ij(v) with its column terminal at 0 V (memristor + access
  transistor in series, `CellModel.cell_current`), sampled on [0, v_read]; the one-sided slope
  f'(0+) is the cell's small-signal conductance p1 (reads bias cells at v >= 0; compact models
  such as Yakopcic's have other prefactors for v < 0, so the I-V can have a kink at 0 V); the rest
  is a cubic fit f - p1 v ~ p2 v^2 + p3 v^3; kink = f'(0+) - f'(0-) is the slope jump that a
  cell reverse-biased by IR drop sees.
* `line_kernels`: the resistance kernel of every column line (voltage rise at each cell's column
  node per unit current injected at another) and of every row line, from the wire network alone.
* `LinearNetwork`: the tile with every cell replaced by its small-signal conductance p1, solved
  exactly for a unit input on each row (sparse LU): I_lin = y0 + V @ A1. Its adjoint gives
  dA1/dp1 for gradients with respect to the conductances; `reverse_transfer` gives the voltage
  by which each cell is reverse-biased per unit input on each other row.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from circuitnn.tile.nodal import CellModel, Network, assemble_network
from circuitnn.tile.spec import TileSpec

N_SAMPLES = 17  # voltage samples of each cell curve on [0, v_read]
_H = 1e-6  # V, finite-difference step for cell slopes
_KINK_TOL = 1e-6  # relative slope jumps below this are taken as 0 (smooth I-V)


@dataclass
class CellCurves:
    """Per-cell I-V data (rows, cols[, samples]) used by the surrogate."""

    vs: np.ndarray  # (S,) sample voltages on [0, v_read]
    f: np.ndarray  # (R, C, S) cell current at vs
    df: np.ndarray  # (R, C, S) dI/dv at vs (one-sided at 0)
    p1: np.ndarray  # (R, C) small-signal conductance f'(0+)
    p2: np.ndarray  # (R, C) cubic-fit coefficients of f - p1 v
    p3: np.ndarray
    gch: np.ndarray  # (R, C) chord conductance f(v_read) / v_read
    kink: np.ndarray  # (R, C) slope jump at 0 V: f'(0+) - f'(0-)


def _fit23(vs: np.ndarray) -> np.ndarray:
    """(2, S) pseudo-inverse mapping samples y(vs) to (c2, c3) of y ~ c2 v^2 + c3 v^3."""
    return np.linalg.pinv(np.stack([vs ** 2, vs ** 3], axis=1))


def settings_key(spec: TileSpec) -> tuple:
    """Everything of a spec except its conductances (hashable)."""
    dev = None if spec.device is None else repr(spec.device.values())
    mask = None if spec.row_mask is None else spec.row_mask.tobytes()
    return (spec.shape, spec.cell, dev, spec.r_row, spec.r_col, spec.r_wl, spec.r_driver,
            spec.v_gate, repr(asdict(spec.transistor)), spec.sense, repr(asdict(spec.tia)), mask,
            spec.gmin, spec.v_read)


# the last sampled tiles per settings: re-programming a tile (hybrid training) re-samples only the
# cells whose conductance changed, starting from the stored tile of the same settings that differs
# least (tiles of one spec, e.g. the PEs of one layer, alternate without evicting each other)
_LAST: OrderedDict[object, tuple[tuple, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = (
    OrderedDict())
_LAST_SIZE = 8


def _sample(spec: TileSpec, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell's current and slope at the sample voltages (R, C, S), and its slope just below
    0 V (R, C). Slopes at vs[0] = 0 are one-sided (second-order differences): the cell's I-V
    may have a kink at 0 V (different branches for v >= 0 and v < 0). Without a row mask the
    cells differ only in their conductance: each distinct one is sampled once (a tile
    programmed to weight levels holds a few dozen)."""
    g = spec.conductance
    if spec.row_mask is None:
        levels, where = np.unique(g, return_inverse=True)
        if levels.size < g.size:
            f, df, dfm = _sample(spec.with_(conductance=levels[None, :]), vs)
            where = where.reshape(g.shape)
            return f[0][where], df[0][where], dfm[0][where]
    grid = np.concatenate([vs, vs + _H, vs - _H, [2 * _H, -_H, -2 * _H]])
    cur = _currents(CellModel(spec), spec, grid)
    s = len(vs)
    f = cur[..., :s]
    df = (cur[..., s:2 * s] - cur[..., 2 * s:3 * s]) / (2 * _H)
    f0, fp1, fp2, fm1, fm2 = f[..., 0], cur[..., s], cur[..., -3], cur[..., -2], cur[..., -1]
    df[..., 0] = (-3 * f0 + 4 * fp1 - fp2) / (2 * _H)
    return f, df, (3 * f0 - 4 * fm1 + fm2) / (2 * _H)


def _sample_incremental(spec: TileSpec, vs: np.ndarray, key: tuple
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = spec.conductance
    best, best_changed = None, None
    if spec.row_mask is None:
        for slot, (k, g0, *_) in _LAST.items():
            if k == key and g0.shape == g.shape:
                changed = g != g0
                if best_changed is None or changed.sum() < best_changed.sum():
                    best, best_changed = slot, changed
    if best is not None and best_changed.mean() < 0.5:  # cells are independent: sample changed
        _, _, f0, df0, dfm0 = _LAST[best]
        if not best_changed.any():
            _LAST.move_to_end(best)
            return f0, df0, dfm0
        sub = spec.with_(conductance=g[best_changed][None, :])
        fs, dfs, dfms = _sample(sub, vs)
        f, df, dfm = f0.copy(), df0.copy(), dfm0.copy()
        f[best_changed], df[best_changed], dfm[best_changed] = fs[0], dfs[0], dfms[0]
        del _LAST[best]
    else:
        f, df, dfm = _sample(spec, vs)
    _LAST[object()] = (key, g.copy(), f, df, dfm)
    while len(_LAST) > _LAST_SIZE:
        _LAST.popitem(last=False)
    return f, df, dfm


def cell_curves(spec: TileSpec, conductance: np.ndarray | None = None,
                settings: tuple | None = None) -> CellCurves:
    """Sample every cell's series I-V on [0, v_read] (optionally for other conductances);
    settings: `settings_key(spec)`, when the caller has it."""
    settings = settings_key(spec) if settings is None else settings
    if conductance is not None:
        spec = spec.with_(conductance=conductance)
    vr = float(spec.v_read)
    vs = np.linspace(0.0, vr, N_SAMPLES)
    f, df, dfm = _sample_incremental(spec, vs, settings)
    p1 = df[..., 0]
    resid = f - p1[..., None] * vs
    c = np.einsum("ks,rcs->krc", _fit23(vs), resid)
    kink = p1 - dfm
    kink[np.abs(kink) <= _KINK_TOL * np.abs(p1)] = 0.0  # a smooth I-V: difference noise only
    return CellCurves(vs=vs, f=f, df=df, p1=p1, p2=c[0], p3=c[1], gch=f[..., -1] / vr,
                      kink=kink)


def _currents(cells: CellModel, spec: TileSpec, grid: np.ndarray) -> np.ndarray:
    """(R, C, len(grid)) cell currents with the column terminal grounded."""
    top = np.broadcast_to(grid[:, None, None], (grid.size,) + spec.shape)
    return np.moveaxis(cells.cell_current(top, np.zeros_like(top)), 0, -1)


def fit23(vs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares (c2, c3) of y(..., S) ~ c2 v^2 + c3 v^3: returns (2, ...)."""
    return np.moveaxis(np.einsum("ks,...s->...k", _fit23(vs), y), -1, 0)


def fit23_adjoint(vs: np.ndarray, dc: np.ndarray) -> np.ndarray:
    """Adjoint of `fit23`: gradient on the samples (..., S) from a gradient dc (2, ...)."""
    return np.einsum("ks,k...->...s", _fit23(vs), dc)


# --- line kernels ---------------------------------------------------------------------------
def _kernel(net: Network, nodes: np.ndarray, members: np.ndarray,
            memo: dict[bytes, np.ndarray]) -> np.ndarray:
    """Resistance kernel among `nodes` of one line: inverse of its sub-Laplacian over `members`
    (the line's unknown nodes, cells disconnected); known nodes get zero rows/columns. Lines
    with the same sub-Laplacian (the usual case) are inverted once (`memo`)."""
    k = np.zeros((nodes.size, nodes.size))
    members = np.unique(members[members < net.n])
    if members.size == 0:
        return k
    sub = net.lap[members][:, members].toarray()
    pos = {int(m): p for p, m in enumerate(members)}
    where = np.array([pos.get(int(x), -1) for x in nodes])
    key = sub.tobytes() + where.tobytes()
    if key not in memo:
        inv = np.linalg.inv(sub)
        ok = where >= 0
        k[np.ix_(ok, ok)] = inv[np.ix_(where[ok], where[ok])]
        memo[key] = k
    return memo[key]


def top_eigen(kernels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest eigenvalue (L,) and its eigenvector (L, n), summing to >= 0, of each symmetric
    kernel (L, n, n); identical kernels are decomposed once."""
    lam = np.empty(kernels.shape[0])
    vec = np.empty(kernels.shape[:2])
    memo: dict[bytes, tuple[float, np.ndarray]] = {}
    for j, k in enumerate(kernels):
        key = k.tobytes()
        if key not in memo:
            w, v = np.linalg.eigh(k)
            x = v[:, -1] * (1.0 if v[:, -1].sum() >= 0 else -1.0)
            memo[key] = (float(w[-1]), x)
        lam[j], vec[j] = memo[key]
    return lam, vec


def line_kernels(spec: TileSpec, net: Network) -> tuple[np.ndarray, np.ndarray]:
    """Column kernels (C, R, R) and row kernels (R, C, C) in ohms of the tile's network `net`.

    A line's nodes are its cells' terminals plus, for a column with a TIA, the sense node, and
    for a row, the input node behind the driver resistance.
    """
    rows, cols = spec.shape
    top = net.top.reshape(rows, cols)
    bot = net.bot.reshape(rows, cols)
    kc = np.empty((cols, rows, rows))
    memo: dict[bytes, np.ndarray] = {}
    for j in range(cols):
        members = np.concatenate([bot[:, j], [net.sense[j]]])
        kc[j] = _kernel(net, bot[:, j], members, memo)
    kr = np.empty((rows, cols, cols))
    lap = net.lap.tocsr()
    memo = {}
    other = np.zeros(net.n + net.nk, dtype=bool)
    other[net.bot] = True
    if spec.cell == "1t1r":
        other[net.mid] = True
    for i in range(rows):
        # the input node is the unknown neighbour of the first cell's row node, if any
        nb = lap[top[i, 0]].indices
        members = np.concatenate([top[i], nb[(nb < net.n) & ~other[nb]]])
        kr[i] = _kernel(net, top[i], members, memo)
    return kc, kr


# --- linearised network ---------------------------------------------------------------------
class LinearNetwork:
    """The tile with small-signal cells p1: I = y0 + V @ A1, plus the adjoint for dA1/dp1."""

    def __init__(self, spec: TileSpec, p1: np.ndarray, net: Network) -> None:
        self.spec = spec
        self.net = net
        self.p1 = p1
        total = net.n + net.nk
        # cell stamps: 1T1R = two conductances 2 p1 in series (top-mid, mid-bot); passive: p1
        if spec.cell == "1t1r":
            self.branches = [(net.top, net.mid, 2.0), (net.mid, net.bot, 2.0)]
        else:
            self.branches = [(net.top, net.bot, 1.0)]
        ra, rb, rv = [], [], []
        for a, b, scale in self.branches:
            g = scale * p1.ravel()
            ra += [a, b, a, b]
            rb += [a, b, b, a]
            rv += [g, g, -g, -g]
        stamp = sp.csr_matrix((np.concatenate(rv), (np.concatenate(ra), np.concatenate(rb))),
                              shape=(total, total))
        full = (net.lap + stamp).tocsr()
        n = net.n
        self.full = full
        self.lu = spla.splu(full[:n, :n].tocsc(), permc_spec="COLAMD")
        rows, cols = spec.shape
        # output functionals c (cols, total): ideal sense = current into the sense node;
        # TIA = gain (v_s - v_os) / r_f
        self.ext = np.zeros((cols, total))
        if spec.sense == "tia":
            t = spec.tia
            c = np.zeros((cols, total))
            c[np.arange(cols), net.sense] = t.gain / t.r_f
            self.c_const = -t.gain * t.v_offset / t.r_f
        else:
            c = -full[net.sense].toarray()
            self.c_const = 0.0
            self.ext[np.arange(cols), net.sense] = 1.0
        self.c = c
        # adjoint: y = c_u x_u + c_k u + c0 with x_u = -G_uu^-1 (G_uk u + i0)
        self.lam = _solve(self.lu, c[:, :n].T, trans="T")  # (n, cols)
        g_uk_drv = full[:n, n:][:, net.driver - n]  # (n, rows)
        self.a1 = (-(g_uk_drv.T @ self.lam) + c[:, net.driver].T)  # (rows, cols)
        self.y0 = -(net.i_const[:n] @ self.lam) + self.c_const
        self._x: np.ndarray | None = None

    @property
    def x(self) -> np.ndarray:
        """(total, rows + 1) node voltages for a unit input on each row, then for zero input."""
        if self._x is None:
            net, n, rows = self.net, self.net.n, self.spec.rows
            u = np.zeros((net.nk, rows + 1))
            u[net.driver - n, np.arange(rows)] = 1.0
            rhs = -(self.full[:n, n:] @ u) - net.i_const[:n, None]
            self._x = np.vstack([_solve(self.lu, rhs), u])
        return self._x

    def reverse_transfer(self) -> np.ndarray:
        """(R, C, R): W[i, j, l] = bot - top voltage of cell (i, j) per unit input on row l
        (zero-input part excluded), with W[i, j, i] = 0: how far the other rows' inputs
        reverse-bias a cell whose own row is at 0 V."""
        rows, cols = self.spec.shape
        x = self.x
        x_in = x[:, :-1] - x[:, -1:]
        w = (x_in[self.net.bot] - x_in[self.net.top]).reshape(rows, cols, rows)
        w[np.arange(rows), :, np.arange(rows)] = 0.0
        return w

    def vjp_p1(self, d_a1: np.ndarray, d_y0: np.ndarray | None = None) -> np.ndarray:
        """dL/dp1 (rows, cols) given dL/dA1 (rows, cols) [and dL/dy0 (cols,)]."""
        net = self.net
        n = net.n
        lam = self.lam
        adj = self.ext.T.copy()  # (total, cols): +1 at an ideal sense node (its own current)
        adj[:n] = lam
        # input responses minus zero-input response, and the zero-input response itself
        x_in = self.x[:, :-1] - self.x[:, -1:]  # (total, rows)
        x0 = self.x[:, -1]
        grad = np.zeros(self.p1.size)
        for a, b, scale in self.branches:
            dx = x_in[a] - x_in[b]  # (cells, rows)
            dl = adj[a] - adj[b]  # (cells, cols)
            # d y_j(V) / d g = -(adj_a - adj_b) (x_a(V) - x_b(V)); A1 row i = y(e_i) - y(0)
            t = np.einsum("ci,ij,cj->c", dx, d_a1, dl, optimize=True)
            if d_y0 is not None:
                t += np.einsum("c,j,cj->c", x0[a] - x0[b], d_y0, dl)
            grad -= scale * t
        return grad.reshape(self.p1.shape)


def _solve(lu: spla.SuperLU, rhs: np.ndarray, trans: str = "N", chunk: int = 16) -> np.ndarray:
    """Solve with many right-hand sides in chunks (SuperLU is slow on wide blocks)."""
    out = np.empty(rhs.shape)
    for k in range(0, rhs.shape[1], chunk):
        out[:, k:k + chunk] = lu.solve(np.asfortranarray(rhs[:, k:k + chunk]), trans=trans)
    return out


# --- the whole tile, one pass ---------------------------------------------------------------
@dataclass
class TileParts:
    """Theta-independent per-tile pieces of the surrogate (`circuitnn.surrogate.model`)."""

    cc: CellCurves
    lin: LinearNetwork
    lam_phi: np.ndarray  # (R, C) lambda_j phi_ij
    phi: np.ndarray  # (R, C)
    diag: np.ndarray  # (R, C) column kernel diagonal minus its rank-1 part
    kr: np.ndarray  # (R, C, C) row kernels
    rho: np.ndarray  # (R, C, S) own-row IR drop of each cell's row at each sample voltage
    rho_lin: np.ndarray  # (R, C, S) the same with small-signal cells
    hr: np.ndarray  # (2, R, C) own-row correction coefficients (v^2, v^3)
    hd: np.ndarray  # (2, R, C) own-node column correction coefficients
    rev: np.ndarray | None  # (R, C) rank-1 reverse bias of each cell per unit of V @ Q
    w_rev: np.ndarray | None  # (R, C, R) reverse-bias transfer (`LinearNetwork.reverse_transfer`)


_WIRES: dict[tuple, tuple[np.ndarray, ...]] = {}  # wire-only pieces per spec settings


def _wire_parts(spec: TileSpec, net: Network, settings: tuple) -> tuple[np.ndarray, ...]:
    """Row kernels and the column kernels' leading eigen-pairs (and diagonal rest): they depend
    on the wires only, not on the conductances, so they are computed once per settings."""
    if settings not in _WIRES:
        if len(_WIRES) > 8:
            _WIRES.clear()
        kc, kr = line_kernels(spec, net)
        lam, phi = top_eigen(kc)  # (C,), (C, R)
        phi = phi.T
        diag = np.diagonal(kc, axis1=1, axis2=2).T - lam * phi ** 2
        _WIRES[settings] = (kr, lam, phi, diag)
    return _WIRES[settings]


def tile_parts(spec: TileSpec, settings: tuple | None = None) -> TileParts:
    """Everything the surrogate needs of a programmed tile, in one pass: the cell curves, the
    network (assembled once) solved with small-signal cells, the wire kernels; settings:
    `settings_key(spec)`, when the caller has it."""
    settings = settings_key(spec) if settings is None else settings
    net = assemble_network(spec)
    cc = cell_curves(spec, settings=settings)
    lin = LinearNetwork(spec, cc.p1, net)
    kr, lam, phi, diag = _wire_parts(spec, net, settings)
    vs = cc.vs
    rho = np.einsum("rcd,rds->rcs", kr, cc.f)
    rho_lin = np.einsum("rcd,rd->rc", kr, cc.p1)[..., None] * vs
    h_row = cc.df * rho - cc.p1[..., None] * rho_lin
    h_diag = diag[..., None] * (cc.df * cc.gch[..., None] - cc.p1[..., None] ** 2) * vs
    rev, w_rev = None, None
    if np.any(cc.kink):
        w_rev = lin.reverse_transfer()
        q = cc.gch * phi
        rev = np.einsum("icl,lc->ic", w_rev, q) / np.sum(q * q, axis=0)
    return TileParts(cc, lin, lam * phi, phi, diag, kr, rho, rho_lin, fit23(vs, h_row),
                     fit23(vs, h_diag), rev, w_rev)

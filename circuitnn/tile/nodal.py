"""Our own exact DC solver of a tile read: sparse nodal analysis + Newton, batched.

The circuit is the one `circuitnn.tile.netlist` writes for ngspice, equation for equation:

* wires, driver resistances, the TIA's feedback (vo = A (V_os - v_s) eliminated: a conductance
  (1 + A) / R_f to ground plus a constant current) and ngspice's junction gmin from each
  transistor's drain and source to the grounded body are linear (`assemble_network`);
* each cell's memristor is the card's own current equation (`Device.current`, the same single
  definition that the ngspice subcircuit is generated from);
* the access transistor follows ngspice's MOS level-1 (Shichman-Hodges) drain current with
  GAMMA = 0 and IS = 0: cut-off / linear / saturation, channel-length modulation, and source /
  drain swapped when V_DS < 0 (`mos1_current`, after ngspice's mos1load.c).

Word lines carry no DC current (level-1 MOSFETs have no DC gate current), so every gate sits at
its row's word-line drive whatever r_wl is; r_wl matters only in transients.

Unknowns: row-line nodes, cell internal nodes (1T1R) and column-line nodes (plus the sense
nodes with a TIA); nodes joined by zero resistances are merged, and nodes tied to ideal sources
(drivers with r_driver = 0, virtual grounds) are known. Linear tiles (passive ohmic cells) are
one sparse LU and one multi-right-hand-side solve. Nonlinear tiles start from the solution of a
linearised tile (memristor -> its programmed conductance, transistor -> its V_DS = 0
conductance; one factorisation for the whole batch), then run full Newton on a chunk of vectors
at once: the chunk's Jacobians form one block-diagonal sparse matrix (fixed pattern, one splu).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from circuitnn.errors import CircuitnnError
from circuitnn.tile.spec import TileSpec, check_inputs


# --- element equations --------------------------------------------------------------------
def mos1_current(vgs, vds, beta: float, vto: float, lam: float):
    """ngspice MOS level-1 NMOS drain current and its derivatives (GAMMA = 0, body ignored).

    Returns (ids, d ids / d vgs, d ids / d vds); ids flows drain -> source. For vds < 0 the
    roles of drain and source swap (ngspice's "mode"), as in mos1load.c.
    """
    vgs = np.asarray(vgs, dtype=float)
    vds = np.asarray(vds, dtype=float)
    fwd = vds >= 0
    x = np.abs(vds)
    vgst = np.where(fwd, vgs, vgs - vds) - vto
    on = vgst > 0
    sat = vgst <= x
    betap = beta * (1 + lam * x)
    cd = np.where(sat, 0.5 * betap * vgst * vgst, betap * x * (vgst - 0.5 * x))
    gm = np.where(sat, betap * vgst, betap * x)
    gds = np.where(sat, 0.5 * lam * beta * vgst * vgst,
                   betap * (vgst - x) + lam * beta * x * (vgst - 0.5 * x))
    cd, gm, gds = (np.where(on, a, 0.0) for a in (cd, gm, gds))
    ids = np.where(fwd, cd, -cd)
    d_vgs = np.where(fwd, gm, -gm)
    d_vds = np.where(fwd, gds, gm + gds)
    return ids, d_vgs, d_vds


class CellModel:
    """The element equations of a tile's cells (memristor, access transistor), vectorised.

    Arrays broadcast against the tile shape (rows, cols); leading batch axes are allowed.
    """

    def __init__(self, spec: TileSpec) -> None:
        self.spec = spec
        self.kind = spec.cell
        self.device = spec.device_model
        self.states = spec.states
        self.g = spec.conductance
        t = spec.transistor
        self.beta, self.vto, self.lam = t.beta, t.vto, t.lam
        self.gate = spec.gate_voltages[:, None]  # (rows, 1)
        self.gmin = spec.gmin

    @property
    def linear(self) -> bool:
        """True when every cell is linear (passive ohmic)."""
        return self.kind == "passive" and self.device is None

    def memristor(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Memristor current (A) at device voltage v and its derivative dI/dv (S)."""
        if self.device is None:
            return self.g * v, np.broadcast_to(self.g, np.shape(v))
        i = self.device.current(v, self.states)
        h = 1e-5
        di = (self.device.current(v + h, self.states) - self.device.current(v - h, self.states))
        return i, di / (2 * h)

    def transistor(self, v_d: np.ndarray, v_s: np.ndarray):
        """Drain current (A) and (d/dv_d, d/dv_s) at drain/source voltages; gate per row."""
        ids, d_vgs, d_vds = mos1_current(self.gate - v_s, v_d - v_s, self.beta, self.vto,
                                         self.lam)
        return ids, d_vds, -d_vgs - d_vds

    def cell_current(self, v_top, v_bot, tol: float = 1e-14, max_iter: int = 100) -> np.ndarray:
        """Current (A) from a cell's row terminal at v_top to its column terminal at v_bot.

        1T1R: the internal node is solved per cell (safeguarded Newton; the memristor current
        equals the drain current plus the drain junction's gmin). Returns the current entering
        the column terminal (the transistor's source current).
        """
        v_top = np.asarray(v_top, dtype=float)
        v_bot = np.asarray(v_bot, dtype=float)
        if self.kind == "passive":
            return self.memristor(v_top - v_bot)[0] + 0.0 * v_bot
        shape = np.broadcast_shapes(v_top.shape, v_bot.shape, self.g.shape)
        lo = np.broadcast_to(np.minimum(v_top, v_bot), shape).copy()
        hi = np.broadcast_to(np.maximum(v_top, v_bot), shape).copy()
        # f(m) = i_mem(top - m) - ids(m) - gmin m is decreasing in m; root in [lo', hi'] with
        # the gmin term pulling it slightly toward 0: widen the bracket to include 0
        lo = np.minimum(lo, 0.0)
        hi = np.maximum(hi, 0.0)
        m = 0.5 * (lo + hi)
        for _ in range(max_iter):
            im, gm_ = self.memristor(v_top - m)
            ids, d_d, _ = self.transistor(m, v_bot)
            f = im - ids - self.gmin * m
            lo = np.where(f > 0, m, lo)
            hi = np.where(f <= 0, m, hi)
            df = -gm_ - d_d - self.gmin
            step = m - f / np.where(df != 0, df, -1.0)
            bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
            new = np.where(bad, 0.5 * (lo + hi), step)
            done = np.max(np.abs(new - m), initial=0.0) <= tol
            m = new
            if done:
                break
        return self.transistor(m, v_bot)[0]


# --- linear network -------------------------------------------------------------------------
@dataclass
class Network:
    """A tile's node space and linear part, built once per spec.

    Node indices: unknowns 0..n-1, then known nodes n..n+nk-1 (ground, drivers, ideal sense
    nodes). `lap` is the full nodal conductance matrix (Laplacian plus conductances to ground)
    over all n + nk nodes; `i_const` the constant current leaving each node. Cells: `top`, `mid`
    (-1 for passive cells) and `bot` node index of each cell, flattened row-major.
    """

    n: int
    nk: int
    lap: sp.csr_matrix
    i_const: np.ndarray
    top: np.ndarray
    mid: np.ndarray
    bot: np.ndarray
    driver: np.ndarray  # (rows,) index of each row's source node (known)
    sense: np.ndarray  # (cols,) index of each sense node

    @property
    def g_uu(self) -> sp.csr_matrix:
        return self.lap[: self.n, : self.n]

    @property
    def g_uk(self) -> sp.csr_matrix:
        return self.lap[: self.n, self.n:]

    def known_values(self, v: np.ndarray) -> np.ndarray:
        """(batch, nk) known node voltages for inputs v (batch, rows); others are 0 V."""
        u = np.zeros((v.shape[0], self.nk))
        u[:, self.driver - self.n] = v
        return u


class _Nodes:
    def __init__(self) -> None:
        self.count = 0
        self.known: list[int] = []

    def new(self, k: int = 1, known: bool = False) -> np.ndarray:
        ids = np.arange(self.count, self.count + k)
        self.count += k
        if known:
            self.known += ids.tolist()
        return ids


def _union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.array([root(x) for x in range(n)])


def assemble_network(spec: TileSpec) -> Network:
    """Build the node space and linear elements of a tile (wires, driver, TIA, gmin)."""
    rows, cols = spec.shape
    nodes = _Nodes()
    gnd = nodes.new(known=True)[0]
    drv = nodes.new(rows, known=True)
    inp = nodes.new(rows)
    r = nodes.new(rows * cols).reshape(rows, cols)
    mid = nodes.new(rows * cols).reshape(rows, cols) if spec.cell == "1t1r" else None
    c = nodes.new(rows * cols).reshape(rows, cols)
    s = nodes.new(cols, known=spec.sense == "ideal")

    ea: list[np.ndarray] = []  # resistors: node a, node b, resistance
    eb: list[np.ndarray] = []
    er: list[np.ndarray] = []

    def add(a, b, res) -> None:
        a, b = np.ravel(a), np.ravel(b)
        ea.append(a)
        eb.append(b)
        er.append(np.broadcast_to(float(res), a.shape))

    add(drv, inp, spec.r_driver)
    add(inp, r[:, 0], spec.r_row)
    add(r[:, :-1], r[:, 1:], spec.r_row)
    add(c[:-1, :], c[1:, :], spec.r_col)
    add(c[-1, :], s, spec.r_col)
    a, b, res = (np.concatenate(x) for x in (ea, eb, er))

    zero = res == 0
    rep = _union_find(nodes.count, a[zero], b[zero])
    known_raw = np.zeros(nodes.count, dtype=bool)
    known_raw[nodes.known] = True
    groups, inverse = np.unique(rep, return_inverse=True)
    g_known = np.zeros(len(groups), dtype=bool)
    np.logical_or.at(g_known, inverse, known_raw)
    count_known = np.bincount(inverse, weights=known_raw, minlength=len(groups))
    if np.any(count_known > 1):
        raise CircuitnnError("zero resistances short two ideal sources together")
    # unknown groups first, then known groups
    order = np.argsort(g_known, kind="stable")
    pos = np.empty(len(groups), dtype=int)
    pos[order] = np.arange(len(groups))
    idx = pos[inverse]  # raw node -> final index
    n = int(np.sum(~g_known))
    nk = int(np.sum(g_known))
    total = n + nk

    # stamps: resistors, gmin to ground, TIA conductance to ground
    keep = ~zero
    ga, gb, gv = idx[a[keep]], idx[b[keep]], 1.0 / res[keep]
    ra, rb, rv = [ga, gb, ga, gb], [ga, gb, gb, ga], [gv, gv, -gv, -gv]
    i_const = np.zeros(total)
    ground = idx[gnd]
    shunt_nodes, shunt_g = [], []
    if spec.cell == "1t1r" and spec.gmin > 0:
        shunt_nodes += [idx[mid.ravel()], idx[c.ravel()]]
        shunt_g += [np.full(rows * cols, spec.gmin)] * 2
    if spec.sense == "tia":
        t = spec.tia
        shunt_nodes.append(idx[s])
        shunt_g.append(np.full(cols, (1 + t.gain) / t.r_f))
        np.add.at(i_const, idx[s], -t.gain * t.v_offset / t.r_f)
    if shunt_nodes:
        sn, sg = np.concatenate(shunt_nodes), np.concatenate(shunt_g)
        ra += [sn, sn, np.full_like(sn, ground), np.full_like(sn, ground)]
        rb += [sn, np.full_like(sn, ground), sn, np.full_like(sn, ground)]
        rv += [sg, -sg, -sg, sg]
    lap = sp.csr_matrix((np.concatenate(rv), (np.concatenate(ra), np.concatenate(rb))),
                        shape=(total, total))
    lap.sum_duplicates()
    return Network(
        n=n, nk=nk, lap=lap, i_const=i_const,
        top=idx[r.ravel()], mid=idx[mid.ravel()] if mid is not None else np.full(
            rows * cols, -1), bot=idx[c.ravel()], driver=idx[drv], sense=idx[s])


# --- Newton solver ----------------------------------------------------------------------------
class _Pattern:
    """Fixed sparsity pattern of the unknown-unknown Jacobian: linear part + cell stamps."""

    def __init__(self, net: Network, kind: str) -> None:
        n = net.n
        guu = net.g_uu.tocoo()
        if kind == "1t1r":
            t, m, b = net.top, net.mid, net.bot
            # memristor (t, m): 4 entries; transistor (m, b): 4 entries
            pr = [t, t, m, m, m, m, b, b]
            pc = [t, m, t, m, m, b, m, b]
        else:
            t, b = net.top, net.bot
            pr = [t, t, b, b]
            pc = [t, b, t, b]
        self.n_stamp = len(pr)
        rr = np.concatenate([guu.row] + pr)
        cc = np.concatenate([guu.col] + pc)
        ok = (rr < n) & (cc < n)
        self.ok = ok
        key = rr[ok].astype(np.int64) * n + cc[ok]
        uniq, inv = np.unique(key, return_inverse=True)
        self.inv = inv
        self.nnz = len(uniq)
        rows_u, cols_u = uniq // n, uniq % n
        # CSC order for one block
        csc = sp.csc_matrix((np.arange(1, self.nnz + 1, dtype=float), (rows_u, cols_u)),
                            shape=(n, n))
        self.perm = (csc.data - 1).astype(np.int64)  # csc position -> unique entry
        self.indices = csc.indices
        self.indptr = csc.indptr
        self.base = guu.data
        self.n = n

    def matrix(self, stamps: np.ndarray) -> sp.csc_matrix:
        """Block-diagonal CSC Jacobian for stamps (batch, n_stamp * cells)."""
        nb = stamps.shape[0]
        vals = np.concatenate([np.broadcast_to(self.base, (nb, self.base.size)), stamps],
                              axis=1)[:, self.ok]
        off = (np.arange(nb) * self.nnz)[:, None]
        data = np.bincount((self.inv[None, :] + off).ravel(), weights=vals.ravel(),
                           minlength=nb * self.nnz).reshape(nb, self.nnz)[:, self.perm]
        n, nnz = self.n, self.nnz
        indices = (self.indices[None, :] + (np.arange(nb) * n)[:, None]).ravel()
        indptr = np.concatenate([(self.indptr[:-1][None, :] + (np.arange(nb) * nnz)[:, None])
                                 .ravel(), [nb * nnz]])
        return sp.csc_matrix((data.ravel(), indices, indptr), shape=(nb * n, nb * n))


class NodalSolver:
    """Reusable DC solver of one tile: assemble once, then `solve` batches of inputs."""

    def __init__(self, spec: TileSpec, chunk: int | None = None) -> None:
        self.spec = spec
        self.cells = CellModel(spec)
        self.net = assemble_network(spec)
        n_cells = spec.rows * spec.cols
        self.chunk = chunk or max(1, min(512, 4_000_000 // max(self.net.n, 1)))
        self.newton_chunk = max(1, min(32, 200_000 // max(self.net.n, 1)))
        self._pattern: _Pattern | None = None
        self._lin: spla.SuperLU | None = None
        self._n_cells = n_cells
        self.chord_tol = 1e-12  # step / max|V| below which shared-Jacobian iterations stop
        self.chord_iter = 40
        total = self.net.n + self.net.nk
        self._scat = {
            name: sp.csr_matrix((np.ones(n_cells), (nodes, np.arange(n_cells))),
                                shape=(total, n_cells))
            for name, nodes in (("top", self.net.top), ("mid", self.net.mid),
                                ("bot", self.net.bot)) if nodes[0] >= 0}

    # -- linear start / linear tiles
    def _linear_lu(self) -> spla.SuperLU:
        if self._lin is None:
            net, sp_ = self.net, self.spec
            n = net.n
            g = sp_.conductance.ravel()
            extra = [(net.top, net.mid if sp_.cell == "1t1r" else net.bot, g)]
            if sp_.cell == "1t1r":
                vov = np.repeat(sp_.gate_voltages, sp_.cols) - sp_.transistor.vto
                g_on = np.where(vov > 0, sp_.transistor.beta * vov, 0.0)
                extra.append((net.mid, net.bot, g_on))
            ra, rb, rv = [], [], []
            for a, b, gv in extra:
                ra += [a, b, a, b]
                rb += [a, b, b, a]
                rv += [gv, gv, -gv, -gv]
            ra, rb, rv = (np.concatenate(x) for x in (ra, rb, rv))
            ok = (ra < n) & (rb < n)
            m = self.net.g_uu + sp.csr_matrix((rv[ok], (ra[ok], rb[ok])), shape=(n, n))
            self._lin = spla.splu(m.tocsc(), permc_spec="MMD_ATA")
        return self._lin

    def _linear_solve(self, u: np.ndarray) -> np.ndarray:
        rhs = -(self.net.g_uk @ u.T) - self.net.i_const[: self.net.n, None]
        return _solve_columns(self._linear_lu(), rhs).T  # (batch, n)

    # -- cell currents and stamps
    def _cell_terms(self, x_all: np.ndarray):
        """Cell currents scattered to nodes (batch, n+nk) and Jacobian stamps."""
        net = self.net
        nb = x_all.shape[0]
        vt, vb = x_all[:, net.top], x_all[:, net.bot]
        shape = (nb, self.spec.rows, self.spec.cols)
        if self.spec.cell == "1t1r":
            vm = x_all[:, net.mid]
            im, gm = (a.reshape(nb, -1) for a in self.cells.memristor(
                (vt - vm).reshape(shape)))
            ids, dd, ds = (a.reshape(nb, -1) for a in self.cells.transistor(
                vm.reshape(shape), vb.reshape(shape)))
            inj = self._inject(("top", im), ("mid", ids - im), ("bot", -ids))
            stamps = np.concatenate([gm, -gm, -gm, gm, dd, ds, -dd, -ds], axis=1)
            branch = ids
        else:
            im, gm = (a.reshape(nb, -1) for a in self.cells.memristor((vt - vb).reshape(shape)))
            inj = self._inject(("top", im), ("bot", -im))
            stamps = np.concatenate([gm, -gm, -gm, gm], axis=1)
            branch = im
        return inj, stamps, branch

    def _inject(self, *terms: tuple[str, np.ndarray]) -> np.ndarray:
        """Sum of cell currents (batch, cells) leaving through each node: (batch, n + nk)."""
        return sum((self._scat[name] @ cur.T).T for name, cur in terms)

    def _residual(self, x_u: np.ndarray, u: np.ndarray, lin_known: np.ndarray):
        net = self.net
        inj, stamps, _ = self._cell_terms(np.concatenate([x_u, u], axis=1))
        f = (net.g_uu @ x_u.T).T + lin_known + net.i_const[: net.n] + inj[:, : net.n]
        return f, stamps

    def _chord(self, x_u: np.ndarray, u: np.ndarray, tol: float, max_iter: int):
        """Shared-Jacobian iterations: each step factorises the chunk's mean Jacobian once and
        solves all vectors with it (linear convergence, cheap steps). Returns (x, converged)."""
        lin_known = (self.net.g_uk @ u.T).T
        limit = tol * max(float(np.max(np.abs(u), initial=0.0)), 1e-3)
        for _ in range(max_iter):
            f, stamps = self._residual(x_u, u, lin_known)
            jac = self._pattern.matrix(stamps.mean(axis=0, keepdims=True))
            dx = _solve_columns(spla.splu(jac, permc_spec="MMD_ATA"), -f.T).T
            x_u = x_u + np.clip(dx, -0.5, 0.5)
            if float(np.max(np.abs(dx), initial=0.0)) <= limit:
                return x_u, True
        return x_u, False

    def _newton(self, x_u: np.ndarray, u: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
        """Full Newton on the chunk's block-diagonal Jacobian (quadratic convergence)."""
        lin_known = (self.net.g_uk @ u.T).T
        limit = tol * max(float(np.max(np.abs(u), initial=0.0)), 1e-3)
        close = False
        step = np.inf
        for _ in range(max_iter):
            f, stamps = self._residual(x_u, u, lin_known)
            jac = self._pattern.matrix(stamps)
            dx = spla.splu(jac, permc_spec="MMD_ATA").solve(-f.ravel()).reshape(x_u.shape)
            x_u = x_u + np.clip(dx, -0.5, 0.5)
            if close:  # one more full Newton step after the criterion: quadratic convergence
                return x_u
            step = float(np.max(np.abs(dx), initial=0.0))
            close = step <= limit
        raise CircuitnnError(
            f"nodal solver did not converge in {max_iter} Newton iterations "
            f"(last step {step:.3g} V)")

    def node_voltages(self, v: np.ndarray, tol: float = 1e-10, max_iter: int = 60) -> np.ndarray:
        """(batch, n + nk) node voltages for validated inputs v (batch, rows)."""
        u = self.net.known_values(v)
        x_u = self._linear_solve(u)
        if not self.cells.linear:
            if self._pattern is None:
                self._pattern = _Pattern(self.net, self.spec.cell)
            x_u, ok = self._chord(x_u, u, self.chord_tol, self.chord_iter)
            if not ok:  # rare: exact Newton on smaller chunks
                for k in range(0, x_u.shape[0], self.newton_chunk):
                    sl = slice(k, k + self.newton_chunk)
                    x_u[sl] = self._newton(x_u[sl], u[sl], tol, max_iter)
        return np.concatenate([x_u, u], axis=1)

    def column_currents(self, x_all: np.ndarray) -> np.ndarray:
        """(batch, cols) read outputs (A) from node voltages."""
        net, spec = self.net, self.spec
        if spec.sense == "tia":
            t = spec.tia
            vo = t.gain * (t.v_offset - x_all[:, net.sense])
            return -vo / t.r_f
        # current entering each sense node from the linear elements and from the cells
        lin = -(net.lap[net.sense] @ x_all.T).T
        _, _, branch = self._cell_terms(x_all)
        into = (self._scat["bot"] @ branch.T).T
        return lin + into[:, net.sense]

    def solve(self, inputs, tol: float = 1e-10, max_iter: int = 60) -> np.ndarray:
        """Column currents (batch, cols) in amperes for inputs (batch, rows) in volts.

        Newton stops one iteration after its largest step falls below tol x max|V|.
        """
        v, single = check_inputs(self.spec, inputs)
        out = np.empty((v.shape[0], self.spec.cols))
        for k in range(0, v.shape[0], self.chunk):
            sl = slice(k, k + self.chunk)
            out[sl] = self.column_currents(self.node_voltages(v[sl], tol, max_iter))
        return out[0] if single else out


def _solve_columns(lu: spla.SuperLU, rhs: np.ndarray) -> np.ndarray:
    """lu.solve column by column: SuperLU's multi-right-hand-side solve is far slower."""
    out = np.empty(rhs.shape)
    for k in range(rhs.shape[1]):
        out[:, k] = lu.solve(np.ascontiguousarray(rhs[:, k]))
    return out


def solve_nodal(spec: TileSpec, inputs, tol: float = 1e-10, max_iter: int = 60) -> np.ndarray:
    """Read a tile with the nodal solver: inputs (batch, rows) V -> currents (batch, cols) A."""
    return NodalSolver(spec).solve(inputs, tol=tol, max_iter=max_iter)

"""Our own exact DC solver of a tile read: Newton on the line voltages, batched.

The circuit is the one `circuitnn.tile.netlist` writes for ngspice, equation for equation:

* wires, driver resistances, the TIA (vo = A (V_os - v_s) with feedback R_f: seen from the
  column, a resistance R_f / (1 + A) to a source A V_os / (1 + A)) and ngspice's junction gmin
  from each transistor's drain and source to the grounded body are linear;
* each cell's memristor is the card's own current equation (`Device.current`, the same single
  definition that the ngspice subcircuit is generated from);
* the access transistor follows ngspice's MOS level-1 (Shichman-Hodges) drain current with
  GAMMA = 0 and IS = 0: cut-off / linear / saturation, channel-length modulation, and source /
  drain swapped when V_DS < 0 (`mos1_current`, after ngspice's mos1load.c).

Word lines carry no DC current (level-1 MOSFETs have no DC gate current), so every gate sits at
its row's word-line drive whatever r_wl is; r_wl matters only in transients.

Unknowns, per input vector: the row-line voltage x, the column-line voltage y and (1T1R) the
internal node m of every cell. Each wire line is a chain from its source (row driver; column
sense): its voltages are the source's minus K times the currents the cells draw from it, with
the line's resistance kernel K[j, k] = r0 + r min(j, k) (node 0 next to the source, r0 the
lead, r per segment; zero resistances merge nodes and simply give r = 0, a known line r0 = 0).

Newton on x = V - K_row i_draw, y = V_t + K_col i_inj and each cell's internal KCL. m is
eliminated cell by cell, leaving every cell as a 2 x 2 conductance between its row and column
node. The linear system is then reduced exactly to the row lines: each row (column) line is
solved exactly with its own cells as loads (`LineSolve`: a Riccati sweep along the line, then
cumulative sums), and what remains, the identity plus the weak coupling of row lines through
the cells and column lines, is solved by batched GMRES in a few steps. Newton starts from the
tile with every cell at its read chord conductance (one linear solve for the whole batch), stops
when its step, or the error left after it at the observed rate of convergence, is below
tol x max|V|, and the read currents take that last step into account to first order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from circuitnn.errors import CircuitnnError
from circuitnn.tile.spec import TileSpec, check_inputs


# --- element equations --------------------------------------------------------------------
def mos1_expression(vds: str = "vds", vgs: str = "vgs") -> str:
    """ngspice's MOS level-1 NMOS drain current (GAMMA = 0, body ignored) as an expression of
    `vds` and `vgs` (and the parameters beta, vto, lam), in the language of
    `circuitnn.devices.expr`: cut-off, linear, and saturation (the linear formula at
    vds = vgs - vto), with channel-length modulation; for vds < 0 the roles of drain and source
    swap (ngspice's "mode"), as in mos1load.c. The current flows drain -> source."""
    vgst = f"max(where({vds} >= 0, {vgs}, {vgs} - {vds}) - vto, 0)"  # 0: cut off
    xe = f"min(abs({vds}), {vgst})"
    return (f"where({vds} >= 0, 1, -1) * beta * (1 + lam * abs({vds})) * {xe}"
            f" * ({vgst} - 0.5 * {xe})")


def mos1_current(vgs, vds, beta: float, vto: float, lam: float):
    """`mos1_expression` and its derivatives, written out in numpy for the solver's Newton
    iterations (a third of the array operations that the expression's compiled form and its
    symbolic derivatives take; tests check that the two agree).

    Returns (ids, d ids / d vgs, d ids / d vds); ids flows drain -> source.
    """
    vgs = np.asarray(vgs, dtype=float)
    vds = np.asarray(vds, dtype=float)
    fwd = vds >= 0
    x = np.abs(vds)
    vgst = np.maximum(np.where(fwd, vgs, vgs - vds) - vto, 0.0)  # 0: cut off
    xe = np.minimum(x, vgst)  # saturation: the linear formulas at vds = vgst
    betap = beta * (1 + lam * x)
    q = xe * (vgst - 0.5 * xe)
    cd = betap * q
    gm = betap * xe
    gds = betap * (vgst - xe) + lam * beta * q
    return np.where(fwd, cd, -cd), np.where(fwd, gm, -gm), np.where(fwd, gds, gm + gds)


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

    def memristor(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Memristor current (A) at device voltage v and its derivative dI/dv (S)."""
        if self.device is None:
            return self.g * v, np.broadcast_to(self.g, np.shape(v))
        h = 1e-6  # V, forward difference: one evaluation of both points
        i = self.device.current(np.stack([v, v + h]), self.states)
        return i[0], (i[1] - i[0]) / h

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
            # a converged step may round onto a bracket end: that is inside, not a failure
            bad = ~np.isfinite(step) | (step < lo) | (step > hi)
            new = np.where(bad, 0.5 * (lo + hi), step)
            done = np.max(np.abs(new - m), initial=0.0) <= tol
            m = new
            if done:
                break
        return self.transistor(m, v_bot)[0]


# --- wire lines -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lines:
    """One family of identical wire lines (the rows, or the columns) of a tile.

    Each line is a chain: source - r0 - node 0 - r - node 1 - ... ; currents i drawn at its
    nodes lower them by K i, K[j, k] = r0 + r min(j, k). Tile arrays are (..., rows, cols); rows
    are fed at column 0, columns at their sense end past the last row (`by_rows` False).
    """

    r0: float
    r: float
    by_rows: bool

    def lines(self, u: np.ndarray) -> np.ndarray:
        """A tile array as (..., line, node) with node 0 at the source (a view)."""
        return u if self.by_rows else np.swapaxes(u, -1, -2)[..., ::-1]

    def tile(self, u: np.ndarray) -> np.ndarray:
        """The inverse of `lines` (a view)."""
        return u if self.by_rows else np.swapaxes(u[..., ::-1], -1, -2)

    def factor(self, d: np.ndarray) -> LineSolve:
        """Prepare solves of (I + K diag(d)) u = w - K c on every line, for loads d (S)."""
        dl = np.ascontiguousarray(self.lines(d))
        n = dl.shape[-1]
        if self.r == 0 or n == 1:  # every node at one voltage: u = w - r0 sum(x) / (1 + r0 sum(d))
            return LineSolve(self, dl, -self.r0 / (1.0 + self.r0 * dl.sum(-1, keepdims=True)))
        # a Riccati sweep from the far end, on a copy with the node axis first: alpha_j, the
        # admittance of the line beyond segment j (loads included), as u = r alpha;
        # 1 / (1 + u_j) = s_j is the attenuation across segment j and q_j = prod_{l > j} s_l
        u = np.ascontiguousarray(np.moveaxis(dl, -1, 0)) * self.r
        q = np.empty(u.shape)
        q[-1] = 1.0
        t = np.empty(u.shape[1:])
        tmp = np.empty(u.shape[1:])
        for j in range(n - 1, 0, -1):
            np.add(u[j], 1.0, out=t)
            np.divide(u[j], t, out=tmp)
            u[j - 1] += tmp
            np.divide(q[j], t, out=q[j - 1])

        def back(a: np.ndarray) -> np.ndarray:  # node axis last again, contiguous
            return np.ascontiguousarray(np.moveaxis(a, 0, -1))

        lead = -self.r0 / (1.0 + self.r0 / self.r * u[0][..., None])
        q0 = q[0][..., None]
        if float(np.min(q0)) > 1e-150:  # the closed form stays within range
            qq = np.empty(q.shape)  # -r q_{l-1} q_l
            qq[0] = 0.0
            np.multiply(q[1:], q[:-1], out=qq[1:])
            qq *= -self.r
            return LineSolve(self, dl, lead * q0 * q0, qq=back(qq), p=back(1.0 / q))
        return LineSolve(self, dl, lead, s=back(1.0 / (1.0 + u)))


@dataclass
class LineSolve:
    """Solves of (I + K diag(d)) u = w - K c along every line of a family (`Lines.factor`):
    the voltages u of lines with open-circuit voltages w, loads d and extra currents c drawn.
    Its arrays are (..., line, node), contiguous.

    With x = d w + c: beta_j = x_j + s_{j+1} beta_{j+1} (the current drawn beyond segment j
    with node j held at its w), e_0 = -r0 beta_0 / (1 + r0 alpha_0), e_j = s_j (e_{j-1} -
    r beta_j), u = w + e. Summed in closed form with cumulative sums: with p = 1 / q and
    T = tails(p x), beta = q T and e_j = p_j (q_0 e_0 - r sum_{l=1..j} q_{l-1} q_l T_l); or swept
    node by node where the attenuation along a line leaves the range of that form.
    """

    lines: Lines
    d: np.ndarray
    lead: np.ndarray  # closed form: -r0 q_0^2 / (1 + r0 alpha_0); else -r0 / (1 + r0 alpha_0)
    qq: np.ndarray | None = None  # -r q_{l-1} q_l (0 at l = 0)
    p: np.ndarray | None = None
    s: np.ndarray | None = None  # attenuation per segment, for the sweep

    def __call__(self, w: np.ndarray | None, c: np.ndarray) -> np.ndarray:
        """u (a tile array) for w (a tile array, or None for 0) and c (a tile array)."""
        ln = self.lines
        x = np.ascontiguousarray(ln.lines(c))
        if w is not None:
            x += self.d * ln.lines(w)
        if self.s is not None:
            e = self._sweep(x)
        elif self.p is None:  # one node per line, or no resistance along it
            e = self.lead * x.sum(-1, keepdims=True)
        else:
            x *= self.p
            t = np.cumsum(x[..., ::-1], -1)[..., ::-1]  # tails: t_j = sum_{k >= j} p_k x_k
            e0 = self.lead * t[..., :1]
            t *= self.qq
            e = np.cumsum(t, -1, out=t)
            e += e0
            e *= self.p
        e = ln.tile(e)
        return e if w is None else w + e

    def _sweep(self, x: np.ndarray) -> np.ndarray:
        r, s = self.lines.r, self.s
        beta = x.copy()
        for j in range(x.shape[-1] - 1, 0, -1):
            beta[..., j - 1] += s[..., j] * beta[..., j]
        e = np.empty(beta.shape)
        e[..., 0] = self.lead[..., 0] * beta[..., 0]
        for j in range(1, x.shape[-1]):
            e[..., j] = s[..., j] * (e[..., j - 1] - r * beta[..., j])
        return e


# --- batched GMRES ----------------------------------------------------------------------------
def _gmres(apply, b: np.ndarray, rtol: float, restart: int = 30,
           max_cycles: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Solve A u = b for each row of b (batch, n) by GMRES(restart), to a residual of at most
    rtol |b| per row (or until `max_cycles` restarts have run).

    apply(u) returns (A u, L u) for some other linear map L; returns (u, L u), L u combined from
    the same calls.
    """
    nb, n = b.shape
    m = min(restart, n)
    u = np.zeros_like(b)
    lu = None
    target = rtol * np.linalg.norm(b, axis=1)
    r = b
    for _ in range(max_cycles):
        beta = np.linalg.norm(r, axis=1)
        if np.all(beta <= target):
            break
        v = np.empty((m + 1, nb, n))
        sides = []
        v[0] = r / np.where(beta > 0, beta, 1.0)[:, None]
        h = np.zeros((nb, m, m))  # the Hessenberg matrix, made triangular by Givens rotations
        cs = np.ones((nb, m))
        sn = np.zeros((nb, m))
        g = np.zeros((nb, m + 1))
        g[:, 0] = beta
        k = 0
        while k < m:
            w, side = apply(v[k])
            sides.append(side)
            vk = v[:k + 1]
            col = np.einsum("kbn,bn->bk", vk, w)
            w -= np.einsum("kbn,bk->bn", vk, col)
            again = np.einsum("kbn,bn->bk", vk, w)  # re-orthogonalise (CGS2)
            w -= np.einsum("kbn,bk->bn", vk, again)
            col += again
            hn = np.linalg.norm(w, axis=1)
            np.divide(w, np.where(hn > 0, hn, 1.0)[:, None], out=v[k + 1])
            for i in range(k):  # the earlier rotations
                a, c = col[:, i].copy(), col[:, i + 1]
                col[:, i] = cs[:, i] * a + sn[:, i] * c
                col[:, i + 1] = cs[:, i] * c - sn[:, i] * a
            den = np.hypot(col[:, k], hn)
            safe = np.where(den > 0, den, 1.0)
            cs[:, k] = np.where(den > 0, col[:, k] / safe, 1.0)
            sn[:, k] = hn / safe
            col[:, k] = den
            h[:, :k + 1, k] = col
            g[:, k + 1] = -sn[:, k] * g[:, k]
            g[:, k] *= cs[:, k]
            k += 1
            if np.all(np.abs(g[:, k]) <= target):
                break
        y = np.zeros((nb, k))
        for i in range(k - 1, -1, -1):  # back substitution
            rhs = g[:, i] - np.einsum("bj,bj->b", h[:, i, i + 1:k], y[:, i + 1:])
            d = h[:, i, i]
            y[:, i] = np.where(d != 0, rhs / np.where(d != 0, d, 1.0), 0.0)
        u = u + np.einsum("kbn,bk->bn", v[:k], y)
        step = sum(s_ * y[:, i].reshape((nb,) + (1,) * (s_.ndim - 1)) for i, s_ in
                   enumerate(sides))
        lu = step if lu is None else lu + step
        if np.all(np.abs(g[:, k]) <= target):
            break
        r = b - apply(u)[0]
    if lu is None:  # b = 0
        lu = apply(u)[1]
    return u, lu


# --- the solver -------------------------------------------------------------------------------
@dataclass
class _Linear:
    """The tile linearised at one Newton iterate (arrays (batch, rows, cols)).

    Currents drawn from the row line (`draw`) and injected into the column line (`inj`) change
    by gtt dx + gty dy + c_t and gbx dx + gby dy + c_b (the internal node eliminated; c_* carry
    its KCL residual); `elim` gives dm = elim[0] dx + elim[1] dy + elim[2].
    """

    draw: np.ndarray
    inj: np.ndarray
    gtt: np.ndarray
    gty: np.ndarray
    gbx: np.ndarray
    gby: np.ndarray
    c_t: np.ndarray | float
    c_b: np.ndarray | float
    elim: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class Solution:
    """Converged voltages (batch, rows, cols) and the read outputs (batch, cols) in amperes."""

    x: np.ndarray  # row-line node at each cell
    m: np.ndarray | None  # cell internal node (1T1R)
    y: np.ndarray  # column-line node at each cell
    draw: np.ndarray  # current each cell draws from its row line
    inj: np.ndarray  # current each cell injects into its column line (gmin leak subtracted)
    currents: np.ndarray


class NodalSolver:
    """Reusable DC solver of one tile: set up once, then `solve` batches of inputs."""

    def __init__(self, spec: TileSpec, chunk: int | None = None) -> None:
        self.spec = spec
        self.cells = CellModel(spec)
        self.rows = Lines(spec.r_driver + spec.r_row, spec.r_row, True)
        if spec.sense == "tia":
            t = spec.tia
            self.r_tia = t.r_f / (1 + t.gain)  # the TIA seen from its column
            self.v_sense = t.gain * t.v_offset / (1 + t.gain)
        else:
            self.r_tia, self.v_sense = 0.0, 0.0
        self.cols = Lines(spec.r_col + self.r_tia, spec.r_col, False)
        self.chunk = chunk or max(1, 32_768 // (spec.rows * spec.cols))  # vectors at once
        self.gmres_rtol = 1e-4  # per Newton step: the step's own error is this much smaller

    @cached_property
    def net(self) -> Network:
        """The tile's full node space (`assemble_network`), for `node_voltages`."""
        return assemble_network(self.spec)

    # -- Newton
    def _linearise(self, x, m, y) -> _Linear:
        """The cells' currents and 2 x 2 conductances at (x, m, y), m eliminated."""
        cells = self.cells
        if m is None:
            i, a = cells.memristor(x - y)
            lin = _Linear(i, i, a, -a, a, -a, 0.0, 0.0)
        else:
            gmin = cells.gmin
            i, a = cells.memristor(x - m)
            ib, p, q = cells.transistor(m, y)
            f_m = i - ib - gmin * m  # internal node KCL
            dd = a + p + gmin
            lin = _Linear(i, ib - gmin * y, a * (p + gmin) / dd, a * q / dd, p * a / dd,
                          q * (a + gmin) / dd - gmin, -a * f_m / dd, p * f_m / dd,
                          (a / dd, -q / dd, f_m / dd))
        return lin

    @cached_property
    def _chord(self) -> tuple[np.ndarray, LineSolve, LineSolve]:
        """Every cell as its read chord conductance (the memristor's G in series with the
        transistor's V_DS = 0 conductance), and the line solves of that linear tile."""
        c = self.cells
        g = c.g
        if self.spec.cell == "1t1r":
            g_on = c.beta * np.maximum(c.gate - c.vto, 0.0)
            g = g * g_on / (g + g_on)
        return g, self.rows.factor(g), self.cols.factor(g)

    def _start(self, v: np.ndarray):
        """Newton's first iterate: the chord tile solved (to 1e-3: Newton corrects the rest; its
        line solves shared by all vectors), the internal nodes on each cell's divider."""
        g, row, col = self._chord
        c = self.cells
        shape = (v.shape[0],) + self.spec.shape
        x = np.broadcast_to(v[..., None], shape)
        y = np.full(shape, self.v_sense)
        i = g * (x - y)
        dx, dy = self._step(v, x, y, _Linear(i, i, g, -g, g, -g, 0.0, 0.0), 1e-3, row, col)
        x, y = x + dx, y + dy
        if self.spec.cell == "passive":
            return x, None, y
        g_on = c.beta * np.maximum(c.gate - c.vto, 0.0)
        return x, (c.g * x + g_on * y) / (c.g + g_on + c.gmin), y

    def _step(self, v, x, y, lin: _Linear, rtol: float, row: LineSolve | None = None,
              col: LineSolve | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Solve the Newton system for (dx, dy), the line residuals folded in.

        Rows: dx = R(V - x; draw + c_t + gty dy), columns: dy = C(V_t - y; -(inj + c_b + gbx dx))
        with R(w; c), C(w; c) the exact line solves (`LineSolve`) for loads gtt and -gby.
        Eliminating dy leaves dx + R(0; gty C(0; gbx dx)) = dx0 for GMRES: the identity plus
        the small coupling of row lines through column lines.
        """
        shape = x.shape
        nb = shape[0]
        row = row or self.rows.factor(lin.gtt)
        col = col or self.cols.factor(-lin.gby)
        dy0 = col(self.v_sense - y, -(lin.inj + lin.c_b))
        dx0 = row(v[..., None] - x, lin.draw + lin.c_t + lin.gty * dy0)

        def apply(u):
            u = u.reshape(shape)
            side = col(None, lin.gbx * u)  # the column lines' response
            return (u + row(None, lin.gty * side)).reshape(nb, -1), side

        dx, side = _gmres(apply, dx0.reshape(nb, -1), rtol)
        return dx.reshape(shape), dy0 - side

    def _newton(self, v: np.ndarray, tol: float, max_iter: int) -> Solution:
        x, m, y = self._start(v)
        limit = tol * max(float(np.max(np.abs(v), initial=0.0)), abs(self.v_sense), 1e-3)
        step = prev = np.inf
        for _ in range(max_iter):
            lin = self._linearise(x, m, y)
            dx, dy = self._step(v, x, y, lin, self.gmres_rtol)
            dm = None if m is None else lin.elim[0] * dx + lin.elim[1] * dy + lin.elim[2]
            step = max(float(np.max(np.abs(d), initial=0.0)) for d in (dx, dy, dm)
                       if d is not None)
            if not np.isfinite(step):
                break
            # converged when the step, or the error left after it at the observed rate of
            # convergence (at most step * step / prev), is below the limit; the currents then
            # follow the last step to first order
            if step <= limit or (step < 0.5 * prev < np.inf and step * step / prev <= limit):
                draw = lin.draw + lin.gtt * dx + lin.gty * dy + lin.c_t
                inj = lin.inj + lin.gbx * dx + lin.gby * dy + lin.c_b
                return Solution(x + dx, None if m is None else m + dm, y + dy, draw, inj,
                                self._outputs(inj.sum(axis=1)))
            prev = step
            x = x + np.clip(dx, -0.5, 0.5)
            y = y + np.clip(dy, -0.5, 0.5)
            if m is not None:
                m = m + np.clip(dm, -0.5, 0.5)
        raise CircuitnnError(
            f"nodal solver did not converge in {max_iter} Newton iterations "
            f"(last step {step:.3g} V)")

    def _outputs(self, col_current: np.ndarray) -> np.ndarray:
        """Read outputs (A) from the current delivered into each column's sense."""
        if self.spec.sense == "ideal":
            return col_current
        t = self.spec.tia
        # vo = A (V_os - v_s), v_s = V_t + R_f I / (1 + A): -vo / R_f, in closed form
        return t.gain / (1 + t.gain) * (col_current - t.v_offset / t.r_f)

    def _solve(self, v: np.ndarray, tol: float, max_iter: int) -> list[Solution]:
        return [self._newton(v[k:k + self.chunk], tol, max_iter)
                for k in range(0, v.shape[0], self.chunk)]

    # -- public
    def solve(self, inputs, tol: float = 1e-10, max_iter: int = 60) -> np.ndarray:
        """Column currents (batch, cols) in amperes for inputs (batch, rows) in volts.

        Newton stops when its largest step, or the error left after it, is below tol x max|V|;
        a solve that has not converged in max_iter iterations raises CircuitnnError.
        """
        v, single = check_inputs(self.spec, inputs)
        _check_options(tol, max_iter)
        out = np.concatenate([s.currents for s in self._solve(v, tol, max_iter)])
        return out[0] if single else out

    def node_voltages(self, inputs, tol: float = 1e-10, max_iter: int = 60) -> np.ndarray:
        """(batch, n + nk) voltages of every node of `self.net` for inputs (batch, rows)."""
        v, _ = check_inputs(self.spec, inputs)
        _check_options(tol, max_iter)
        net = self.net
        full = np.zeros((v.shape[0], net.n + net.nk))
        s = self._solve(v, tol, max_iter)
        x, y, draw, inj = (np.concatenate([getattr(p, k) for p in s]).reshape(v.shape[0], -1)
                           for k in ("x", "y", "draw", "inj"))
        rows, cols = self.spec.shape
        full[:, net.inp] = v - self.spec.r_driver * draw.reshape(-1, rows, cols).sum(axis=2)
        full[:, net.top] = x
        if s[0].m is not None:
            full[:, net.mid] = np.concatenate([p.m for p in s]).reshape(v.shape[0], -1)
        full[:, net.bot] = y
        full[:, net.sense] = self.v_sense + self.r_tia * inj.reshape(-1, rows, cols).sum(axis=1)
        full[:, net.driver] = v
        return full

    def column_currents(self, x_all: np.ndarray) -> np.ndarray:
        """(batch, cols) read outputs (A) from node voltages of `self.net`."""
        net, spec = self.net, self.spec
        shape = (x_all.shape[0],) + spec.shape
        top, bot = (x_all[:, k].reshape(shape) for k in (net.top, net.bot))
        if spec.cell == "1t1r":
            inj = self.cells.transistor(x_all[:, net.mid].reshape(shape), bot)[0] \
                - spec.gmin * bot
        else:
            inj = self.cells.memristor(top - bot)[0]
        return self._outputs(inj.sum(axis=1))


def _check_options(tol, max_iter) -> None:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise CircuitnnError(f"nodal tol must be a number in (0, 1), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise CircuitnnError(f"nodal max_iter must be an integer >= 1, got {max_iter!r}")


# --- the full node space (for the surrogate's linear network and for figures) --------------------
@dataclass
class Network:
    """A tile's node space and linear part.

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
    inp: np.ndarray  # (rows,) index of each input line's node just after the driver resistance
    sense: np.ndarray  # (cols,) index of each sense node


def assemble_network(spec: TileSpec) -> Network:
    """Build the node space and linear elements of a tile (wires, driver, TIA, gmin)."""
    rows, cols = spec.shape
    count = 0

    def new(k: int) -> np.ndarray:
        nonlocal count
        count += k
        return np.arange(count - k, count)

    gnd = new(1)[0]
    drv = new(rows)
    inp = new(rows)
    r = new(rows * cols).reshape(rows, cols)
    mid = new(rows * cols).reshape(rows, cols) if spec.cell == "1t1r" else None
    c = new(rows * cols).reshape(rows, cols)
    s = new(cols)
    known_raw = np.zeros(count, dtype=bool)
    known_raw[gnd] = True
    known_raw[drv] = True
    if spec.sense == "ideal":
        known_raw[s] = True

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

    # zero resistances merge nodes; groups are numbered by their lowest node
    zero = res == 0
    _, inverse = connected_components(
        sp.coo_matrix((np.ones(int(zero.sum())), (a[zero], b[zero])), shape=(count, count)),
        directed=False)
    n_groups = int(inverse.max()) + 1
    count_known = np.bincount(inverse, weights=known_raw, minlength=n_groups)
    if np.any(count_known > 1):
        raise CircuitnnError("zero resistances short two ideal sources together")
    g_known = count_known > 0
    # unknown groups first, then known groups
    order = np.argsort(g_known, kind="stable")
    pos = np.empty(n_groups, dtype=int)
    pos[order] = np.arange(n_groups)
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
            rows * cols, -1), bot=idx[c.ravel()], driver=idx[drv], inp=idx[inp],
        sense=idx[s])

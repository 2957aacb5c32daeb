"""Error-controlled transient simulation of one-state devices, vectorised over many devices.

Method: the linearly implicit Rosenbrock pair of MATLAB's ode23s (L. F. Shampine and M. W.
Reichelt, "The MATLAB ODE suite", SIAM J. Sci. Comput. 18(1):1-22, 1997): an L-stable
second-order formula (d = 1 / (2 + sqrt 2)) with a third-order error estimate, using the exact
Jacobian and time derivative of the rate from the model's symbolic derivatives
(`Device.rate_jac`). Linearly implicit and L-stable, it takes steps far longer than a stiff
switching time constant where the state follows its quasi-equilibrium, without any Newton
iteration on the state. The rate and Jacobian evaluated at the end of an accepted step are those
of the next step's start, so a step costs two model evaluations.

Bounds: the stages use the rate's smooth continuation (the rate at the state clipped into its
bounds, not held at zero there), and each step's result is clipped; so a state that reaches a
bound within a step ends exactly on it and stays there while the rate pushes outwards (where
the state Jacobian, a series element's share included, is then zero). A step that keeps the
state on that bound (the rate at its end still pushing outwards), or whose solution and error
estimate both lie beyond the same bound, has no error.

Error control: the local error estimate e of each step must satisfy
|e| <= atol * range + rtol * d (range: the state's span between its bounds; d: the distance of
the state to its nearer bound, so a state approaching a bound is resolved relative to that
distance, e.g. the OFF-state conductance of a device near x = 0). Rejected steps are retried
shorter; the step size follows 0.9 (1 / err)^(1/3), limited to a factor 0.2..5. Every element
(device, candidate parameter set, sweep) has its own step size and walks through the samples
on its own (no element waits for the others at a sample), so one vectorised pass costs as many
iterations as the element that needs the most steps in total, not the sum over samples of the
most steps any element needs there (a fit's population: 2-2.5x fewer iterations). Once half of
the elements have finished (or failed), the others go on alone, compacted into a smaller array
(a fit's stragglers no longer carry the finished candidates along). Steps never cross a sample
of the piecewise-linear drive (its corners), and values are reported at the samples.

Switching thresholds: where a model's rate drops to exactly 0 (Stanford-PKU's minimum field,
Yakopcic's and VTEAM's voltage thresholds at a state-dependent device voltage), a state driven
towards the threshold would be resolved with ever shorter steps as it slides along it (e.g. a
gradual RESET that follows the threshold while the drive ramps). A step that ends beyond such a
point instead stops on it, found by bisection (to 1e-2 of the step's local error tolerance),
when the smallest rate on the way (the one just before the point, on the monotone approach)
covers the distance within the step; otherwise the step is shortened as usual.

One element (a single waveform) is integrated on np.float64 scalars with plain Python
operations (`SCALAR_OPS`) and the model kernels' Python-float versions (`expr.Kernel.run`):
numpy's overhead per call, not the arithmetic, would otherwise set the cost of a step (3x).

Series element (`circuitnn.devices.series`): the device voltage v_d solves
I_elem(v_a - v_d) = I_dev(v_d, s), by Newton's method safeguarded by bisection on
[min(0, v_a), max(0, v_a)]; the state's Jacobian then includes dv_d/ds = -I_s / (G_elem + I_v)
and the drive's time derivative dv_d/dt = G_elem v_a' / (G_elem + I_v). Each solve starts
from v_d extrapolated with these slopes; at the step's midpoint stage the first Newton step
from there is accepted (its error is of fourth order in the step), at the step's end the solve
runs to convergence.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from circuitnn.devices import expr
from circuitnn.errors import CircuitnnError

if TYPE_CHECKING:
    from circuitnn.devices.device import Device, Trace
    from circuitnn.devices.series import SeriesElement

D = 1.0 / (2.0 + math.sqrt(2.0))
E32 = 6.0 + math.sqrt(2.0)
#: step (fraction of the sample interval) below which a step meeting a switching threshold
#: stops on it (`_switch_point`): the state slides along the threshold
SLIDING_STEP = 1e-2
#: a switching point is located to this fraction of the step's local error tolerance (at most
#: SWITCH_BISECTIONS halvings of the step)
SWITCH_PRECISION = 1e-2
SWITCH_BISECTIONS = 40
#: default local error tolerances (see the module doc)
RTOL = 1e-4
ATOL = 1e-7
#: most steps one element may take between two samples before it counts as failed
MAX_STEPS = 2000
#: series-node Newton iterations (safeguarded; converges in a few from a warm start)
NODE_ITERATIONS = 60
#: the integrator's element-wise operations: numpy's on arrays, and plain Python ones on a
#: single element (np.float64 values), where numpy's per-call overhead would dominate a step
ARRAY_OPS = SimpleNamespace(
    where=np.where, minimum=np.minimum, maximum=np.maximum, isfinite=np.isfinite,
    abs=np.abs, cbrt=np.cbrt, any=lambda a: a.any(), all=lambda a: a.all())
SCALAR_OPS = SimpleNamespace(
    where=lambda c, a, b: a if c else b,
    minimum=expr.scalar_min, maximum=expr.scalar_max,
    isfinite=lambda a: np.bool_(math.isfinite(a)), abs=abs,
    cbrt=lambda a: math.copysign(abs(a) ** (1.0 / 3.0), a) if math.isfinite(a) else a,
    any=bool, all=bool)


def ops_for(a: np.ndarray | float) -> SimpleNamespace:
    """The operations for values shaped like `a`."""
    return SCALAR_OPS if np.ndim(a) == 0 else ARRAY_OPS


def solve_node(dev: Device, element: SeriesElement, va: np.ndarray, s: np.ndarray,
               guess: np.ndarray | None, one_step: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Device voltage with `element` in series; returns (v_d, G_elem, dI/dv_d, dI/ds).

    `s` must lie within the state bounds; call under `np.errstate(all="ignore")`. Iterations
    stop after a step below 3e-5 |v_a| (the next one would be ~1e-9 |v_a|, Newton converging
    quadratically); the slopes are those of the last iterate. With `one_step` (a guess whose
    error is already second order in the step, for the integrator's stage values) the first
    Newton step is accepted unless it left the bracket.
    """
    pol = dev.polarity
    both = getattr(element, "current_and_conductance", None)
    op = ops_for(va)
    lo = op.minimum(va, 0.0)
    hi = op.maximum(va, 0.0)
    x = op.minimum(op.maximum(guess, lo), hi) if guess is not None else 0.5 * (lo + hi)
    # Newton converges quadratically: after a step below 3e-5 |v_a| the error is ~1e-9 |v_a|
    tol = 1e-15 + 3e-5 * op.abs(va)
    for _ in range(NODE_ITERATIONS):
        i_dev, i_v, i_s = dev.evaluate("current_jac", x, s)
        if both is not None:
            i_el, g_el = both(va - x)
        else:
            i_el, g_el = element.current(va - x), element.conductance(va - x)
        f = i_el - pol * i_dev  # decreasing in x
        lo = op.where(f > 0, x, lo)
        hi = op.where(f > 0, hi, x)
        step = x + f / (g_el + i_v)
        bad = ~((step >= lo) & (step <= hi))  # or NaN
        x_new = op.where(bad, 0.5 * (lo + hi), step)
        done = ~(op.abs(x_new - x) > tol)  # NaN counts as done
        x = x_new
        if op.all(done) or (one_step and not op.any(bad)):
            break
    return x, g_el, i_v, pol * i_s


def _switch_point(dev: Device, node, va: np.ndarray, s: np.ndarray, y: np.ndarray,
                  vd: np.ndarray, mask: np.ndarray, tol: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Where the rate switches off between s and y at applied voltage va, by bisection to
    SWITCH_PRECISION x `tol` (the step's local error tolerance): (the first state with rate 0,
    the rate just before it). Elements outside `mask`, or whose rate at y is not 0, come back
    with a rate of 0 (no switch). Each bisection's node solve takes one Newton step from the
    previous one's voltage (the sign of the rate is all it decides)."""
    vd_y = node(va, y, vd)[0]
    mask = mask & (dev.evaluate("rate", vd_y, y)[0] == 0) & (
        dev.evaluate("rate", node(va, s, vd)[0], s)[0] != 0)
    if not mask.any():
        return y, np.zeros(np.shape(y))
    a, b, guess = s.copy(), y.copy(), vd_y
    width = SWITCH_PRECISION * tol
    for _ in range(SWITCH_BISECTIONS):
        mid = 0.5 * (a + b)
        guess = node(va, mid, guess, True)[0]
        r = dev.evaluate("rate", guess, mid)[0]
        a, b = np.where(r != 0, mid, a), np.where(r != 0, b, mid)
        if not np.any(mask & (np.abs(b - a) > width)):
            break
    f_in = dev.evaluate("rate", node(va, a, guess)[0], a)[0]
    return np.where(mask, b, y), np.where(mask, f_in, 0.0)


def _switch_points(dev: Device, series: SeriesElement | None, node, va: np.ndarray,
                   s: np.ndarray, y: np.ndarray, vd: np.ndarray, mask: np.ndarray,
                   tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_switch_point` computed on the masked elements alone when they are a small part of a
    large flat population (a fit's candidates), else on all of them."""
    from circuitnn.devices.series import ExprElement, flat_take

    if mask.sum() * 4 > mask.size or not (series is None or isinstance(series, ExprElement)):
        return _switch_point(dev, node, va, s, y, vd, mask, tol)
    shape = mask.shape
    idx = np.flatnonzero(mask)
    sub = dev.take(shape, idx)
    sub_series = None if series is None else series.take(shape, idx)

    def sub_node(va_: np.ndarray, ss: np.ndarray, guess: np.ndarray | None,
                 one_step: bool = False):
        if sub_series is None:
            return va_, None
        return solve_node(sub, sub_series, va_, ss, guess, one_step)[0], None

    va, s, y_sub, vd, tol = (flat_take(a, shape, idx) for a in (va, s, y, vd, tol))
    y_sw, f_in = _switch_point(sub, sub_node, va, s, y_sub, vd, np.ones(idx.size, dtype=bool),
                               tol)
    out_y, out_f = np.array(np.broadcast_to(y, shape)), np.zeros(shape)
    out_y.reshape(-1)[idx], out_f.reshape(-1)[idx] = y_sw, f_in
    return out_y, out_f


def simulate(dev: Device, t: np.ndarray, v: np.ndarray, s0, series: SeriesElement | None,
             rtol: float = RTOL, atol: float = ATOL, strict: bool = True,
             max_steps: int = MAX_STEPS, max_total_steps: int | None = None) -> Trace:
    """Integrate the device state over the sampled drive (t, v); see the module doc.

    Shapes: t (n,) or (..., n), v (..., n); parameters, s0 and the series element's parameters
    broadcast against the leading axes. With `strict`, an element whose state cannot be
    integrated (non-finite rate, more than `max_steps` steps between two samples, or more than
    `max_total_steps` in all) raises CircuitnnError; otherwise its outputs become NaN (used by
    fits, where such a candidate parameter set is simply bad).
    """
    from circuitnn.devices.device import Trace
    from circuitnn.devices.series import ExprElement, flat_take

    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise CircuitnnError("waveform has non-finite values")
    if v.ndim == 0 or v.shape[-1] < 1:
        raise CircuitnnError("waveform needs at least one sample")
    if np.any(np.diff(t, axis=-1) <= 0):
        raise CircuitnnError("waveform times must be strictly increasing")
    if not (rtol > 0 and atol > 0):
        raise CircuitnnError("integration tolerances must be > 0")
    lo, hi = dev.bounds()
    shape = np.broadcast_shapes(v.shape[:-1], t.shape[:-1], np.shape(s0), lo.shape,
                                *(p.shape for p in dev.params.values()))
    n = v.shape[-1]
    size = math.prod(shape)
    op = SCALAR_OPS if shape == () else ARRAY_OPS
    # the elements being integrated (working arrays): all of them in `shape` until half have
    # finished; then the unfinished ones go on alone as a flat array (not with a series element
    # of a caller's own kind, whose parameters only broadcast against `shape`)
    compactable = series is None or isinstance(series, ExprElement)
    wshape = shape
    column = np.arange(size).reshape(shape)  # each working element's flat index
    full_dev = dev
    # time-major copies: one contiguous row per sample
    tt = np.ascontiguousarray(np.moveaxis(np.broadcast_to(t, shape + (n,)), -1, 0))
    vv = np.ascontiguousarray(np.moveaxis(np.broadcast_to(v, shape + (n,)), -1, 0))
    flat_t, flat_v = tt.reshape(n, size), vv.reshape(n, size)
    # (`a[()]`: one element as an np.float64, whose arithmetic costs less than a 0-d array's)
    s = np.broadcast_to(lo if s0 is None else np.clip(s0, lo, hi), shape).astype(float)[()]
    tol_abs = (atol * np.broadcast_to(hi - lo, shape))[()]
    lo, hi = lo[()], hi[()]
    states, vdev = np.empty((n,) + shape), np.empty((n,) + shape)
    flat_states, flat_vdev = states.reshape(n, size), vdev.reshape(n, size)
    pol = dev.polarity

    def clip(x: np.ndarray) -> np.ndarray:
        return op.minimum(op.maximum(x, lo), hi)

    def node(va: np.ndarray, ss: np.ndarray, guess: np.ndarray | None, one_step: bool = False):
        if series is None:
            return va, None
        vd, g, i_v, i_s = solve_node(dev, series, va, ss, guess, one_step)
        return vd, (g, i_v, i_s)

    # device-voltage sensitivities at the current point, for the stage solves' first guesses
    sens = {"ds": 0.0, "dva": 1.0}

    def guess(vd: np.ndarray, dva: np.ndarray, ds: np.ndarray) -> np.ndarray:
        return vd + sens["dva"] * dva + sens["ds"] * ds

    def point(va: np.ndarray, ss: np.ndarray, first: np.ndarray | None):
        """(rate, d rate/ds, d rate/dv_a, v_d, dv_d/ds, dv_d/dv_a) at applied voltage va and
        state ss."""
        vd, nd = node(va, ss, first)
        r, r_v, r_s = dev.evaluate("rate_jac", vd, ss)
        pinned = ((ss >= hi) & (r > 0)) | ((ss <= lo) & (r < 0))  # held on a bound
        if pol != 1.0:
            r_v = pol * r_v
        if nd is None:
            return r, op.where(pinned, 0.0, r_s), r_v, vd, 0.0, 1.0
        g, i_v, i_s = nd
        denom = g + i_v
        vd_s, vd_va = -i_s / denom, g / denom
        return r, op.where(pinned, 0.0, r_s + r_v * vd_s), r_v * vd_va, vd, vd_s, vd_va

    def interval(k: np.ndarray) -> tuple[np.ndarray, ...]:
        """(t0, v0, v1, length, slope) of each element's interval k (k < n - 1)."""
        t0, v0, v1 = flat_t[k, column], flat_v[k, column], flat_v[k + 1, column]
        length = flat_t[k + 1, column] - t0
        return t0, v0, v1, length, (v1 - v0) / length

    # every element walks through the samples on its own: k its interval, tau its time in it
    k = np.zeros(wshape, dtype=np.intp)[()]
    tau = np.zeros(wshape)[()]
    steps = np.zeros(wshape, dtype=np.intp)[()]  # steps taken in the current interval
    taken = np.zeros(wshape, dtype=np.intp)[()]  # steps taken in all
    total_cap = np.iinfo(np.intp).max if max_total_steps is None else max_total_steps
    active = np.full(wshape, n > 1)[()]
    states[:], vdev[:] = np.nan, np.nan  # samples a failed element never reaches stay NaN

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        f0, jac, f_va, vd, sens["ds"], sens["dva"] = point(vv[0], s, None)
        vd = np.broadcast_to(vd, shape).astype(float)[()]
        states[0], vdev[0] = s, vd
        h = np.broadcast_to(tt[1] - tt[0] if n > 1 else 1.0, shape).astype(float)[()]
        if n > 1:
            t0, v0, v1, t_step, slope = interval(k)
        synced = True  # every element in the same interval
        while op.any(active):
            left = t_step - tau
            # the rest of the interval, or half of it when that is less than two steps
            hs = op.where(left <= h, left, op.where(left < 2 * h, 0.5 * left, h))
            if not op.all(active):
                hs = op.where(active, hs, 0.0)
            va = v0 + slope * tau
            f_t = f_va * slope
            w = 1.0 - hs * D * jac
            k1 = (f0 + hs * D * f_t) / w
            s_mid = clip(s + 0.5 * hs * k1)
            vd_mid = node(va + 0.5 * hs * slope, s_mid,
                          guess(vd, 0.5 * hs * slope, s_mid - s), True)[0]
            f1 = dev.evaluate("rate", vd_mid, s_mid)[0]
            k2 = (f1 - k1) / w + k1
            y_new = clip(s + hs * k2)
            f2, jac2, f_va2, vd2, vd_s2, vd_va2 = point(va + hs * slope, y_new,
                                                       guess(vd, hs * slope, y_new - s))
            k3 = (f2 - E32 * (k2 - f1) - 2.0 * (k1 - f0) + hs * D * f_t) / w
            est = hs / 6.0 * (k1 - 2.0 * k2 + k3)
            dist = op.maximum(op.minimum(s - lo, hi - s), op.minimum(y_new - lo, hi - y_new))
            err = op.abs(clip(y_new + est) - y_new) / (tol_abs + rtol * dist)
            # held on a bound through the step: the stages' differences of a rate that moves
            # nothing are no error
            held = (y_new == s) & (((y_new >= hi) & (f2 > 0)) | ((y_new <= lo) & (f2 < 0)))
            err = op.where(held, 0.0, err)
            # a step whose stages meet a switching threshold (the rate exactly 0 beyond it,
            # e.g. Stanford-PKU's minimum field): the state stops on the threshold if its
            # slowest rate on the way gets it there within the step (see the module doc)
            # (only once the step has shrunk to SLIDING_STEP of the sample interval: a
            # crossing of the threshold at a normal step size needs no help)
            short = hs < SLIDING_STEP * t_step
            off = short & (active & (w > 0)) & ((f0 != 0) | (f1 != 0) | (f2 != 0)) & (
                (f0 == 0) | (f1 == 0) | (f2 == 0)) if op.any(short) else short
            if op.any(off):
                va_end = va + hs * slope
                f_dir = op.where(f0 != 0, f0, op.where(f1 != 0, f1, f2))
                euler = clip(s + hs * f_dir)
                y_sw, f_in = _switch_points(dev, series, node, va_end, s, euler, vd2, off,
                                            tol_abs + rtol * dist)
                stop = off & (f_in != 0) & (op.abs(y_sw - s) <= hs * op.abs(f_in))
                if op.any(stop):
                    p = point(va_end, op.where(stop, y_sw, y_new), vd2)
                    y_new = op.where(stop, y_sw, y_new)
                    f2, jac2, f_va2, vd2, vd_s2, vd_va2 = (
                        op.where(stop, a, b) for a, b in zip(
                            p, (f2, jac2, f_va2, vd2, vd_s2, vd_va2), strict=True))
                    err = op.where(stop, 0.0, err)
            ok = active & (err <= 1.0) & (w > 0) & op.isfinite(f2)
            fac = op.minimum(op.maximum(0.9 / op.cbrt(op.maximum(err, 1e-10)), 0.2), 5.0)
            fac = op.where(op.isfinite(fac) & (w > 0), fac, 0.2)
            if op.all(ok):
                s, f0, jac, f_va, vd = y_new, f2, jac2, f_va2, vd2
                sens["ds"], sens["dva"] = vd_s2, vd_va2
                tau = op.where(hs >= left, t_step, tau + hs)
            else:
                s = op.where(ok, y_new, s)
                f0, jac, f_va, vd, sens["ds"], sens["dva"] = (
                    op.where(ok, a, b) for a, b in
                    ((f2, f0), (jac2, jac), (f_va2, f_va), (vd2, vd), (vd_s2, sens["ds"]),
                     (vd_va2, sens["dva"])))
                tau = op.where(ok, op.where(hs >= left, t_step, tau + hs), tau)
            h = op.where(active, op.where(ok & (hs < h), op.maximum(h, hs * fac), hs * fac), h)
            steps += active
            taken += active
            bad = active & ((~ok & (~op.isfinite(f0) | (hs < 1e-14 * t_step)))
                            | (steps > max_steps) | (taken > total_cap))
            if op.any(bad):
                if strict:
                    t_bad = float(np.max(np.asarray(t0 + t_step)[bad]))
                    raise CircuitnnError(
                        f"transient of {dev.model.name}: the state could not be integrated "
                        f"near t = {t_bad:.4g} s (non-finite rate or step size collapse); "
                        "check the parameters")
                active &= ~bad
                s = op.where(bad, np.nan, s)
            done = active & ((t_step - tau) <= 1e-12 * t_step)
            if synced and op.all(done):  # all in one interval, all through it: a row at a time
                j = int(k.flat[0]) + 1
                states[j], vdev[j] = s, (vd if series is not None else vv[j])
                k = k + 1
                tau, steps = np.zeros(shape)[()], np.zeros(shape, dtype=np.intp)[()]
                if j == n - 1:
                    break
                t0, v0, v1, t_step = tt[j], vv[j], vv[j + 1], tt[j + 1] - tt[j]
                slope = (v1 - v0) / t_step
                continue
            if op.any(done):
                synced = False
                rows, cols = np.asarray(k)[done] + 1, np.asarray(column)[done]
                flat_states[rows, cols] = np.asarray(s)[done]
                flat_vdev[rows, cols] = np.asarray(vd if series is not None else v1)[done]
                k = op.where(done, k + 1, k)
                tau = op.where(done, 0.0, tau)
                steps = op.where(done, 0, steps)
                active &= k < n - 1
                nxt = interval(op.minimum(k, n - 2))
                t0, v0, v1, t_step, slope = (op.where(done, a, b) for a, b in
                                             zip(nxt, (t0, v0, v1, t_step, slope), strict=True))
            alive = int(active.sum()) if compactable and active.size > 1 else 0
            if alive == 1 or (active.size >= 16 and 0 < 2 * alive <= active.size):
                # most elements are through (or failed): the others go on alone, the last one
                # as a scalar
                keep = np.flatnonzero(active)
                if keep.size == 1:
                    keep, op = keep[0], SCALAR_OPS
                synced = False  # the working elements are no longer whole rows
                dev = dev.take(wshape, keep)
                series = None if series is None else series.take(wshape, keep)
                (column, k, tau, steps, taken, h, s, f0, jac, f_va, vd, lo, hi, tol_abs, t0, v0,
                 v1, t_step, slope, active) = (flat_take(a, wshape, keep) for a in (
                    column, k, tau, steps, taken, h, s, f0, jac, f_va, vd, lo, hi, tol_abs, t0,
                    v0, v1, t_step, slope, active))
                sens = {key: flat_take(a, wshape, keep) for key, a in sens.items()}
                wshape = np.shape(keep)
        cur = pol * full_dev.evaluate("current", vdev, states)[0]

    def back(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(np.broadcast_to(a, (n,) + shape), 0, -1)

    return Trace(np.broadcast_to(t, shape + (n,)), np.broadcast_to(v, shape + (n,)),
                 back(vdev), back(cur), back(states))

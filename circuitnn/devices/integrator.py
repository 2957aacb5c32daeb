"""The transient integrator's loop for one element, compiled with numba (see `transient`).

This module is a template: `transient` compiles its text together with one model's kernels
(`rate`, `rate_jac`, `current_jac`, and the series element's `element`, written out from the
model's expressions), which replace the placeholders at the end. `integrate` runs every element
on its own, in parallel threads. Every function takes the element's model parameters as the
array `p` and the series element's as `q`; `pol` is the device's terminal orientation (the
kernels see pol * v_d).
"""

import math

import numba

D = 1.0 / (2.0 + math.sqrt(2.0))
E32 = 6.0 + math.sqrt(2.0)
#: step (fraction of the sample interval) below which a step meeting a switching threshold
#: stops on it (`switch_point`): the state slides along the threshold
SLIDING_STEP = 1e-2
#: a switching point is located to this fraction of the step's local error tolerance (at most
#: SWITCH_BISECTIONS halvings of the step)
SWITCH_PRECISION = 1e-2
SWITCH_BISECTIONS = 40
#: series-node Newton iterations (safeguarded; converges in a few from a warm start)
NODE_ITERATIONS = 60
#: set in the compiled text: whether a series element sits between the source and the device
HAS_SERIES = False
#: False in a text compiled in memory (no cache folder to keep numba's cache in)
CACHE = True

jit = numba.njit(cache=CACHE, error_model="numpy")


# the expression language's functions that `math` lacks (NaN propagates, as with numpy)
@jit
def nan_min(a, b):
    return a if a <= b else b if b < a else math.nan


@jit
def nan_max(a, b):
    return a if a >= b else b if b > a else math.nan


@jit
def power(a, b):
    return a**b


@jit
def where(c, a, b):
    return a if c else b


@jit
def node(va, s, guess, use_guess, one_step, pol, p, q):
    """The device voltage v_d with the series element: (v_d, G_elem, dI/dv_d, dI/ds)."""
    if not HAS_SERIES:
        return va, 0.0, 0.0, 0.0
    lo = min(va, 0.0)
    hi = max(va, 0.0)
    x = min(max(guess, lo), hi) if use_guess else 0.5 * (lo + hi)
    # Newton converges quadratically: after a step below 3e-5 |v_a| the error is ~1e-9 |v_a|
    tol = 1e-15 + 3e-5 * abs(va)
    g_el = i_v = i_s = 0.0
    for _ in range(NODE_ITERATIONS):
        i_dev, i_v, i_s = current_jac(pol * x, s, p)
        i_el, g_el = element(va - x, q)
        f = i_el - pol * i_dev  # decreasing in x
        if f > 0:
            lo = x
        else:
            hi = x
        step = x + f / (g_el + i_v)
        bad = not (lo <= step <= hi)  # or NaN
        x_new = 0.5 * (lo + hi) if bad else step
        done = not (abs(x_new - x) > tol)  # NaN counts as done
        x = x_new
        if done or (one_step and not bad):
            break
    return x, g_el, i_v, pol * i_s


@jit
def rate_at(vd, s, pol, p):
    """The raw rate (not held at a bound) at device voltage vd."""
    return rate(pol * vd, s, p)[0]


@jit
def point(va, s, guess, use_guess, lo, hi, pol, p, q):
    """(rate, d rate/ds, d rate/dv_a, v_d, dv_d/ds, dv_d/dv_a) at applied voltage va."""
    vd, g, i_v, i_s = node(va, s, guess, use_guess, False, pol, p, q)
    r, r_v, r_s = rate_jac(pol * vd, s, p)
    pinned = (s >= hi and r > 0) or (s <= lo and r < 0)  # held on a bound
    r_v = pol * r_v
    if not HAS_SERIES:
        return r, 0.0 if pinned else r_s, r_v, vd, 0.0, 1.0
    denom = g + i_v
    vd_s = -i_s / denom
    vd_va = g / denom
    return r, 0.0 if pinned else r_s + r_v * vd_s, r_v * vd_va, vd, vd_s, vd_va


@jit
def switch_point(va, s, y, vd, tol, pol, p, q):
    """Where the rate switches off between s and y at applied voltage va, by bisection to
    SWITCH_PRECISION x `tol`: (the first state with rate 0, the rate just before it), or
    (y, 0) when the rate at y is not 0 (no switch). Each bisection's node solve takes one
    Newton step from the previous one's voltage (the sign of the rate is all it decides)."""
    vd_y = node(va, y, vd, True, False, pol, p, q)[0]
    if not (rate_at(vd_y, y, pol, p) == 0
            and rate_at(node(va, s, vd, True, False, pol, p, q)[0], s, pol, p) != 0):
        return y, 0.0
    a, b, guess = s, y, vd_y
    width = SWITCH_PRECISION * tol
    for _ in range(SWITCH_BISECTIONS):
        mid = 0.5 * (a + b)
        guess = node(va, mid, guess, True, True, pol, p, q)[0]
        if rate_at(guess, mid, pol, p) != 0:
            a = mid
        else:
            b = mid
        if not (abs(b - a) > width):
            break
    return b, rate_at(node(va, a, guess, True, False, pol, p, q)[0], a, pol, p)


@jit
def one(t, v, s, lo, hi, rtol, tol_abs, max_steps, total_cap, pol, p, q, states, vdev):
    """Integrate one element over its samples (t, v) from state s, writing `states` and `vdev`
    at the samples; returns the time of the interval where it failed, or NaN."""
    n = t.size
    f0, jac, f_va, vd, vd_s, vd_va = point(v[0], s, 0.0, False, lo, hi, pol, p, q)
    states[0] = s
    vdev[0] = vd
    if n < 2:
        return math.nan
    h = t[1] - t[0]
    k, tau, steps, taken = 0, 0.0, 0, 0
    v0 = v[0]
    t_step = t[1] - t[0]
    slope = (v[1] - v0) / t_step
    while True:
        left = t_step - tau
        # the rest of the interval, or half of it when that is less than two steps
        hs = left if left <= h else (0.5 * left if left < 2 * h else h)
        va = v0 + slope * tau
        f_t = f_va * slope
        w = 1.0 - hs * D * jac
        k1 = (f0 + hs * D * f_t) / w
        s_mid = min(max(s + 0.5 * hs * k1, lo), hi)
        guess = vd + vd_va * 0.5 * hs * slope + vd_s * (s_mid - s)
        vd_mid = node(va + 0.5 * hs * slope, s_mid, guess, True, True, pol, p, q)[0]
        f1 = rate_at(vd_mid, s_mid, pol, p)
        k2 = (f1 - k1) / w + k1
        y = min(max(s + hs * k2, lo), hi)
        guess = vd + vd_va * hs * slope + vd_s * (y - s)
        f2, jac2, f_va2, vd2, vd_s2, vd_va2 = point(va + hs * slope, y, guess, True, lo, hi,
                                                   pol, p, q)
        k3 = (f2 - E32 * (k2 - f1) - 2.0 * (k1 - f0) + hs * D * f_t) / w
        est = hs / 6.0 * (k1 - 2.0 * k2 + k3)
        tol = tol_abs + rtol * max(min(s - lo, hi - s), min(y - lo, hi - y))
        err = abs(min(max(y + est, lo), hi) - y) / tol
        # held on a bound through the step: the stages' differences of a rate that moves
        # nothing are no error
        if y == s and ((y >= hi and f2 > 0) or (y <= lo and f2 < 0)):
            err = 0.0
        # a short step whose stages meet a switching threshold stops on it when its slowest
        # rate on the way gets it there within the step
        if (hs < SLIDING_STEP * t_step and w > 0 and (f0 != 0 or f1 != 0 or f2 != 0)
                and (f0 == 0 or f1 == 0 or f2 == 0)):
            va_end = va + hs * slope
            f_dir = f0 if f0 != 0 else (f1 if f1 != 0 else f2)
            euler = min(max(s + hs * f_dir, lo), hi)
            y_sw, f_in = switch_point(va_end, s, euler, vd2, tol, pol, p, q)
            if f_in != 0 and abs(y_sw - s) <= hs * abs(f_in):
                f2, jac2, f_va2, vd2, vd_s2, vd_va2 = point(va_end, y_sw, vd2, True, lo, hi,
                                                           pol, p, q)
                y = y_sw
                err = 0.0
        ok = err <= 1.0 and w > 0 and math.isfinite(f2)
        fac = 0.9 / max(err, 1e-10) ** (1.0 / 3.0)
        fac = min(max(fac, 0.2), 5.0) if (math.isfinite(fac) and w > 0) else 0.2
        if ok:
            s, f0, jac, f_va, vd, vd_s, vd_va = y, f2, jac2, f_va2, vd2, vd_s2, vd_va2
            tau = t_step if hs >= left else tau + hs
        h = max(h, hs * fac) if (ok and hs < h) else hs * fac
        steps += 1
        taken += 1
        if ((not ok and (not math.isfinite(f0) or hs < 1e-14 * t_step))
                or steps > max_steps or taken > total_cap):
            return t[k + 1]
        if t_step - tau <= 1e-12 * t_step:  # through the interval
            k += 1
            states[k] = s
            vdev[k] = vd if HAS_SERIES else v[k]
            if k == n - 1:
                return math.nan
            tau, steps = 0.0, 0
            v0 = v[k]
            t_step = t[k + 1] - t[k]
            slope = (v[k + 1] - v0) / t_step


@numba.njit(cache=CACHE, error_model="numpy", parallel=True)
def integrate(t, v, s0, lo, hi, tol_abs, rtol, max_steps, total_cap, pol, p, q, states, vdev,
              failed_at):
    """`one` for every row of the (elements, samples) arrays, in parallel threads."""
    for e in numba.prange(t.shape[0]):
        failed_at[e] = one(t[e], v[e], s0[e], lo[e], hi[e], rtol, tol_abs[e], max_steps,
                           total_cap, pol, p[e], q[e], states[e], vdev[e])


# placeholders, replaced in the compiled text by the model's and the series element's kernels
def rate(v, s, p):
    raise NotImplementedError


def rate_jac(v, s, p):
    raise NotImplementedError


def current_jac(v, s, p):
    raise NotImplementedError


def element(u, q):
    raise NotImplementedError

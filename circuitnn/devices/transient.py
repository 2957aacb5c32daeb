"""Error-controlled transient simulation of one-state devices, many devices at once.

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
shorter; the step size follows 0.9 (1 / err)^(1/3), limited to a factor 0.2..5. Steps never
cross a sample of the piecewise-linear drive (its corners), and values are reported at the
samples.

Switching thresholds: where a model's rate drops to exactly 0 (Stanford-PKU's minimum field,
Yakopcic's and VTEAM's voltage thresholds at a state-dependent device voltage), a state driven
towards the threshold would be resolved with ever shorter steps as it slides along it (e.g. a
gradual RESET that follows the threshold while the drive ramps). A step that ends beyond such a
point instead stops on it, found by bisection (to 1e-2 of the step's local error tolerance),
when the smallest rate on the way (the one just before the point, on the monotone approach)
covers the distance within the step; otherwise the step is shortened as usual.

Compiled: every element (device, candidate parameter set, sweep) is integrated on its own, by
the loop of `circuitnn.devices.integrator` compiled with numba together with the model's and the
series element's kernels (written out from their expressions), in parallel threads. The compiled
module of each (model, series element) is an entry of the user cache (`circuitnn.cache`, folder
`compiled`, checked private before anything there is executed), so it is compiled once per
machine (2-5 s), under the entry's lock (numba's cache is not safe under concurrent writers); a
read-only cache gives a compile in memory, once per process, with one warning line. Each
element's result depends on its own values only, not on the other elements simulated with it.

Series element (`circuitnn.devices.series.ExprElement`): the device voltage v_d solves
I_elem(v_a - v_d) = I_dev(v_d, s), by Newton's method safeguarded by bisection on
[min(0, v_a), max(0, v_a)]; the state's Jacobian then includes dv_d/ds = -I_s / (G_elem + I_v)
and the drive's time derivative dv_d/dt = G_elem v_a' / (G_elem + I_v). Each solve starts
from v_d extrapolated with these slopes; at the step's midpoint stage the first Newton step
from there is accepted (its error is of fourth order in the step), at the step's end the solve
runs to convergence.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from circuitnn.cache import compiled_module
from circuitnn.devices import expr, integrator
from circuitnn.devices.series import ExprElement
from circuitnn.errors import CircuitnnError

if TYPE_CHECKING:  # the Device that calls simulate() (device.py imports this module)
    from circuitnn.devices.device import Device

#: default local error tolerances (see the module doc)
RTOL = 1e-4
ATOL = 1e-7
#: most steps one element may take between two samples before it counts as failed
MAX_STEPS = 2000
#: how the expression language's functions are spelled in the compiled kernels
_SPELLING = {"exp": "math.exp", "log": "math.log", "sqrt": "math.sqrt", "sinh": "math.sinh",
             "cosh": "math.cosh", "tanh": "math.tanh", "abs": "abs", "min": "nan_min",
             "max": "nan_max", "pow": "power", "where": "where"}


@dataclass
class Trace:
    """A simulated waveform: applied voltage, device voltage, current and state at each sample."""

    t: np.ndarray
    v: np.ndarray
    v_device: np.ndarray
    i: np.ndarray
    state: np.ndarray


def _kernel_source(name: str, kern: expr.Kernel, args: tuple[str, ...], array: str,
                   offset: int) -> str:
    """A kernel as a compiled function name(*args, array): its other inputs are read from
    array[offset:] in the order of `_inputs(kern, args)`."""
    lines = ["@jit", f"def {name}({', '.join(args)}, {array}):"]
    lines += [f"    {n} = {array}[{offset + j}]" for j, n in enumerate(_inputs(kern, args))]
    for line in kern.lines:
        for fname, spelled in _SPELLING.items():
            line = line.replace(f"_f_{fname}(", f"{spelled}(")
        lines.append(f"    {line}")
    lines.append(f"    return ({', '.join(kern.outputs)},)")
    return "\n".join(lines)


def _inputs(kern: expr.Kernel, args: tuple[str, ...]) -> list[str]:
    return [n for n in kern.inputs if n not in args]


def _model_parts(dev: Device) -> list[tuple[str, expr.Kernel, expr.Prepared]]:
    return [(which, *dev.kernel(which)) for which in ("rate", "rate_jac", "current_jac")]


def _what(dev: Device, series: ExprElement | None) -> tuple:
    """(model kernels, state name, series element kernel): what an integrator is compiled for."""
    return (tuple(kern for _, kern, _ in _model_parts(dev)), dev.model.state,
            None if series is None else series.kernel)


def _compiled(dev: Device, series: ExprElement | None) -> ModuleType:
    """The integrator compiled with this model's (and series element's) kernels."""
    return _module(*_what(dev, series))


def integrator_source(dev: Device, series: ExprElement | None = None) -> str:
    """The text of the integrator compiled for this device (and series element)."""
    return _source(*_what(dev, series))


def _source(kernels: tuple[expr.Kernel, ...], state: str, element: expr.Kernel | None) -> str:
    """The integrator's template with these kernels written out after it."""
    args = ("v", state)
    parts, offset = [], 0
    for name, kern in zip(("rate", "rate_jac", "current_jac"), kernels, strict=True):
        parts.append(_kernel_source(name, kern, args, "p", offset))
        offset += len(_inputs(kern, args))
    if element is not None:
        parts.append(_kernel_source("element", element, ("u",), "q", 0))
    return "\n\n\n".join([inspect.getsource(integrator).rstrip(),
                           f"HAS_SERIES = {element is not None}", *parts]) + "\n"


@functools.cache
def _module(kernels: tuple[expr.Kernel, ...], state: str, element: expr.Kernel | None
            ) -> ModuleType:
    """The integrator's text with these kernels, compiled (`circuitnn.cache.compiled_module`:
    once per machine, in memory when the cache is read-only)."""
    return compiled_module(_source(kernels, state, element), "integrator", _compile,
                           "the transient integrator is compiled in memory (2-5 s per model, "
                           "every run)")


def _compile(module: ModuleType) -> None:
    """Compile (or load from numba's cache) `integrate` for the argument types `simulate` uses,
    with one element of one sample (which takes no step)."""
    one, row = np.zeros(1), np.zeros((1, 1))
    module.integrate(row, row, one, one, one, one, 1.0, 1, 1, 1.0, row, row,
                     np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1))


def _rows(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Per-element values (elements, len(arrays)), each array broadcast against `shape`."""
    size = math.prod(shape)
    if not arrays:
        return np.zeros((size, 1))
    return np.stack([np.broadcast_to(np.asarray(a, dtype=float), shape).reshape(size)
                     for a in arrays], axis=1)


def simulate(dev: Device, t: np.ndarray, v: np.ndarray, s0, series: ExprElement | None,
             rtol: float = RTOL, atol: float = ATOL, strict: bool = True,
             max_steps: int = MAX_STEPS, max_total_steps: int | None = None) -> Trace:
    """Integrate the device state over the sampled drive (t, v); see the module doc.

    Shapes: t (n,) or (..., n), v (..., n); parameters, s0 and the series element's parameters
    broadcast against the leading axes. With `strict`, an element whose state cannot be
    integrated (non-finite rate, more than `max_steps` steps between two samples, or more than
    `max_total_steps` in all) raises CircuitnnError; otherwise its outputs from there on become
    NaN (used by fits, where such a candidate parameter set is simply bad).
    """
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
    if series is not None and not isinstance(series, ExprElement):
        raise CircuitnnError("a series element must be a circuitnn.devices.series.ExprElement "
                             f"(an expression of its voltage u), got {type(series).__name__}")
    lo, hi = dev.bounds()
    element_params = [] if series is None else list(series.prepared.env.values())
    shape = np.broadcast_shapes(v.shape[:-1], t.shape[:-1], np.shape(s0), lo.shape,
                                *(np.shape(a) for a in dev.params.values()),
                                *(np.shape(a) for a in element_params))
    n = v.shape[-1]
    size = math.prod(shape)
    module = _compiled(dev, series)
    args = ("v", dev.model.state)
    p = _rows([prepared.env[name] for _, kern, prepared in _model_parts(dev)
               for name in _inputs(kern, args)], shape)
    q = _rows([] if series is None else
              [series.prepared.env[name] for name in _inputs(series.kernel, ("u",))], shape)
    # writable C arrays: the argument types `_compile` compiled the integrator for
    tt = np.require(np.broadcast_to(t, shape + (n,)).reshape(size, n), float, ["C", "W"])
    vv = np.require(np.broadcast_to(v, shape + (n,)).reshape(size, n), float, ["C", "W"])
    lo_e = np.broadcast_to(lo, shape).reshape(size).astype(float)
    hi_e = np.broadcast_to(hi, shape).reshape(size).astype(float)
    start = lo_e if s0 is None else np.broadcast_to(np.asarray(s0, dtype=float), shape)
    start = np.clip(np.reshape(start, size), lo_e, hi_e)
    states, vdev = np.full((size, n), np.nan), np.full((size, n), np.nan)
    failed_at = np.empty(size)
    cap = np.iinfo(np.int64).max if max_total_steps is None else int(max_total_steps)
    module.integrate(tt, vv, start, lo_e, hi_e, atol * (hi_e - lo_e), float(rtol),
                     int(max_steps), cap, dev.polarity, p, q, states, vdev, failed_at)
    failed = ~np.isnan(failed_at)
    if strict and failed.any():
        raise CircuitnnError(
            f"transient of {dev.model.name}: the state could not be integrated near t = "
            f"{np.max(failed_at[failed]):.4g} s (non-finite rate or step size collapse); "
            "check the parameters")
    states, vdev = states.reshape(shape + (n,)), vdev.reshape(shape + (n,))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        cur = dev.polarity * dev.evaluate("current", np.moveaxis(vdev, -1, 0),
                                          np.moveaxis(states, -1, 0))[0]
    cur = np.moveaxis(np.broadcast_to(cur, (n,) + shape), 0, -1)
    return Trace(np.broadcast_to(t, shape + (n,)), np.broadcast_to(v, shape + (n,)), vdev, cur,
                 states)

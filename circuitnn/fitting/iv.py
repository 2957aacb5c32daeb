"""Fit one compact-model parameter set to all measured I-V sweeps of a device.

Method:
1. Periodic steady state. Each sweep is one period of a repeated drive that starts at an
   arbitrary phase, so the state at its first sample is unknown. The waveform is repeated
   `warmup_periods` times before the compared period, starting from the middle of the state
   range; the simulated last period is compared with the measurement. (A sweep with a time
   column is treated the same way, as one period of a repeated drive.)
2. Global search: scipy `differential_evolution(vectorized=True)`; one objective call
   simulates the whole population (S candidates) on every sweep at once, parameters of shape
   (S, 1) against waveforms of shape (n_sweeps, n) (sweeps grouped by length). Log-flagged
   parameters (`ParamSpec.log`) are searched in log10 space. Both polarities (which terminal is
   the top electrode) are searched; the better one is kept.
3. Refinement: `lmfit.minimize(method="least_squares")` over `lmfit.Parameters` bounded by the
   ParamSpec bounds (log10 variables for log parameters, the physical value as an lmfit
   expression so its standard error is propagated); residuals are normalised per sweep, so the
   sum of squares is the sum over sweeps of NRMSE^2. The Jacobian is a forward difference with
   all columns simulated in one vectorised call.
4. Check: NRMSE per sweep (RMS error / (max I - min I)) and overall (mean over sweeps) with
   the fit's integration substeps and with finer integration.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lmfit
import numpy as np
from scipy.optimize import differential_evolution

import circuitnn
from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.device import Device
from circuitnn.devices.models import CompactModel, ParamSpec, get_model
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import Sweep

#: models the `fit` command accepts
FIT_MODELS = ("yakopcic", "vteam", "stanford-pku")

#: parameters held fixed during a fit (not identifiable from I-V loops, or a sign handled by
#: `polarity`). Stanford-PKU: gamma0*a0/tox and vel0*exp(-Ea/kT0) appear only as products at
#: the low self-heating of these loops, so a0, tox, Ea and T0 stay at their defaults.
FIXED: dict[str, dict[str, float]] = {
    "yakopcic": {"eta": 1.0},
    "vteam": {},
    "stanford-pku": {"T0": 298.0, "a0": 0.25e-9, "tox": 12e-9, "Ea": 0.6},
}

#: convergence criterion: a fit fails when any sweep's coefficient of determination
#: R^2 = 1 - SSE / SST is below this (the model explains less than half the current variance),
#: or when the overall NRMSE is above MAX_NRMSE or not finite
MIN_R2 = 0.5
MAX_NRMSE = 0.3
#: plausibility limits for measured data (catch wrong units before fitting)
MAX_ABS_CURRENT = 1.0  # A
MIN_CURRENT_SPAN = 1e-15  # A
MAX_ABS_VOLTAGE = 100.0  # V
_BAD = 1e3  # objective value of a candidate whose simulation is not finite


@dataclass
class FitSettings:
    """Effort and integration settings of an I-V fit."""

    popsize: int = 8  # DE population = popsize * number of free parameters
    maxiter: int = 80  # DE generations per polarity
    seed: int = 0
    warmup_periods: int = 2
    rtol_search: float = 1e-3  # integration tolerance during the global search
    rtol_refine: float = 1e-4  # lmfit refinement: fine enough not to fit integration error
    rtol_check: float = 1e-6  # for the final check
    max_nfev: int = 60  # lmfit residual evaluations (the Jacobian is extra, vectorised)
    polarities: tuple[float, ...] = (1.0, -1.0)
    start: dict[str, float] | None = None  # skip the global search, refine from these values
    start_polarity: float | None = None


@dataclass
class IVFit:
    """Result of `fit_iv`."""

    model: str
    device: str
    params: dict[str, float]
    stderr: dict[str, float | None]
    polarity: float
    nrmse: float  # overall, with substeps_check
    nrmse_per_sweep: dict[str, float]
    nrmse_fit: float  # overall, with the refinement's substeps
    nrmse_fit_per_sweep: dict[str, float]
    r2_per_sweep: dict[str, float]
    predicted: list[np.ndarray]  # simulated current per sweep (A), fine integration
    sweeps: list[Sweep]
    settings: FitSettings
    seconds: dict[str, float]
    search_nrmse: dict[str, float]  # best DE objective per polarity tried
    fixed: dict[str, float]
    lmfit_message: str = ""
    residual_stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def device_obj(self) -> Device:
        """The fitted `Device`."""
        return Device(self.model, self.params, polarity=self.polarity)


def nrmse(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """RMS error over the last axis divided by the measured span (max - min)."""
    meas = np.asarray(meas, float)
    err = np.sqrt(np.mean((np.asarray(pred, float) - meas) ** 2, axis=-1))
    return err / np.ptp(meas, axis=-1)


# ----------------------------------------------------------------------------- checks


def check_sweeps(sweeps: Sequence[Sweep]) -> None:
    """Refuse data that cannot be fitted meaningfully (flat or implausibly scaled)."""
    if not sweeps:
        raise CircuitnnError("no sweeps to fit")
    for s in sweeps:
        where = f"{s.source} ({s.name})"
        if not (np.all(np.isfinite(s.v)) and np.all(np.isfinite(s.i))):
            raise CircuitnnError(f"{where}: data hold non-finite values")
        if np.max(np.abs(s.i)) > MAX_ABS_CURRENT:
            raise CircuitnnError(
                f"{where}: current reaches {np.max(np.abs(s.i)):.3g} A, implausible for a "
                "memristor; check the current unit")
        if np.ptp(s.i) < MIN_CURRENT_SPAN:
            raise CircuitnnError(
                f"{where}: current is flat (span {np.ptp(s.i):.3g} A); nothing to fit")
        if np.max(np.abs(s.v)) > MAX_ABS_VOLTAGE:
            raise CircuitnnError(
                f"{where}: voltage reaches {np.max(np.abs(s.v)):.3g} V, implausible; "
                "check the voltage column")
        if np.ptp(s.v) <= 0:
            raise CircuitnnError(f"{where}: voltage is constant; an I-V fit needs a sweep")


# ----------------------------------------------------------------------------- the problem


def _kind(p: ParamSpec) -> str:
    """Search scale: 'log' (ParamSpec.log), 'neglog' (a negative range spanning more than three
    decades, e.g. VTEAM's k_on: searched as log10(-value)), else 'lin'."""
    if p.log:
        return "log"
    if p.hi < 0 and p.lo / p.hi > 1e3:
        return "neglog"
    return "lin"


def _search_bounds(p: ParamSpec, kind: str) -> tuple[float, float]:
    if kind == "log":
        return math.log10(p.lo), math.log10(p.hi)
    if kind == "neglog":
        return math.log10(-p.hi), math.log10(-p.lo)
    return p.lo, p.hi


def _var_name(p: ParamSpec, kind: str) -> str:
    return {"log": f"log10_{p.name}", "neglog": f"log10_neg_{p.name}"}.get(kind, p.name)


class _Problem:
    """Sweeps stacked for vectorised simulation, and the map from search vectors to params."""

    def __init__(self, model: CompactModel, sweeps: Sequence[Sweep], warmup: int) -> None:
        self.model = model
        self.sweeps = list(sweeps)
        self.fixed = dict(FIXED.get(model.name, {}))
        self.free: list[ParamSpec] = [p for p in model.params if p.name not in self.fixed]
        self.kind = [_kind(p) for p in self.free]
        lo_hi = [_search_bounds(p, k) for p, k in zip(self.free, self.kind, strict=True)]
        self.lo = np.array([a for a, _ in lo_hi])
        self.hi = np.array([b for _, b in lo_hi])
        self.var_names = [_var_name(p, k) for p, k in zip(self.free, self.kind, strict=True)]
        self.groups: list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        by_len: dict[int, list[int]] = {}
        for k, s in enumerate(self.sweeps):
            by_len.setdefault(s.n, []).append(k)
        for n, idx in by_len.items():
            ts, vs = [], []
            for k in idx:
                s = self.sweeps[k]
                if s.periodic and s.frequency_hz:
                    period = 1.0 / s.frequency_hz
                else:
                    period = float(s.t[-1] - s.t[0]) * n / (n - 1)
                t0 = s.t - s.t[0]
                ts.append(np.concatenate([t0 + j * period for j in range(warmup + 1)]))
                vs.append(np.tile(s.v, warmup + 1))
            meas = np.stack([self.sweeps[k].i for k in idx])
            rs = np.array([self.sweeps[k].series_resistance_ohm for k in idx])
            self.groups.append((idx, np.stack(ts), np.stack(vs), meas, rs))
        self.n_last = {k: self.sweeps[k].n for k in range(len(self.sweeps))}

    def to_params(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Search vectors (S, k) -> parameter arrays of shape (S, 1), plus the fixed ones."""
        x = np.atleast_2d(x)
        out: dict[str, np.ndarray] = {}
        for j, (p, kind) in enumerate(zip(self.free, self.kind, strict=True)):
            col = x[:, j : j + 1]
            out[p.name] = 10.0**col if kind == "log" else -(10.0**col) if kind == "neglog" else col
        for k, val in self.fixed.items():
            out[k] = np.full((x.shape[0], 1), val)
        return out

    def to_vector(self, values: dict[str, float]) -> np.ndarray:
        """Physical values -> one search vector (clipped into the bounds)."""
        x = []
        for p, kind in zip(self.free, self.kind, strict=True):
            val = float(values[p.name])
            if kind == "log":
                val = math.log10(max(val, p.lo))
            elif kind == "neglog":
                val = math.log10(max(-val, -p.hi))
            x.append(val)
        return np.clip(np.array(x), self.lo, self.hi)

    def predict(self, x: np.ndarray, polarity: float, rtol: float) -> list[np.ndarray]:
        """Simulated current of the compared period, per sweep: arrays (S, n)."""
        dev = Device(self.model, self.to_params(x), polarity=polarity)
        out: list[np.ndarray] = [np.empty(0)] * len(self.sweeps)
        with np.errstate(all="ignore"):
            lo, hi = dev.bounds()
            s0 = 0.5 * (lo + hi)
            for idx, t, v, _meas, rs in self.groups:
                n = self.sweeps[idx[0]].n
                r = rs if np.any(rs > 0) else 0.0
                cur = dev.simulate(t, v, s0, r_series=r, rtol=rtol, atol=rtol * 1e-3,
                                   strict=False).i[..., -n:]
                for g, k in enumerate(idx):
                    out[k] = cur[:, g, :]
        return out

    def nrmse_matrix(self, x: np.ndarray, polarity: float, rtol: float) -> np.ndarray:
        """(S, n_sweeps) NRMSE; non-finite simulations get a large value."""
        pred = self.predict(x, polarity, rtol)
        with np.errstate(all="ignore"):
            e = np.stack([nrmse(p, s.i) for p, s in zip(pred, self.sweeps, strict=True)], axis=1)
        return np.where(np.isfinite(e), e, _BAD)

    def residuals(self, x: np.ndarray, polarity: float, rtol: float) -> np.ndarray:
        """(S, m) residuals normalised per sweep: sum of squares = sum over sweeps of NRMSE^2."""
        pred = self.predict(x, polarity, rtol)
        parts = []
        for p, s in zip(pred, self.sweeps, strict=True):
            parts.append((p - s.i) / (np.ptp(s.i) * math.sqrt(s.n)))
        r = np.concatenate(parts, axis=-1)
        return np.nan_to_num(r, nan=10.0, posinf=10.0, neginf=-10.0)


# ----------------------------------------------------------------------------- search & refine


def _search(
    prob: _Problem, polarity: float, st: FitSettings, progress: Callable[[], None] | None
) -> tuple[np.ndarray, float]:
    """Differential evolution over the whole population at once; returns (x, objective)."""

    def objective(xt: np.ndarray) -> np.ndarray:  # xt: (k, S)
        return prob.nrmse_matrix(xt.T, polarity, st.rtol_search).mean(axis=1)

    def callback(intermediate_result: Any) -> None:
        if progress is not None:
            progress()

    res = differential_evolution(
        objective,
        list(zip(prob.lo, prob.hi, strict=True)),
        popsize=st.popsize,
        maxiter=st.maxiter,
        seed=st.seed,
        tol=1e-6,
        mutation=(0.5, 1.0),
        recombination=0.7,
        init="sobol",
        polish=False,
        vectorized=True,
        updating="deferred",
        callback=callback,
    )
    return np.asarray(res.x), float(res.fun)


def _lmfit_params(prob: _Problem, x0: np.ndarray) -> lmfit.Parameters:
    pars = lmfit.Parameters()
    for j, var in enumerate(prob.var_names):
        pars.add(var, value=float(x0[j]), min=float(prob.lo[j]), max=float(prob.hi[j]))
    for p, kind, var in zip(prob.free, prob.kind, prob.var_names, strict=True):
        if kind == "log":
            pars.add(p.name, expr=f"10**{var}")
        elif kind == "neglog":
            pars.add(p.name, expr=f"-10**{var}")
    return pars


def _refine(
    prob: _Problem, x0: np.ndarray, polarity: float, st: FitSettings
) -> lmfit.minimizer.MinimizerResult:
    """lmfit least-squares refinement from x0 with a vectorised forward-difference Jacobian."""
    names = prob.var_names
    span = prob.hi - prob.lo

    def vec(pars: lmfit.Parameters) -> np.ndarray:
        return np.array([pars[n].value for n in names])

    def residual(pars: lmfit.Parameters) -> np.ndarray:
        return prob.residuals(vec(pars), polarity, st.rtol_refine)[0]

    def jacobian(pars: lmfit.Parameters) -> np.ndarray:
        x = vec(pars)
        h = 1e-4 * np.maximum(span, 1e-12)
        h = np.where(x + h > prob.hi, -h, h)  # step inwards at an upper bound
        xs = np.vstack([x, x + np.diag(h)])
        r = prob.residuals(xs, polarity, st.rtol_refine)
        return ((r[1:] - r[0]) / h[:, None]).T

    return lmfit.minimize(
        residual, _lmfit_params(prob, x0), method="least_squares", jac=jacobian,
        max_nfev=st.max_nfev, x_scale="jac",
    )


def _stderr(result: lmfit.minimizer.MinimizerResult, prob: _Problem) -> dict[str, float | None]:
    """Physical-unit standard errors from lmfit; None where not estimable.

    When lmfit has no covariance (singular J^T J: some parameter has no effect on the current,
    e.g. pinned at a bound), the covariance is formed from the final Jacobian restricted to the
    columns that do affect the residuals, scaled by the reduced chi-square like lmfit does; the
    other parameters get None.
    """
    out: dict[str, float | None] = {}
    ok = lambda se: se is not None and math.isfinite(se) and se > 0  # noqa: E731
    if all(ok(result.params[p.name].stderr) for p in prob.free):
        return {p.name: float(result.params[p.name].stderr) for p in prob.free}
    jac = getattr(result, "jac", None)
    se_var: dict[int, float] = {}
    if isinstance(jac, np.ndarray) and jac.ndim == 2 and jac.shape[1] == len(prob.free):
        norms = np.linalg.norm(jac, axis=0)
        keep = np.flatnonzero(norms > 1e-8 * max(float(norms.max()), 1e-300))
        if keep.size:
            jk = jac[:, keep]
            try:
                cov = np.linalg.inv(jk.T @ jk) * float(result.redchi)
                diag = np.diag(cov)
                for j, d in zip(keep, diag, strict=True):
                    if d > 0 and math.isfinite(d):
                        se_var[int(j)] = math.sqrt(d)
            except np.linalg.LinAlgError:
                pass
    for j, (p, kind) in enumerate(zip(prob.free, prob.kind, strict=True)):
        se = result.params[p.name].stderr
        if ok(se):
            out[p.name] = float(se)
        elif j in se_var:
            scale = abs(result.params[p.name].value) * math.log(10) if kind != "lin" else 1.0
            out[p.name] = se_var[j] * scale
        else:
            out[p.name] = None
    return out


def fit_iv(
    sweeps: Sequence[Sweep],
    model: str,
    settings: FitSettings | None = None,
    progress: Callable[[], None] | None = None,
    check: bool = True,
) -> IVFit:
    """Fit one parameter set of `model` to all `sweeps` (one device); see the module doc.

    `progress` is called once per DE generation. With `check`, a fit that does not explain the
    data (see MIN_R2 / MAX_NRMSE) raises CircuitnnError.
    """
    if model not in FIT_MODELS:
        raise CircuitnnError(f"unknown model {model!r} for fitting; choose from "
                             f"{', '.join(FIT_MODELS)}")
    st = settings or FitSettings()
    sweeps = list(sweeps)
    check_sweeps(sweeps)
    cm = get_model(model)
    prob = _Problem(cm, sweeps, st.warmup_periods)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    search: dict[str, float] = {}
    if st.start is not None:
        start = dict(cm.defaults(), **st.start)
        pol = float(st.start_polarity if st.start_polarity is not None else st.polarities[0])
        x0 = prob.to_vector(start)
    else:
        best: tuple[float, np.ndarray, float] | None = None
        for pol in st.polarities:
            x, f = _search(prob, pol, st, progress)
            search[f"{pol:+.0f}"] = f
            if best is None or f < best[0]:
                best = (f, x, pol)
        assert best is not None
        _, x0, pol = best
    seconds["search"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    result = _refine(prob, x0, pol, st)
    # trust-region least squares never ends worse than its start
    x = np.array([result.params[var].value for var in prob.var_names])
    seconds["refine"] = time.perf_counter() - t1

    names = [s.name for s in sweeps]
    # per-sweep NRMSE at the refinement's substeps, from lmfit's final residual vector
    bounds = np.cumsum([0] + [s.n for s in sweeps])
    e_fit = np.array([math.sqrt(float(np.sum(result.residual[a:b] ** 2)))
                      for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    pred = [p[0] for p in prob.predict(x, pol, st.rtol_check)]
    with np.errstate(all="ignore"):
        e_chk = np.array([float(nrmse(p, s.i)) for p, s in zip(pred, sweeps, strict=True)])
        r2 = np.array([1.0 - np.sum((p - s.i) ** 2) / np.sum((s.i - s.i.mean()) ** 2)
                       for p, s in zip(pred, sweeps, strict=True)])
    seconds["total"] = time.perf_counter() - t0

    values = {k: float(v[0, 0]) for k, v in prob.to_params(x).items()}
    fit = IVFit(
        model=model,
        device=sweeps[0].device,
        params={p.name: values[p.name] for p in cm.params},
        stderr=_stderr(result, prob),
        polarity=pol,
        nrmse=float(np.mean(e_chk)),
        nrmse_per_sweep=dict(zip(names, map(float, e_chk), strict=True)),
        nrmse_fit=float(np.mean(e_fit)),
        nrmse_fit_per_sweep=dict(zip(names, map(float, e_fit), strict=True)),
        r2_per_sweep=dict(zip(names, map(float, r2), strict=True)),
        predicted=pred,
        sweeps=sweeps,
        settings=st,
        seconds=seconds,
        search_nrmse=search,
        fixed=dict(prob.fixed),
        lmfit_message=str(result.message),
        residual_stats=_residual_stats(pred, sweeps),
    )
    if check:
        check_fit(fit)
    return fit


def check_fit(fit: IVFit) -> None:
    """Raise CircuitnnError when the fit did not converge to a usable description of the data."""
    where = f"device {fit.device!r}, model {fit.model}"
    if not math.isfinite(fit.nrmse):
        raise CircuitnnError(f"fit did not converge ({where}): simulated current not finite")
    worst = min(fit.r2_per_sweep, key=lambda k: fit.r2_per_sweep[k])
    if not fit.r2_per_sweep[worst] >= MIN_R2:
        src = next(s.source for s in fit.sweeps if s.name == worst)
        raise CircuitnnError(
            f"fit did not converge ({where}): the model explains only "
            f"R^2 = {fit.r2_per_sweep[worst]:.2f} of the current variance of {src} "
            f"(need >= {MIN_R2}); noise, or not a memristive loop?")
    if fit.nrmse > MAX_NRMSE:
        raise CircuitnnError(f"fit did not converge ({where}): overall NRMSE {fit.nrmse:.3f} "
                             f"> {MAX_NRMSE}")


def _residual_stats(pred: list[np.ndarray], sweeps: list[Sweep]) -> dict[str, dict[str, float]]:
    out = {}
    for p, s in zip(pred, sweeps, strict=True):
        r = p - s.i
        span = float(np.ptp(s.i))
        out[s.name] = {
            "mean_A": float(np.mean(r)),
            "std_A": float(np.std(r)),
            "max_abs_A": float(np.max(np.abs(r))),
            "rms_rel": float(np.sqrt(np.mean(r**2)) / span),
            "max_abs_rel": float(np.max(np.abs(r)) / span),
            "span_A": span,
        }
    return out


# ----------------------------------------------------------------------------- cards


def _dataset_source(path: str) -> dict[str, str] | None:
    """The public source of a data file, if it lies in a registered dataset folder."""
    from circuitnn import datasets

    for key, ds in datasets.DATASETS.items():
        try:
            folder = datasets.dataset_path(key).resolve()
        except CircuitnnError:
            continue
        try:
            from pathlib import Path

            Path(path).resolve().relative_to(folder)
        except ValueError:
            continue
        out = {"dataset": key, "url": ds.url, "licence": ds.licence}
        if ds.attribution:
            out["attribution"] = ds.attribution
        return out
    return None


def device_spread(fits: Sequence[IVFit]) -> dict[str, Any]:
    """Device-to-device spread of fitted parameters (same model, several devices)."""
    if len(fits) < 2:
        return {}
    cm = get_model(fits[0].model)
    stats: dict[str, Any] = {}
    for p in cm.params:
        if p.name in fits[0].fixed:
            continue
        vals = np.array([f.params[p.name] for f in fits])
        entry: dict[str, Any] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)),
                                 "values": [float(v) for v in vals], "unit": p.unit}
        if p.log and np.all(vals > 0):
            entry["log10_std"] = float(np.log10(vals).std(ddof=1))
        stats[p.name] = entry
    return {"devices": [f.device for f in fits],
            "polarity": [f.polarity for f in fits],
            "nrmse": [f.nrmse for f in fits],
            "parameters": stats,
            "note": "sample statistics (ddof=1) of parameters fitted separately per device"}


def make_card(fit: IVFit, manifest: str | None = None,
              spread: dict[str, Any] | None = None) -> ModelCard:
    """The model card of a fit: parameters with stderr, provenance, fit quality, variation."""
    dev = fit.device_obj()
    card = dev.to_card()
    params: dict[str, Parameter] = {}
    for name, par in card.parameters.items():
        se = fit.stderr.get(name)
        params[name] = Parameter(par.value, par.unit, se, par.description)
    not_estimated = [k for k, v in fit.stderr.items() if v is None]
    files = []
    for s in fit.sweeps:
        entry: dict[str, Any] = {"sweep": s.name, "file": s.source,
                                 "frequency_hz": s.frequency_hz,
                                 "series_resistance_ohm": s.series_resistance_ohm}
        src = _dataset_source(s.source)
        if src:
            entry["public_source"] = src
        files.append(entry)
    provenance = {
        "device": fit.device,
        "manifest": manifest,
        "data": files,
        "date": _dt.date.today().isoformat(),
        "circuitnn_version": circuitnn.__version__,
        "method": "differential evolution (vectorised population) + lmfit least_squares, "
                  "periodic steady state after warm-up periods",
        "settings": {k: v for k, v in asdict(fit.settings).items() if k != "start"},
        "started_from_given_values": fit.settings.start is not None,
        "fixed_parameters": fit.fixed,
    }
    quality = {
        "nrmse_definition": "RMS(I_sim - I_meas) / (max I_meas - min I_meas) per sweep; "
                            "overall = mean over sweeps",
        "nrmse": fit.nrmse,
        "nrmse_per_sweep": fit.nrmse_per_sweep,
        "rtol": fit.settings.rtol_check,
        "nrmse_refine_substeps": fit.nrmse_fit,
        "nrmse_per_sweep_refine_substeps": fit.nrmse_fit_per_sweep,
        "r2_per_sweep": fit.r2_per_sweep,
        "search_nrmse_per_polarity": fit.search_nrmse,
        "polarity_kept": fit.polarity,
        "lmfit_message": fit.lmfit_message,
        "stderr_not_estimated": not_estimated,
        "stderr_note": ("stderr from the lmfit covariance (scaled by reduced chi-square); null "
                        "when not estimable (parameter at a bound or singular covariance) and "
                        "for fixed parameters"),
        "seconds": fit.seconds,
    }
    variation: dict[str, Any] = {"residuals_per_sweep": fit.residual_stats}
    if spread:
        variation["device_to_device"] = spread
    return ModelCard(fit.model, params, provenance, quality, variation,
                     notes=f"Fitted to measured I-V sweeps of device {fit.device}.")


def fit_summary(fit: IVFit) -> dict[str, Any]:
    """The JSON summary printed by `circuitnn fit --json`."""
    cm = get_model(fit.model)
    params = {p.name: {"value": fit.params[p.name], "stderr": fit.stderr.get(p.name),
                       "unit": p.unit} for p in cm.params}
    params["polarity"] = {"value": fit.polarity, "stderr": None, "unit": ""}
    return {
        "model": fit.model,
        "device": fit.device,
        "nrmse": fit.nrmse,
        "nrmse_per_sweep": fit.nrmse_per_sweep,
        "nrmse_refine_substeps": fit.nrmse_fit,
        "params": params,
        "seconds": fit.seconds,
    }

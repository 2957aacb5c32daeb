"""Fit one compact-model parameter set to all measured I-V sweeps of a device.

Measures (per sweep, and overall = mean over sweeps):
- NRMSE = RMS(I_sim - I_meas) / (max I_meas - min I_meas);
- log error (decades) = RMS of log10|I_sim| - log10|I_meas| over every point above the sweep's
  noise floor (`Sweep.noise_floor_a`: the manifest's, else estimated from the data, else the
  instrument's resolution; `circuitnn.fitting.data`), with no cut relative to the peak: on a
  device whose current spans decades, the low-bias points are the ones a network reads;
- read-region error `read_error_decades`: the same RMS over the points of the log error whose
  device voltage |V - I R_series| is at most the read range (readings at the compliance left
  out). The read range is `FitSettings.read_range_v` (`fit --read-range`, the manifest's
  `read_range_v`), else READ_RANGE_FACTOR (2) x the fitted card's safe read voltage
  (`circuitnn.devices.operating`): the search and a first refinement use 2 x the reference's
  0.2 V (capped at the sweeps' smallest peak |V|), then the card's v_read is computed and, when
  twice it differs from the range used by more than READ_RANGE_SLACK, the refinement is run once
  more with it; the card records the range and how it was chosen. A given read range must hold
  MIN_READ_POINTS (5) measured points in each sweep's read region, or the fit is refused; the
  default one is widened until it does.

Objective: the three measures in units of their targets (TARGET_NRMSE = 0.05, TARGET_LOG = 0.3
decades, TARGET_READ = 0.15 decades), sum over sweeps of (NRMSE / 0.05)^2 + (log error / 0.3)^2
+ (read error / 0.15)^2: a read conductance 40% off costs as much as an NRMSE of 0.05, and a
card two decades off where the network reads pays ~180 per sweep (the read region is also in
the log error). On a device whose high-bias current the model cannot follow (a series-resistance
limited diode, `benchmarks/bench_fit_read.py`), the fit gives up linear accuracy there for the
read region. The ranking of several models (`IVFit.score`) is the mean over sweeps of the same
sum. As least squares: per sweep, linear residuals (I_sim - I_meas) / (span sqrt(n) 0.05), log
residuals (log10 max(|I_sim|, floor) - log10|I_meas|) / (sqrt(n_log) 0.3) and read residuals
likewise over the read region (0.15), where floor = 0.1 x the smallest measured |I| of the log
error (a simulated current crossing zero costs a bounded amount).

Compliance (manifest `compliance_a`): the instrument is a voltage source whose current is limited
to +-compliance (`circuitnn.devices.series.current_limit`: 1 ohm output resistance, or the
sweep's series resistance, up to a smooth corner at the limit); it is simulated in series with
the device, so while the limit holds the device sees less than the programmed voltage, as it did
in the measurement. Readings at the limit (|I| >= 0.99 compliance) are the instrument's, not the
device's: they stay in the objective as censored data, which with the simulated limit costs
nothing when the model device would draw at least the compliance and measures only a model that
stays below it.

Method:
1. Periodic steady state. Each sweep is one period of a repeated drive starting at an arbitrary
   phase; the waveform is repeated `warmup_periods` times before the compared period, starting
   from the middle of the state range.
2. Global search: scipy `differential_evolution(vectorized=True)`, one search per terminal
   orientation (polarity) and seed (`searches`), side by side: each generation, one call simulates
   every search's population on every sweep at once (`lockstep.Lockstep`; on every second sample
   when that leaves 100 per sweep, with one warm-up period and a loose integration tolerance: the
   searches only rank candidates; a candidate needing more than 40 integration steps between two
   samples scores as bad). Log-flagged parameters (`ParamSpec.log`) are searched as log10. The
   orientations are searched apart: one population over both settles on one of them within a few
   generations, not always on the one that refines best (Knowm M3: the other orientation refines
   to half the objective). The searches race: after 15 generations, one whose best objective is
   above twice the best search's is dropped. A search whose population has converged with at least
   RESTART_GENERATIONS (15) of its `maxiter` generations left restarts from a new population with
   the generations left (its final population is kept among the candidates): the searches that end
   far from the best fits are those that settle early on a plateau (Knowm M1 VTEAM, seed 0: on a
   plain resistor, objective 98, after 20 generations, where seeds 1-3 reach 9-13 in 60).
3. Refinement: lmfit least squares (trust region reflective) on the same variables, in two stages.
   Coarse: from the `refine_starts` (4) best members of every search's final population, side by
   side on the searches' view of the sweeps at `rtol_coarse` = 1e-3, to a relative cost decrease
   of 1e-3 (racing as the searches, after 3 evaluations; once two have converged, one still above
   both after twice the evaluations of the higher one is given up: only the two lowest go on). A
   search's best member is not always in the best basin (Knowm M1 VTEAM: its best refined to 16.6,
   its fourth best to 4.3), and a coarse evaluation costs about a third of a full one. Full: from
   the two lowest coarse results, side by side (racing; once one has converged, the other is given
   up if it is still above it after twice its evaluations), on every sample after `warmup_periods`
   at `rtol_refine`; the lowest refined objective wins (values given with `start`, e.g. a card,
   are refined in full directly). Each full refinement runs to convergence: it stops when the
   relative decrease of the cost in an iteration falls below `ftol` = 1e-4 (a change of the NRMSE
   in its fifth digit) or the relative step below `xtol` = 1e-6; the Jacobian is a central
   difference with all columns simulated in the same vectorised call. A refinement that ends on
   its evaluation cap instead is reported as not converged.
4. Uncertainty: covariance s^2 (J^T J)^-1 of the search variables at the optimum (s^2 = residual
   sum of squares / (m - k), as lmfit), converted to physical units. A parameter gets no
   standard error, with the reason in `stderr_reason`, when it ends at a bound of its search
   range, when it has no effect on the currents, or when it is correlated with others at
   |corr| > 0.99 (not identifiable; the reason names them). Optional bootstrap over sweeps.
5. Check: measures at a tight integration tolerance, and the card re-simulated in ngspice on its
   own measured waveforms (`nrmse_ngspice`); numpy and ngspice must agree within 0.01 (ngspice
   gets 60 s per sweep). The card must be in periodic steady state: the compared period and the
   one `warmup_periods` periods later must agree within NRMSE 0.01 (`period_drift`); a card whose
   state still drifts (the Knowm M1 Yakopcic card: 0.029) fits a passing moment of its
   transient, not the device's steady loop.
"""

from __future__ import annotations

import datetime as _dt
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import lmfit
import numpy as np
from scipy.optimize import differential_evolution

import circuitnn
from circuitnn.devices import transient
from circuitnn.devices.card import ModelCard, Parameter
from circuitnn.devices.device import Device
from circuitnn.devices.models import CompactModel, ParamSpec, get_model
from circuitnn.devices.operating import (
    V_READ_REFERENCE,
    operating_point,
    with_operating_point_or_reason,
)
from circuitnn.devices.series import ExprElement, current_limit, resistor
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import Sweep
from circuitnn.fitting.lockstep import Lockstep, Request
from circuitnn.fitting.readcheck import read_region_record

#: models the `fit` command accepts
FIT_MODELS = ("yakopcic", "vteam", "stanford-pku", "mss", "interface")

#: parameters held fixed during a fit (not identifiable from I-V loops, or a sign handled by
#: `polarity`). Stanford-PKU: gamma0*a0/tox and vel0*exp(-Ea/kT0) appear only as products at
#: the low self-heating of these loops, so a0, tox, Ea and T0 stay at their defaults. MSS: only
#: phi/R_on, phi/R_off, (1 - phi) a_f and (1 - phi) a_r reach the current, so phi stays at 0.5;
#: T is the measurement's temperature (it sets V_T = kT/q of the switching probabilities).
FIXED: dict[str, dict[str, float]] = {
    "yakopcic": {"eta": 1.0},
    "interface": {"eta": 1.0},
    "vteam": {},
    "stanford-pku": {"T0": 298.0, "a0": 0.25e-9, "tox": 12e-9, "Ea": 0.6},
    "mss": {"phi": 0.5, "T": 298.5},
}

TARGET_NRMSE = 0.05
TARGET_LOG = 0.3  # decades
TARGET_READ = 0.15  # decades, read-region error (a read conductance 40% off)
#: default read range: this many times the fitted card's safe read voltage
READ_RANGE_FACTOR = 2.0
#: the default read range is refined again when twice the card's v_read differs from the range
#: the refinement used by more than this fraction
READ_RANGE_SLACK = 0.1
#: fewest measured points (above the noise floor) in each sweep's read region
MIN_READ_POINTS = 5
#: in the objective's logs, simulated currents below this fraction of the smallest measured
#: current of the log error count as this
SIM_FLOOR = 0.1
#: sweeps are searched on every second sample when that leaves at least this many samples
#: (fewer lose single-sample features: the bipolar loop's 150 samples on every second one miss
#: its RESET point, and the coarse optimum 0.016 there is 0.9 on every sample)
SEARCH_SAMPLES = 100
#: in the search, a candidate needing more integration steps between two samples scores as bad
#: (dynamics thousands of times faster than the sampling; ranking them exactly is not worth it)
SEARCH_MAX_STEPS = 40
#: in the refinement, a candidate needing more integration steps per sample on average scores
#: as bad (the fitted cards of BENCHMARKS.md need 1.2-3.3; Knowm M3's VTEAM refinement wandered
#: into candidates needing ~100, 20 s per evaluation, without this)
REFINE_STEPS_PER_SAMPLE = 8
#: the coarse refinement's convergence (relative cost decrease; it only has to reach the basin)
COARSE_FTOL = 1e-3
#: the coarse refinements refined in full (lowest coarse objectives first): a coarse optimum's
#: rank is not always the full one's (Knowm M3 VTEAM: 2.28 and 2.38 refine to 2.95 and 2.61)
FULL_STARTS = 2
#: once one full refinement (FULL_STARTS coarse ones) has converged, another still above its
#: (their higher) cost is given up after this many times its evaluations (Knowm M2 VTEAM: 4.84
#: in 21; the other crept from 5.37 to 5.15 in 148 more, 60 s)
REFINE_PATIENCE = 2.0
#: side-by-side searches (and refinements) race: after RACE_GENERATIONS generations (
#: RACE_EVALUATIONS evaluations), one whose best objective is above RACE_RATIO times the best
#: one's is dropped
RACE_GENERATIONS = 15
RACE_EVALUATIONS = 3
RACE_RATIO = 2.0
#: a search whose population has converged with at least this many generations left restarts
RESTART_GENERATIONS = 15
#: parameters correlated beyond this are reported as not identifiable
MAX_CORR = 0.99
#: numpy and ngspice NRMSE must agree within this
NGSPICE_AGREEMENT = 0.01
#: a card's compared period and the one `warmup_periods` later must agree within this NRMSE
#: (periodic steady state: the measures must not depend on how long the waveform ran)
MAX_PERIOD_DRIFT = 0.01
#: ngspice processes of the check running at a time (one per core of the project machine)
NGSPICE_WORKERS = 2
#: seconds ngspice may take for one sweep of the check (a fitted card takes 0.1-1.3 s; one that
#: ngspice's time-step control cannot follow, e.g. sliding along Stanford-PKU's minimum-field
#: threshold, otherwise ran into the runner's 300 s limit)
NGSPICE_TIMEOUT = 60.0
#: a fit fails when a sweep's R^2 is below MIN_R2 or the overall NRMSE above MAX_NRMSE
MIN_R2 = 0.5
MAX_NRMSE = 0.3
#: plausibility limits for measured data (catch wrong units before fitting)
MAX_ABS_CURRENT = 1.0  # A
MIN_CURRENT_SPAN = 1e-15  # A
MAX_ABS_VOLTAGE = 100.0  # V
_BAD = 1e6  # objective of a candidate whose simulation is not finite


@dataclass
class FitSettings:
    """Effort, tolerances and options of an I-V fit."""

    popsize: int = 8  # DE population = popsize * number of search variables
    maxiter: int = 60  # DE generations (the search also stops when the population converged)
    seed: int = 0
    searches: int = 1  # DE searches per polarity (seeds seed, seed + 1, ...), side by side
    warmup_periods: int = 2
    search_warmup_periods: int = 1
    rtol_search: float = 5e-2  # integration tolerance of the global search (ranking only)
    refine_starts: int = 4  # best members of each search's population refined (coarse stage)
    rtol_coarse: float = 1e-3  # integration tolerance of the coarse refinement
    rtol_refine: float = 1e-4  # refinement: fine enough not to fit integration error
    rtol_check: float = 1e-7  # final measures
    ftol: float = 1e-4  # refinement: relative cost decrease at convergence
    xtol: float = 1e-6  # refinement: relative step at convergence
    max_nfev: int = 0  # refinement safety cap (0: 100 per variable); reaching it = not converged
    polarities: tuple[float, ...] = (1.0, -1.0)
    start: dict[str, float] | None = None  # skip the global search, refine from these values
    start_polarity: float | None = None
    bootstrap: int = 0  # refits on sweeps resampled with replacement (0: none)
    ngspice: bool = True  # re-simulate the card in ngspice
    read_range_v: float | None = None  # V; None: the manifest's, else 2 x the card's v_read


@dataclass
class SweepMeasures:
    """Measures of one sweep."""

    nrmse: float
    log_error_decades: float
    read_error_decades: float
    r2: float
    points_log: int  # points entering the log error
    points_read: int  # points entering the read-region error
    noise_floor_a: float
    points_at_compliance: int
    #: NRMSE between the compared period and the period `warmup_periods` later (the measures'
    #: dependence on the warm-up; 0 in periodic steady state)
    period_drift: float
    nrmse_ngspice: float | None = None
    log_error_ngspice: float | None = None
    read_error_ngspice: float | None = None
    ngspice_error: str | None = None


@dataclass
class IVFit:
    """Result of `fit_iv`."""

    model: str
    device: str
    params: dict[str, float]
    stderr: dict[str, float | None]  # every free parameter
    stderr_reason: dict[str, str]  # every null stderr
    polarity: float
    nrmse: float  # overall (mean over sweeps), tight integration
    log_error: float  # overall (mean over sweeps), decades
    read_error: float  # overall (mean over sweeps), decades
    read_range_v: float  # V, the read region of `read_error`
    read_range_rule: str  # how the read range was chosen
    nrmse_ngspice: float | None
    per_sweep: dict[str, SweepMeasures]
    predicted: list[np.ndarray]  # simulated current per sweep (A), tight integration
    start_states: list[float]  # state at the start of the compared period, per sweep
    log_masks: list[np.ndarray]  # points entering the log error, per sweep
    read_masks: list[np.ndarray]  # points entering the read-region error, per sweep
    sweeps: list[Sweep]
    settings: FitSettings
    seconds: dict[str, float]
    search_objective: float | None  # best DE objective (None when started from given values)
    objective: float  # final objective, sum over sweeps (see the module doc)
    fixed: dict[str, float]
    refinement: dict[str, Any]
    correlations: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=dict)

    def device_obj(self) -> Device:
        """The fitted `Device`."""
        return Device(self.model, self.params, polarity=self.polarity)

    @property
    def score(self) -> float:
        """Ranking criterion: mean over sweeps of (NRMSE/0.05)^2 + (log error/0.3)^2
        + (read error/0.15)^2."""
        return float(np.mean([(m.nrmse / TARGET_NRMSE) ** 2
                              + (m.log_error_decades / TARGET_LOG) ** 2
                              + (m.read_error_decades / TARGET_READ) ** 2
                              for m in self.per_sweep.values()]))


# ----------------------------------------------------------------------------- measures


def nrmse(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """RMS error over the last axis divided by the measured span (max - min)."""
    meas = np.asarray(meas, float)
    err = np.sqrt(np.mean((np.asarray(pred, float) - meas) ** 2, axis=-1))
    return err / np.ptp(meas, axis=-1)


def log_mask(sweep: Sweep) -> np.ndarray:
    """Points entering the log error: |I| above the sweep's noise floor (and not 0)."""
    a = np.abs(sweep.i)
    return (a > sweep.noise_floor_a) & (a > 0)


def read_mask(sweep: Sweep, read_range: float) -> np.ndarray:
    """Points entering the read-region error: those of `log_mask` whose device voltage
    |V - I R_series| is at most `read_range`, readings at the compliance left out."""
    return log_mask(sweep) & (np.abs(sweep.v_device) <= read_range) & ~sweep.at_compliance


def log_error(pred: np.ndarray, sweep: Sweep, mask: np.ndarray | None = None) -> np.ndarray:
    """RMS of log10|I_sim| - log10|I_meas| (decades) over the `mask` points (default
    `log_mask`; `read_mask` gives the read-region error), on the last axis."""
    mask = log_mask(sweep) if mask is None else mask
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log10(np.abs(np.asarray(pred)[..., mask])) - np.log10(np.abs(sweep.i[mask]))
    return np.sqrt(np.mean(d**2, axis=-1))


def provisional_read_range(sweeps: Sequence[Sweep]) -> float:
    """The read range of the search before the card's v_read is known (module doc)."""
    peak = min(float(np.max(np.abs(s.v_device))) for s in sweeps)
    return default_read_range(sweeps, min(READ_RANGE_FACTOR * V_READ_REFERENCE, peak))


def default_read_range(sweeps: Sequence[Sweep], wanted: float) -> float:
    """`wanted`, widened where needed so that each sweep's read region holds MIN_READ_POINTS
    measured points (a default must not refuse a fit a user could not have helped)."""
    need = []
    for s in sweeps:
        volts = np.sort(np.abs(s.v_device[log_mask(s) & ~s.at_compliance]))
        need.append(float(volts[min(MIN_READ_POINTS, volts.size) - 1]) if volts.size else 0.0)
    return max(wanted, *need)


def given_read_range(sweeps: Sequence[Sweep], settings: FitSettings) -> float | None:
    """The read range the user gave (settings, else the manifest's), checked against the sweeps:
    positive, within every sweep's largest |V|, at least MIN_READ_POINTS points in each sweep's
    read region; None when none is given."""
    given = settings.read_range_v
    what = "--read-range"
    if given is None:
        ranges = {s.read_range_v for s in sweeps if s.read_range_v is not None}
        if len(ranges) > 1:
            raise CircuitnnError(f"the sweeps give different read_range_v {sorted(ranges)}")
        given = ranges.pop() if ranges else None
        what = "read_range_v"
    if given is None:
        return None
    if not (math.isfinite(given) and given > 0):
        raise CircuitnnError(f"{what} must be a voltage > 0, got {given:g}")
    for s in sweeps:
        peak = float(np.max(np.abs(s.v_device)))
        if given > peak:
            raise CircuitnnError(f"{what} = {given:g} V is above the largest |V| across the "
                                 f"device in {s.source} ({peak:.4g} V)")
    check_read_points(sweeps, given, f"{what} = {given:g} V")
    return float(given)


def check_read_points(sweeps: Sequence[Sweep], read_range: float, what: str) -> None:
    """Refuse a read region with fewer than MIN_READ_POINTS measured points in a sweep."""
    for s in sweeps:
        count = int(read_mask(s, read_range).sum())
        if count < MIN_READ_POINTS:
            raise CircuitnnError(
                f"{s.source}: the read region |V| <= {read_range:.4g} V ({what}) holds "
                f"{count} measured point(s) above the noise floor {s.noise_floor_a:.3g} A; "
                f"at least {MIN_READ_POINTS} are needed: give a wider --read-range "
                "(read_range_v) or data sampled more finely at low bias")


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


def series_element(sweep: Sweep) -> ExprElement | None:
    """What the instrument puts in series with the device for this sweep (see the module doc)."""
    if sweep.compliance_a is not None:
        return current_limit(sweep.compliance_a, sweep.series_resistance_ohm or 1.0)
    if sweep.series_resistance_ohm > 0:
        return resistor(sweep.series_resistance_ohm)
    return None


def periodic_drive(sweep: Sweep, periods: int, stride: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(t, v) of `periods` repetitions of the sweep's period (the last one is compared), on
    every `stride`-th sample."""
    n = sweep.n
    period = (1.0 / sweep.frequency_hz if sweep.periodic and sweep.frequency_hz
              else float(sweep.t[-1] - sweep.t[0]) * n / (n - 1))
    t0 = (sweep.t - sweep.t[0])[::stride]
    return (np.concatenate([t0 + j * period for j in range(periods)]),
            np.tile(sweep.v[::stride], periods))


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


@dataclass
class _Group:
    """Sweeps of one length and one kind of series element, simulated together."""

    idx: list[int]
    element: ExprElement | None


class _Problem:
    """Sweeps stacked for vectorised simulation, and the map from search vectors to params.

    With `stride` > 1 only every stride-th sample is simulated and compared (the search's
    cheaper view of the same data). `read_range` (V): the read region of the objective's read
    residuals (default: `provisional_read_range`)."""

    def __init__(self, model: CompactModel, sweeps: Sequence[Sweep], warmup: int,
                 stride: int = 1, read_range: float | None = None) -> None:
        self.model = model
        self.sweeps = list(sweeps)
        self.warmup = warmup
        self.stride = stride
        #: integration steps allowed between two samples (a candidate needing more is bad)
        self.max_steps = transient.MAX_STEPS
        #: integration steps allowed per simulated sample on average (None: no limit)
        self.steps_per_sample: float | None = None
        self.fixed = dict(FIXED.get(model.name, {}))
        self.free: list[ParamSpec] = [p for p in model.params if p.name not in self.fixed]
        self.kind = [_kind(p) for p in self.free]
        lo_hi = [_search_bounds(p, k) for p, k in zip(self.free, self.kind, strict=True)]
        self.lo = np.array([a for a, _ in lo_hi])
        self.hi = np.array([b for _, b in lo_hi])
        self.var_names = [_var_name(p, k) for p, k in zip(self.free, self.kind, strict=True)]
        self.masks = [log_mask(s) for s in self.sweeps]
        self.set_read_range(provisional_read_range(self.sweeps) if read_range is None
                            else read_range)
        #: simulated currents below these count as these in the objective's logs (module doc)
        self.sim_floors = [SIM_FLOOR * float(np.min(np.abs(s.i[m])))
                           for s, m in zip(self.sweeps, self.masks, strict=True)]
        self.meas = [s.i[::stride] for s in self.sweeps]
        self.weights = np.ones(len(self.sweeps))
        keyed: dict[tuple, list[int]] = {}
        for k, s in enumerate(self.sweeps):
            kind = "limit" if s.compliance_a is not None else (
                "resistor" if s.series_resistance_ohm > 0 else "none")
            keyed.setdefault((self.meas[k].size, kind), []).append(k)
        self.groups: list[_Group] = []
        for (_, kind), idx in keyed.items():
            element = None
            if kind == "limit":
                comp = np.array([self.sweeps[k].compliance_a for k in idx])
                r = np.array([self.sweeps[k].series_resistance_ohm or 1.0 for k in idx])
                element = current_limit(comp, r)
            elif kind == "resistor":
                element = resistor(np.array([self.sweeps[k].series_resistance_ohm for k in idx]))
            self.groups.append(_Group(idx, element))

    def set_read_range(self, read_range: float) -> None:
        """Measure the read-region residuals over |V| <= read_range from now on."""
        self.read_range = read_range
        self.read_masks = [read_mask(s, read_range) for s in self.sweeps]

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

    def values(self, x: np.ndarray) -> dict[str, float]:
        """Physical values of one search vector (all model parameters)."""
        return {k: float(v[0, 0]) for k, v in self.to_params(x).items()}

    def predict(self, x: np.ndarray, polarity: float | np.ndarray, rtol: float,
                warmup: int | None = None) -> list[np.ndarray]:
        """Simulated current of the compared period, per sweep: arrays (S, n).

        `polarity` may be one value per candidate: a device of polarity p driven by v is a
        device of polarity +1 driven by p v whose current is p I (the series elements are odd).
        """
        return self.simulate(x, polarity, rtol, warmup)[0]

    def simulate(self, x: np.ndarray, polarity: float | np.ndarray, rtol: float,
                 warmup: int | None = None, later: int = 0
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """`predict`, and the state at the start of the compared period per sweep: (S,). With
        `later` > 0 the drive runs `later` periods past the compared one, and the currents are
        (S, (later + 1) n): the compared period and the ones after it."""
        warmup = self.warmup if warmup is None else warmup
        pol = np.broadcast_to(np.asarray(polarity, dtype=float), (np.atleast_2d(x).shape[0],))
        dev = Device(self.model, self.to_params(x))
        out: list[np.ndarray] = [np.empty(0)] * len(self.sweeps)
        start: list[np.ndarray] = [np.empty(0)] * len(self.sweeps)
        with np.errstate(all="ignore"):
            lo, hi = dev.bounds()
            s0 = 0.5 * (lo + hi)
            for g in self.groups:
                n = self.meas[g.idx[0]].size
                drives = [periodic_drive(self.sweeps[k], warmup + 1 + later, self.stride)
                          for k in g.idx]
                t = np.stack([d[0] for d in drives])
                v = pol[:, None, None] * np.stack([d[1] for d in drives])[None]
                total = (None if self.steps_per_sample is None
                         else int(self.steps_per_sample * t.shape[-1]))
                tr = dev.simulate(t, v, s0, series=g.element, rtol=rtol, atol=rtol * 1e-3,
                                  strict=False, max_steps=self.max_steps, max_total_steps=total)
                n *= later + 1
                cur = pol[:, None, None] * tr.i[..., -n:]
                for j, k in enumerate(g.idx):
                    out[k] = cur[:, j, :]
                    start[k] = tr.state[:, j, -n]
        return out, start

    def residuals(self, x: np.ndarray, polarity: float | np.ndarray, rtol: float) -> np.ndarray:
        """(S, m) residuals whose sum of squares is the objective (see the module doc)."""
        pred = self.predict(x, polarity, rtol)
        parts = []
        for p, s, i, masks, floor, w in zip(pred, self.sweeps, self.meas,
                                            zip(self.masks, self.read_masks, strict=True),
                                            self.sim_floors, self.weights, strict=True):
            parts.append(math.sqrt(w) * (p - i) / (np.ptp(s.i) * math.sqrt(i.size)
                                                    * TARGET_NRMSE))
            for mask, target in zip(masks, (TARGET_LOG, TARGET_READ), strict=True):
                mask = mask[::self.stride]
                if not mask.any():
                    continue
                with np.errstate(all="ignore"):
                    sim = np.log10(np.maximum(np.abs(p[:, mask]), floor))
                lg = (sim - np.log10(np.abs(i[mask]))) / (math.sqrt(mask.sum()) * target)
                parts.append(math.sqrt(w) * lg)
        r = np.concatenate(parts, axis=-1)
        return np.where(np.isfinite(r), r, math.sqrt(_BAD / r.shape[-1]))

    def objective(self, x: np.ndarray, polarity: float | np.ndarray, rtol: float) -> np.ndarray:
        return np.sum(self.residuals(x, polarity, rtol) ** 2, axis=-1)


# ----------------------------------------------------------------------------- search & refine


def _search_problem(full: _Problem, st: FitSettings) -> _Problem:
    """The sweeps as the searches and the coarse refinement see them: on every second sample
    when that leaves at least SEARCH_SAMPLES samples, after `search_warmup_periods`."""
    stride = 2 if (min(s.n for s in full.sweeps) + 1) // 2 >= SEARCH_SAMPLES else 1
    return _Problem(full.model, full.sweeps, st.search_warmup_periods, stride, full.read_range)


def _searches(full: _Problem, st: FitSettings, progress: Callable[[], None] | None
              ) -> list[tuple[np.ndarray, float, float]]:
    """Differential evolution, one search per seed (`searches`) and terminal orientation
    (`polarities`), all side by side: each generation's populations are simulated in one
    vectorised call (`Lockstep`). Returns (x, polarity, f) of the `refine_starts` best members
    of each search's final populations (one per restart), best first.

    The searches see the sweeps on every second sample when that leaves at least SEARCH_SAMPLES
    samples, after `search_warmup_periods`, at the loose `rtol_search`: they only rank
    candidates. The two orientations are searched apart because one population over both
    settles on one of them within a few generations, not always on the better one."""
    prob = _search_problem(full, st)
    prob.max_steps = SEARCH_MAX_STEPS
    bounds = list(zip(prob.lo, prob.hi, strict=True))

    def batch(reqs: list[tuple[np.ndarray, float]]) -> list[np.ndarray]:
        x = np.vstack([x for x, _ in reqs])
        pol = np.concatenate([np.full(len(x), p) for x, p in reqs])
        f = prob.objective(x, pol, st.rtol_search)
        return np.split(f, np.cumsum([len(x) for x, _ in reqs])[:-1])

    def generation(intermediate_result: Any) -> None:
        if progress is not None:
            progress()

    def task(seed: int, pol: float) -> Callable[[Request], list[tuple[np.ndarray, float, float]]]:
        def run(request: Request) -> list[tuple[np.ndarray, float, float]]:
            members: list[tuple[float, np.ndarray]] = []
            left, restart = st.maxiter, 0
            while left >= RESTART_GENERATIONS or restart == 0:
                res = differential_evolution(
                    lambda xt: request((xt.T, pol)), bounds, popsize=st.popsize,
                    maxiter=left, tol=1e-3, mutation=(0.5, 1.0), recombination=0.7,
                    seed=seed if restart == 0 else np.random.default_rng([seed, restart]),
                    init="latinhypercube", polish=False, vectorized=True,
                    updating="deferred", callback=generation)
                members += zip(res.population_energies, res.population, strict=True)
                left -= res.nit
                restart += 1
            members.sort(key=lambda m: m[0])
            return [(np.asarray(x), pol, float(f)) for f, x in members[:st.refine_starts]]
        return run

    race = Lockstep(batch, lambda req, f: float(np.min(f)), RACE_GENERATIONS, RACE_RATIO)
    found = race.run([task(st.seed + j, float(p)) for j in range(st.searches)
                      for p in st.polarities])
    return [start for r in found if r is not None for start in r]


def _lmfit_params(prob: _Problem, x0: np.ndarray) -> lmfit.Parameters:
    pars = lmfit.Parameters()
    for j, var in enumerate(prob.var_names):
        pars.add(var, value=float(x0[j]), min=float(prob.lo[j]), max=float(prob.hi[j]))
    return pars


def _with_jacobians(prob: _Problem, reqs: Sequence[tuple[np.ndarray, float]], rtol: float
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Residuals (m,) and their central-difference Jacobian (m, k) at each (x, polarity), all
    in one vectorised simulation (one-sided where a bound is closer than the step)."""
    k = len(prob.lo)
    h = 1e-4 * (prob.hi - prob.lo)
    eye = np.eye(k, dtype=bool)
    rows, pols, steps = [], [], []
    for x, pol in reqs:
        up = np.minimum(x + h, prob.hi)
        down = np.maximum(x - h, prob.lo)
        rows += [x[None], np.where(eye, up, x), np.where(eye, down, x)]
        pols.append(np.full(2 * k + 1, pol))
        steps.append(up - down)
    r = prob.residuals(np.vstack(rows), np.concatenate(pols), rtol)
    r = r.reshape(len(reqs), 2 * k + 1, -1)
    return [(rj[0], ((rj[1:k + 1] - rj[k + 1:]) / d[:, None]).T)
            for rj, d in zip(r, steps, strict=True)]


def _refine(prob: _Problem, x0: np.ndarray, polarity: float, st: FitSettings,
            progress: Callable[[], None] | None, request: Request | None = None
            ) -> lmfit.minimizer.MinimizerResult:
    """lmfit least squares from x0 to convergence (see the module doc).

    Each residual evaluation also simulates the Jacobian's 2k neighbours in the same call (in
    parallel threads), so the Jacobian that the trust-region step asks for next is already
    there. `request((x, polarity))` returns both (by default, simulated alone; `_refines`
    batches several)."""
    names = prob.var_names
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    if request is None:
        def request(req: tuple[np.ndarray, float]) -> tuple[np.ndarray, np.ndarray]:
            return _with_jacobians(prob, [req], st.rtol_refine)[0]

    def evaluate(pars: lmfit.Parameters) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([pars[n].value for n in names])
        key = x.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = request((x, polarity))
        return cache[key]

    def residual(pars: lmfit.Parameters) -> np.ndarray:
        if progress is not None:
            progress()
        return evaluate(pars)[0]

    def jacobian(pars: lmfit.Parameters) -> np.ndarray:
        return evaluate(pars)[1]

    cap = st.max_nfev or 100 * (len(names) + 1)
    return lmfit.minimize(residual, _lmfit_params(prob, x0), method="least_squares",
                          jac=jacobian, max_nfev=cap, x_scale="jac", ftol=st.ftol, xtol=st.xtol,
                          gtol=1e-10, calc_covar=False)


def _refines(prob: _Problem, starts: Sequence[tuple[np.ndarray, float]], st: FitSettings,
             progress: Callable[[], None] | None, keep: int
             ) -> list[lmfit.minimizer.MinimizerResult]:
    """`_refine` from each (x0, polarity), side by side (`Lockstep`: once `keep` have
    converged, one still above the keep-th of them after REFINE_PATIENCE times its evaluations is
    given up); None for a refinement dropped from the race."""
    race = Lockstep(lambda reqs: _with_jacobians(prob, reqs, st.rtol_refine),
                    lambda req, res: float(res[0] @ res[0]), RACE_EVALUATIONS, RACE_RATIO,
                    REFINE_PATIENCE, keep)
    return race.run([lambda request, x0=x0, pol=pol: _refine(prob, x0, pol, st, progress,
                                                             request)
                     for x0, pol in starts])


def _costs(results: Sequence[lmfit.minimizer.MinimizerResult | None]) -> list[float]:
    """Each refinement's cost (inf: dropped from the race)."""
    return [float(np.sum(r.residual ** 2)) if r is not None else np.inf for r in results]


def _values_of(result: lmfit.minimizer.MinimizerResult, prob: _Problem) -> np.ndarray:
    """A refinement's search variables."""
    return np.array([result.params[v].value for v in prob.var_names])


def _uncertainty(prob: _Problem, x: np.ndarray, polarity: float, rtol: float
                 ) -> tuple[dict[str, float | None], dict[str, str], dict[str, dict[str, float]]]:
    """Standard errors (physical units), reasons for the missing ones, and correlations with
    |corr| > 0.9 (see the module doc)."""
    ((res, jac),) = _with_jacobians(prob, [(x, polarity)], rtol)
    m, k = jac.shape
    span = prob.hi - prob.lo
    at_lo = x - prob.lo <= 1e-6 * span
    at_hi = prob.hi - x <= 1e-6 * span
    norms = np.linalg.norm(jac, axis=0)
    dead = norms <= 1e-9 * max(float(norms.max()), 1e-300)
    inner = np.flatnonzero(~(at_lo | at_hi | dead))
    stderr: dict[str, float | None] = {}
    reason: dict[str, str] = {}
    corr_out: dict[str, dict[str, float]] = {}
    cov = corr = None
    if inner.size:
        js = jac[:, inner] / norms[inner]
        a = js.T @ js
        a += 1e-12 * np.eye(inner.size)  # a degenerate direction gets a huge variance
        inv = np.linalg.inv(a)
        dof = max(m - inner.size, 1)
        cov = inv / np.outer(norms[inner], norms[inner]) * float(res @ res) / dof
        d = np.sqrt(np.abs(np.diag(inv)))
        corr = inv / np.outer(d, d)
    for j, (p, kind) in enumerate(zip(prob.free, prob.kind, strict=True)):
        value = prob.values(x)[p.name]
        if at_lo[j] or at_hi[j]:
            bound = p.lo if at_lo[j] == (kind != "neglog") else p.hi
            stderr[p.name] = None
            reason[p.name] = f"at a bound of its search range ({bound:.4g} {p.unit})".replace(
                " )", ")")
            continue
        if dead[j]:
            stderr[p.name] = None
            reason[p.name] = "no effect on the fitted currents (not identifiable)"
            continue
        assert cov is not None and corr is not None
        i = int(np.flatnonzero(inner == j)[0])
        partners = {prob.free[int(inner[q])].name: float(corr[i, q]) for q in range(inner.size)
                    if q != i and abs(corr[i, q]) > 0.9}
        if partners:
            corr_out[p.name] = partners
        strong = sorted(n for n, c in partners.items() if abs(c) > MAX_CORR)
        if strong:
            stderr[p.name] = None
            reason[p.name] = ("not identifiable: correlated with " + ", ".join(strong)
                              + f" (|corr| > {MAX_CORR})")
            continue
        se_var = math.sqrt(max(float(cov[i, i]), 0.0))
        stderr[p.name] = se_var * abs(value) * math.log(10) if kind != "lin" else se_var
    return stderr, reason, corr_out


def _bootstrap(prob: _Problem, x: np.ndarray, polarity: float, st: FitSettings,
               progress: Callable[[], None] | None) -> dict[str, Any]:
    """Refits on sweeps resampled with replacement (as weights); spread of the parameters."""
    rng = np.random.default_rng(st.seed + 1)
    n = len(prob.sweeps)
    samples = []
    try:
        for _ in range(st.bootstrap):
            prob.weights = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
            res = _refine(prob, x, polarity, st, progress)
            xb = _values_of(res, prob)
            samples.append([prob.values(xb)[p.name] for p in prob.free])
    finally:
        prob.weights = np.ones(n)
    arr = np.array(samples)
    return {"resamples": st.bootstrap,
            "stderr": {p.name: float(np.std(arr[:, j], ddof=1)) if len(arr) > 1 else None
                       for j, p in enumerate(prob.free)},
            "note": "sweeps resampled with replacement; each resample refined from the fit"}


_WARNING_MEANINGS = {
    "overflow": "some candidate parameter sets overflowed in the model equations; they were "
                "scored as bad fits",
    "invalid value": "some candidate parameter sets gave non-finite currents; they were scored "
                     "as bad fits",
    "divide by zero": "some candidate parameter sets divided by zero in the model equations; "
                      "they were scored as bad fits",
}


def _warning_notes(caught: list[warnings.WarningMessage]) -> list[dict[str, str]]:
    notes: dict[str, dict[str, str]] = {}
    for w in caught:
        msg = str(w.message)
        meaning = next((v for k, v in _WARNING_MEANINGS.items() if k in msg),
                       "a library warning during the fit; the fit's measures are unaffected "
                       "unless stated elsewhere")
        notes.setdefault(msg, {"category": w.category.__name__, "message": msg,
                               "meaning": meaning})
    return list(notes.values())


def fit_iv(
    sweeps: Sequence[Sweep],
    model: str,
    settings: FitSettings | None = None,
    progress: Callable[[str], None] | None = None,
    check: bool = True,
) -> IVFit:
    """Fit one parameter set of `model` to all `sweeps` (one device); see the module doc.

    `progress(stage)` is called once per DE generation ("search") and once per residual
    evaluation of the refinement ("refine"). With `check`, a fit that does not explain the data
    (see MIN_R2 / MAX_NRMSE), is not in periodic steady state after its warm-up
    (MAX_PERIOD_DRIFT) or lives on integration error raises CircuitnnError.
    """
    if model not in FIT_MODELS:
        raise CircuitnnError(f"unknown model {model!r} for fitting; choose from "
                             f"{', '.join(FIT_MODELS)}")
    st = settings or FitSettings()
    sweeps = list(sweeps)
    check_sweeps(sweeps)
    cm = get_model(model)
    given = given_read_range(sweeps, st)
    prob = _Problem(cm, sweeps, st.warmup_periods, read_range=given)
    lock = threading.Lock()  # the searches and refinements call it from their threads

    def tick(stage: str) -> Callable[[], None] | None:
        def call() -> None:
            with lock:
                progress(stage)
        return call if progress is not None else None

    seconds: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        if st.start is not None:
            starts = [(prob.to_vector(dict(cm.defaults(), **st.start)), float(
                st.start_polarity if st.start_polarity is not None else st.polarities[0]))]
            search_f = [None]
        else:  # every search's best is refined; the lowest refined objective wins
            found = _searches(prob, st, tick("search"))
            starts = [(x0, p) for x0, p, _ in found]
            search_f = [f for _, _, f in found]
        seconds["search"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        prob.steps_per_sample = REFINE_STEPS_PER_SAMPLE
        if st.start is None:  # coarse: every search result on the searches' view of the sweeps
            coarse = _search_problem(prob, st)
            coarse.steps_per_sample = REFINE_STEPS_PER_SAMPLE
            rough = _refines(coarse, starts, replace(st, rtol_refine=st.rtol_coarse,
                                                     ftol=COARSE_FTOL), tick("refine"),
                             keep=FULL_STARTS)
            chosen = [j for j in np.argsort(_costs(rough))[:FULL_STARTS] if rough[j] is not None]
            full_starts = [(_values_of(rough[j], prob), starts[j][1]) for j in chosen]
        else:  # given values are refined in full directly
            rough, chosen, full_starts = [], [0], starts
        results = _refines(prob, full_starts, st, tick("refine"), keep=1)
        win = int(np.argmin(_costs(results)))
        best = chosen[win]
        result, pol = results[win], starts[best][1]
        x = _values_of(result, prob)
        read_refinement = None
        if given is None:  # the default read range: 2 x the card's v_read (module doc)
            wanted, _ = _card_read_range(cm, prob.values(x), pol, sweeps, prob.read_range)
            if abs(wanted / prob.read_range - 1) > READ_RANGE_SLACK:
                read_refinement = {"from_range_v": prob.read_range, "to_range_v": wanted,
                                   "first_objective": _costs([result])[0]}
                prob.set_read_range(wanted)
                result = _refines(prob, [(x, pol)], st, tick("refine"), keep=1)[0]
                x = _values_of(result, prob)
                read_refinement["objective"] = _costs([result])[0]
        stderr, reason, corr = _uncertainty(prob, x, pol, st.rtol_refine)
        boot = _bootstrap(prob, x, pol, st, tick("refine")) if st.bootstrap else {}
        seconds["refine"] = time.perf_counter() - t1
        prob.steps_per_sample = None  # the measures integrate the card whatever it costs
        pred, start = prob.simulate(x, pol, st.rtol_check)
        pred = [p[0] for p in pred]
        # periodic steady state, at the refinement's tolerance (enough for a 0.01 criterion)
        w = st.warmup_periods
        periods, _ = prob.simulate(x, pol, st.rtol_refine, later=w)
        drift = [float(np.sqrt(np.mean((p[0, -s.n:] - p[0, :s.n]) ** 2)) / np.ptp(s.i))
                 for p, s in zip(periods, sweeps, strict=True)]
    refinement = {
        "method": "lmfit least_squares (trust region reflective), central-difference Jacobian",
        "converged": bool(result.success) and result.nfev < (st.max_nfev or 100 * (len(x) + 1)),
        "message": str(result.message),
        "residual_evaluations": int(result.nfev),
        "coarse_starts": len(rough),
        "coarse_residual_evaluations": int(sum(r.nfev for r in rough if r is not None)),
        "coarse_objective": _costs(rough)[best] if rough else None,
        "full_starts": len(chosen),
        "coarse_integration_rtol": st.rtol_coarse,
        "ftol": st.ftol,
        "xtol": st.xtol,
        "integration_rtol": st.rtol_refine,
    }
    if read_refinement is not None:
        refinement["read_range"] = read_refinement
    values = prob.values(x)
    if given is None:  # the reported read region: 2 x the final card's v_read
        read_range, rule = _card_read_range(cm, values, pol, sweeps, prob.read_range)
    else:
        read_range = given
        rule = ("given (--read-range)" if st.read_range_v is not None
                else "given (the manifest's read_range_v)")
    read_masks = [read_mask(s, read_range) for s in sweeps]
    per_sweep: dict[str, SweepMeasures] = {}
    for p, d, s, mask, rmask in zip(pred, drift, sweeps, prob.masks, read_masks, strict=True):
        sst = float(np.sum((s.i - s.i.mean()) ** 2))
        per_sweep[s.name] = SweepMeasures(
            nrmse=float(nrmse(p, s.i)), log_error_decades=float(log_error(p, s, mask)),
            read_error_decades=float(log_error(p, s, rmask)),
            r2=1.0 - float(np.sum((p - s.i) ** 2)) / sst, points_log=int(mask.sum()),
            points_read=int(rmask.sum()), noise_floor_a=s.noise_floor_a,
            points_at_compliance=int(s.at_compliance.sum()),
            period_drift=d)
    fit = IVFit(
        model=model, device=sweeps[0].device,
        params={p.name: values[p.name] for p in cm.params},
        stderr=stderr, stderr_reason=reason, polarity=pol,
        nrmse=float(np.mean([m.nrmse for m in per_sweep.values()])),
        log_error=float(np.mean([m.log_error_decades for m in per_sweep.values()])),
        read_error=float(np.mean([m.read_error_decades for m in per_sweep.values()])),
        read_range_v=read_range, read_range_rule=rule,
        nrmse_ngspice=None, per_sweep=per_sweep, predicted=pred,
        start_states=[float(a[0]) for a in start], log_masks=prob.masks,
        read_masks=read_masks,
        sweeps=sweeps, settings=st, seconds=seconds, search_objective=search_f[best],
        objective=_costs([result])[0],  # the refinement's final cost (not simulated again)
        fixed=dict(prob.fixed), refinement=refinement, correlations=corr,
        warnings=_warning_notes(caught), bootstrap=boot)
    if st.ngspice:
        t2 = time.perf_counter()
        ngspice_check(fit)
        seconds["ngspice"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    seconds["cpu"] = time.process_time() - cpu0  # this process only (wall time on a busy machine)
    if check:
        check_fit(fit)
    return fit


def _card_read_range(model: CompactModel, values: dict[str, float], polarity: float,
                     sweeps: Sequence[Sweep], provisional: float) -> tuple[float, str]:
    """(the default read range of a fitted card, how it was chosen): READ_RANGE_FACTOR x its
    safe read voltage, widened to MIN_READ_POINTS points per sweep; `provisional` when the card
    has no safe read voltage."""
    card = Device(model, values, polarity=polarity).to_card()
    try:
        v_read = operating_point(card, where="fitted card", fresh=True).v_read
    except CircuitnnError as exc:
        return provisional, (f"{READ_RANGE_FACTOR:g} x the reference's read voltage "
                             f"{V_READ_REFERENCE:g} V, capped at the sweeps' smallest peak |V| "
                             f"(the card has no safe read voltage: {exc})")
    wanted = READ_RANGE_FACTOR * v_read
    read_range = default_read_range(sweeps, wanted)
    rule = f"{READ_RANGE_FACTOR:g} x the card's safe read voltage {v_read:g} V"
    if read_range > wanted:
        rule += f", widened to hold {MIN_READ_POINTS} measured points in each sweep"
    return read_range, rule


def ngspice_check(fit: IVFit) -> None:
    """Re-simulate the fitted card in ngspice on every sweep and record its NRMSE and log error
    per sweep and overall.

    ngspice runs the same warm-up periods and compared period, starting from the periodic steady
    state (the numpy state at the start of the compared period), not from the arbitrary middle
    of the state range: a device far from its steady state may snap within picoseconds, which
    ngspice's time step control cannot follow, and which says nothing about the fit. The sweeps
    run as NGSPICE_WORKERS ngspice processes at a time."""
    from circuitnn.spice.runner import run_parallel
    from circuitnn.spice.subckt import simulate_ngspice

    dev = fit.device_obj()

    def run(j: int) -> None:
        s, mask = fit.sweeps[j], fit.log_masks[j]
        t, v = periodic_drive(s, fit.settings.warmup_periods + 1)
        m = fit.per_sweep[s.name]
        try:
            tr = simulate_ngspice(dev, t, v, fit.start_states[j], series=series_element(s),
                                  timeout=NGSPICE_TIMEOUT)
        except CircuitnnError as exc:
            m.ngspice_error = str(exc)
            return
        m.nrmse_ngspice = float(nrmse(tr.i[-s.n:], s.i))
        m.log_error_ngspice = float(log_error(tr.i[-s.n:], s, mask))
        m.read_error_ngspice = float(log_error(tr.i[-s.n:], s, fit.read_masks[j]))

    run_parallel(run, range(len(fit.sweeps)), NGSPICE_WORKERS)
    done = [m.nrmse_ngspice for m in fit.per_sweep.values() if m.nrmse_ngspice is not None]
    fit.nrmse_ngspice = float(np.mean(done)) if len(done) == len(fit.sweeps) else None


def check_fit(fit: IVFit) -> None:
    """Raise CircuitnnError when the fit did not converge to a usable description of the data."""
    where = f"device {fit.device!r}, model {fit.model}"
    if not math.isfinite(fit.nrmse):
        raise CircuitnnError(f"fit did not converge ({where}): simulated current not finite")
    worst = min(fit.per_sweep, key=lambda k: fit.per_sweep[k].r2)
    if not fit.per_sweep[worst].r2 >= MIN_R2:
        src = next(s.source for s in fit.sweeps if s.name == worst)
        raise CircuitnnError(
            f"fit did not converge ({where}): the model explains only "
            f"R^2 = {fit.per_sweep[worst].r2:.2f} of the current variance of {src} "
            f"(need >= {MIN_R2}); noise, or not a memristive loop?")
    if fit.nrmse > MAX_NRMSE:
        raise CircuitnnError(f"fit did not converge ({where}): overall NRMSE {fit.nrmse:.3f} "
                             f"> {MAX_NRMSE}")
    if not math.isfinite(fit.log_error):
        raise CircuitnnError(f"fit did not converge ({where}): the fitted current is zero at "
                             "points where the device carries current (infinite log error)")
    if not fit.refinement["converged"]:
        raise CircuitnnError(f"fit did not converge ({where}): the refinement stopped after "
                             f"{fit.refinement['residual_evaluations']} evaluations without "
                             f"reaching its tolerance ({fit.refinement['message']})")
    warmup = fit.settings.warmup_periods
    for name, m in fit.per_sweep.items():
        if not m.period_drift <= MAX_PERIOD_DRIFT:
            raise CircuitnnError(
                f"fit rejected ({where}): the card is not in periodic steady state on {name}: "
                f"the period after {warmup} warm-up periods and the one {warmup} periods later "
                f"differ by NRMSE {m.period_drift:.3f} (> {MAX_PERIOD_DRIFT}), so its measures "
                "depend on how long the waveform ran")
    for name, m in fit.per_sweep.items():
        if m.ngspice_error is not None:
            raise CircuitnnError(f"fit rejected ({where}): ngspice cannot simulate the fitted "
                                 f"card on {name}: {m.ngspice_error}")
        if m.nrmse_ngspice is not None and abs(m.nrmse_ngspice - m.nrmse) > NGSPICE_AGREEMENT:
            raise CircuitnnError(
                f"fit rejected ({where}): ngspice gives NRMSE {m.nrmse_ngspice:.4f} on {name} "
                f"where numpy gives {m.nrmse:.4f}; the fit lives on integration error")


# ----------------------------------------------------------------------------- cards


def _dataset_source(path: str) -> dict[str, str] | None:
    """The public source of a data file, if it lies in a registered dataset folder."""
    from pathlib import Path

    from circuitnn import datasets

    for key, ds in datasets.DATASETS.items():
        try:
            folder = datasets.dataset_path(key).resolve()
        except CircuitnnError:
            continue
        try:
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
            "log_error_decades": [f.log_error for f in fits],
            "parameters": stats,
            "note": "sample statistics (ddof=1) of parameters fitted separately per device"}


def make_card(fit: IVFit, manifest: str | None = None,
              spread: dict[str, Any] | None = None) -> ModelCard:
    """The model card of a fit: parameters with stderr, provenance, fit quality, variation."""
    cm = get_model(fit.model)
    card = fit.device_obj().to_card()
    params: dict[str, Parameter] = {}
    for name, par in card.parameters.items():
        params[name] = Parameter(par.value, par.unit, fit.stderr.get(name), par.description)
    files = []
    for s in fit.sweeps:
        entry: dict[str, Any] = {"sweep": s.name, "file": s.source,
                                 "frequency_hz": s.frequency_hz,
                                 "series_resistance_ohm": s.series_resistance_ohm,
                                 "compliance_a": s.compliance_a,
                                 "noise_floor_a": s.noise_floor_a,
                                 "noise_floor_source": s.noise_floor_source}
        if s.reading is not None:
            entry["reading"] = s.reading
        src = _dataset_source(s.source)
        if src:
            entry["public_source"] = src
        files.append(entry)
    provenance = {
        "device": fit.device,
        "model_citation": cm.citation,
        "manifest": manifest,
        "data": files,
        "date": _dt.date.today().isoformat(),
        "circuitnn_version": circuitnn.__version__,
        "method": "differential evolution (vectorised population, both orientations) + lmfit "
                  "least_squares to convergence, periodic steady state after warm-up periods; "
                  "see circuitnn.fitting.iv",
        "settings": {k: v for k, v in asdict(fit.settings).items() if k != "start"},
        "started_from_given_values": fit.settings.start is not None,
        "fixed_parameters": fit.fixed,
    }
    quality = {
        "nrmse_definition": "RMS(I_sim - I_meas) / (max I_meas - min I_meas) per sweep; "
                            "overall = mean over sweeps",
        "log_error_definition": "RMS of log10|I_sim| - log10|I_meas| over every point above "
                                "the sweep's noise floor (provenance.data: noise_floor_a and "
                                "its source), in decades; overall = mean over sweeps",
        "read_error_definition": "the same RMS over the points whose device voltage |V - I "
                                 "R_series| is at most read_range_v (readings at the "
                                 "compliance left out); overall = mean over sweeps",
        "objective": f"sum over sweeps of (NRMSE / {TARGET_NRMSE})^2 + (log error / "
                     f"{TARGET_LOG})^2 + (read error / {TARGET_READ})^2",
        "compliance": "simulated as a current-limited source in series with the device; "
                      "readings at the limit are censored data (see circuitnn.fitting.iv)",
        "nrmse": fit.nrmse,
        "log_error_decades": fit.log_error,
        "read_error_decades": fit.read_error,
        "read_range_v": fit.read_range_v,
        "read_range_rule": fit.read_range_rule,
        "nrmse_ngspice": fit.nrmse_ngspice,
        "objective_value": fit.objective,
        "score": fit.score,
        "per_sweep": {k: asdict(m) for k, m in fit.per_sweep.items()},
        "integration_rtol": fit.settings.rtol_check,
        "polarity_kept": fit.polarity,
        "search_objective": fit.search_objective,
        "refinement": fit.refinement,
        "stderr_reason": fit.stderr_reason,
        "stderr_note": "standard errors from s^2 (J^T J)^-1 at the optimum (s^2 = residual sum of "
                       "squares / (m - k)); null where stderr_reason says why; fixed parameters "
                       "have none",
        "correlations_above_0.9": fit.correlations,
        "warnings": fit.warnings,
        "seconds": fit.seconds,
    }
    if fit.bootstrap:
        quality["bootstrap"] = fit.bootstrap
    variation: dict[str, Any] = {"residuals_per_sweep": _residual_stats(fit)}
    if spread:
        variation["device_to_device"] = spread
    card = ModelCard(fit.model, params, provenance, quality, variation,
                     notes=f"{cm.name} ({cm.citation}) fitted to measured I-V sweeps of device "
                           f"{fit.device}.")
    card = with_operating_point_or_reason(card, f"fit of device {fit.device}", fresh=True)
    # the measured low-bias samples the card is checked against before use
    # (circuitnn.fitting.readcheck): the read range and every read voltage below the thresholds
    thresholds = card.operating.get("thresholds_V") or {}
    below = [t for t in thresholds.values() if t is not None]
    cover = max(fit.read_range_v, min(below)) if below else fit.read_range_v
    card.fit["read_region"] = read_region_record(fit.sweeps, cover)
    return card


def _residual_stats(fit: IVFit) -> dict[str, dict[str, float]]:
    out = {}
    for p, s in zip(fit.predicted, fit.sweeps, strict=True):
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


def fit_summary(fit: IVFit) -> dict[str, Any]:
    """One model's entry of the `circuitnn fit --json` output."""
    params = dict(fit.params)
    params["polarity"] = fit.polarity
    return {
        "nrmse": fit.nrmse,
        "log_error_decades": fit.log_error,
        "read_error_decades": fit.read_error,
        "read_range_v": fit.read_range_v,
        "nrmse_ngspice": fit.nrmse_ngspice,
        "params": params,
        "stderr": dict(fit.stderr),
        "stderr_reason": dict(fit.stderr_reason),
        "seconds": fit.seconds.get("total"),
        "per_sweep": {k: asdict(m) for k, m in fit.per_sweep.items()},
        "score": fit.score,
        "converged": fit.refinement["converged"],
    }

"""Fit the pulse-update model (`circuitnn.devices.pulse`) to measured pulse ramps.

Steps, all on real measured ramps:
1. Bounds: g_min / g_max are the lowest / highest of the ramps' end levels (start of
   potentiation ramps and end of depression ramps, and vice versa), so no measured ramp is
   clipped; each level is the mean of the first / last `k = max(1, len // 50)` reads of a
   ramp. The levels' spread over ramps is the ramp-to-ramp (device-to-device proxy)
   variation of the bounds.
2. Mean law: per direction, lmfit least squares over every measured point; each model ramp
   starts at its own measured first read plus one fitted start offset shared by the ramps of
   that direction (absorbs read noise of the first point of a single ramp). Both laws of
   `circuitnn.devices.pulse` are fitted: the exponential law (2 parameters per direction) and
   the spline law with K in SPLINE_KNOTS knots per direction (K by minimum BIC, started from
   the fitted exponential law). Choice (one law per dataset): the exponential law if it meets
   the target (mean-ramp max deviation <= TARGET_DEV of the range in both directions), for
   parsimony; otherwise the law with the smaller worst-direction deviation.
3. Noise: see `_noise` (accumulating update noise vs non-accumulating level noise, separated
   by how the variance of summed residual steps grows with the number of steps).
4. Check: the model's mean ramp against the measured mean ramp, and the measured step-to-step
   spread against the same statistic on many noisy simulations of the whole data set.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmfit
import numpy as np

import circuitnn
from circuitnn.devices.card import ModelCard
from circuitnn.devices.pulse import MODEL_NAME, PulseModel
from circuitnn.errors import CircuitnnError

PULSE_DATASETS = ("taox-pulse", "reram-pulse-gong")
TAOX_READ_VOLTAGE = 0.1  # V, from the dataset's SOURCE.md
SMOOTH_WINDOW = 21  # pulses: running mean of a single ramp, reported for comparison only
MEAN_BLOCK = 100  # pulses: block means that stand in for the mean of a single ramp
SPLINE_KNOTS = (6, 8, 10, 12)  # knot counts tried for the spline law (per direction)
TARGET_DEV = 0.05  # mean-ramp target: max deviation / conductance range
MAX_NFEV = 400  # residual evaluations per lmfit fit (bounds the slow spline fits of Gong)
SPREAD_WINDOW = 51  # pulses: running mean of dG removed before the spread of a single ramp
MIN_RAMP = 3


@dataclass
class PulseData:
    """Measured ramps: arrays (pulses, ramps), NaN after the end of a shorter ramp."""

    name: str
    up: np.ndarray
    down: np.ndarray
    unit: str
    files: list[str] = field(default_factory=list)
    source: str = ""
    note: str = ""


@dataclass
class PulseFit:
    """Result of `fit_pulse`: the model, its card and the quality numbers."""

    model: PulseModel
    card: ModelCard
    data: PulseData
    metrics: dict[str, Any]
    offsets: dict[str, float]


# ------------------------------------------------------------------ loading
def _parse_cell(text: str, where: str) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    try:
        x = float(text)
    except ValueError:
        raise CircuitnnError(f"{where}: not a number: {text!r}") from None
    if not math.isfinite(x):
        raise CircuitnnError(f"{where}: {text!r} is not a finite number")
    return x


def load_ramp_table(path: str | Path, header: bool, scale: float = 1.0,
                    zero_ends: bool = True) -> np.ndarray:
    """Read a CSV whose columns are ramps: returns (pulses, columns), NaN-padded.

    An empty cell (or a zero, when `zero_ends`) ends a column's ramp; values are multiplied
    by `scale`. Raises CircuitnnError for unreadable files, non-numbers, NaN, data after the
    end of a ramp, an all-zero or empty table, and ramps shorter than 3 points.
    """
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise CircuitnnError(f"{path}: pulse data file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CircuitnnError(f"{path}: cannot read pulse data ({exc})") from None
    first = 1 if header else 0
    body = [r for r in rows[first:]]
    while body and not any(c.strip() for c in body[-1]):
        body.pop()
    if not body:
        raise CircuitnnError(f"{path}: no numeric data")
    width = len(rows[0]) if header and rows else max(len(r) for r in body)
    table = np.full((len(body), width), np.nan)
    for i, row in enumerate(body):
        if len(row) > width:
            raise CircuitnnError(f"{path}: row {i + first + 1} has {len(row)} cells, "
                                 f"expected at most {width}")
        for j, cell in enumerate(row):
            table[i, j] = _parse_cell(cell, f"{path}: row {i + first + 1}, column {j + 1}")
    if np.all(np.isnan(table)):
        raise CircuitnnError(f"{path}: no numeric data")
    if zero_ends:
        if np.all(np.nan_to_num(table) == 0):
            raise CircuitnnError(f"{path}: all values are zero")
        table[table == 0] = np.nan
    for j in range(width):
        col = table[:, j]
        ok = ~np.isnan(col)
        n = int(ok.sum())
        if n and not ok[:n].all():
            row = int(np.argmin(ok[:n])) + first + 1
            raise CircuitnnError(f"{path}: column {j + 1} has data after its end (row {row})")
        if n < MIN_RAMP:
            raise CircuitnnError(f"{path}: column {j + 1} is a ramp of {n} point(s); "
                                 f"at least {MIN_RAMP} needed")
    return table * scale


def _dataset_dir(key: str) -> Path:
    from circuitnn.datasets import dataset_path

    return dataset_path(key)


def _source_line(folder: Path, key: str) -> str:
    """The 'Origin' line of the dataset's SOURCE.md (else the registry's address)."""
    try:
        for line in (folder / "SOURCE.md").read_text().splitlines():
            if line.lstrip("- ").lower().startswith("origin:"):
                return line.lstrip("- ").split(":", 1)[1].strip()
    except OSError:
        pass
    from circuitnn.datasets import DATASETS

    return DATASETS[key].url if key in DATASETS else ""


def load_pulse_dataset(key: str, folder: str | Path | None = None) -> PulseData:
    """Load `taox-pulse` (siemens, G = I / 0.1 V) or `reram-pulse-gong` (normalised units)."""
    if key not in PULSE_DATASETS:
        raise CircuitnnError(f"unknown pulse dataset {key!r}; known: {', '.join(PULSE_DATASETS)}")
    folder = Path(folder) if folder is not None else _dataset_dir(key)
    if not folder.is_dir():
        raise CircuitnnError(f"{folder}: pulse dataset folder not found")
    if key == "taox-pulse":
        scale = 1.0 / TAOX_READ_VOLTAGE
        up = load_ramp_table(folder / "set.csv", header=True, scale=scale)
        down = load_ramp_table(folder / "reset.csv", header=True, scale=scale)
        for name, arr in (("set.csv", up), ("reset.csv", down)):
            if np.nanmin(arr) < 0:
                raise CircuitnnError(f"{folder / name}: negative read current")
        return PulseData(key, up, down, "S", ["set.csv", "reset.csv"],
                         _source_line(folder, key),
                         f"G = read current / {TAOX_READ_VOLTAGE} V")
    table = load_ramp_table(folder / "gong_et_al.csv", header=False, zero_ends=False)
    if table.shape[1] != 2:
        raise CircuitnnError(f"{folder / 'gong_et_al.csv'}: expected 2 columns (up, down), "
                             f"found {table.shape[1]}")
    return PulseData(key, table[:, :1], table[:, 1:], "normalised", ["gong_et_al.csv"],
                     _source_line(folder, key),
                     "conductance normalised to the weight range (about [-1, 1]), not siemens")


# ------------------------------------------------- a user's own pulse files
#: conductance unit -> factor to siemens; a current unit (CURRENT_UNITS) needs the read voltage
CONDUCTANCE_UNITS: dict[str, float] = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "nS": 1e-9}
DIRECTIONS = {"up": 1, "set": 1, "down": -1, "reset": -1}
MAX_CONDUCTANCE = 1.0  # S: a read above this (a 1 Ohm cell) means a wrong unit or column
MAX_LEVEL_RATIO = 30.0  # files of one data set whose median levels differ more: mixed units
PULSE_KEYS = ("file", "columns", "unit", "direction", "read_voltage_v")


def _to_siemens(values: np.ndarray, unit: Any, read_voltage_v: Any, where: str) -> np.ndarray:
    """Readings in `unit` (a conductance, or a current read at `read_voltage_v`) as siemens."""
    from circuitnn.fitting.data import CURRENT_UNITS

    if unit in CONDUCTANCE_UNITS:
        if read_voltage_v is not None:
            raise CircuitnnError(f"{where}: a read voltage belongs to current readings, not to "
                                 f"conductances in {unit}")
        return values * CONDUCTANCE_UNITS[unit]
    if unit not in CURRENT_UNITS:
        raise CircuitnnError(f"{where}: unit must be one of "
                             f"{', '.join([*CONDUCTANCE_UNITS, *CURRENT_UNITS])}, got {unit!r}")
    if isinstance(read_voltage_v, bool) or not isinstance(read_voltage_v, int | float) or not (
            math.isfinite(read_voltage_v) and 0 < abs(read_voltage_v) <= 5):
        raise CircuitnnError(f"{where}: current readings in {unit} need the read voltage "
                             f"(0 < |V| <= 5 V) to become conductances, got {read_voltage_v!r}")
    return values * CURRENT_UNITS[unit] / abs(float(read_voltage_v))


def _split_ramps(pulse: np.ndarray, g: np.ndarray, sign: np.ndarray, lines: np.ndarray,
                 where: str) -> list[tuple[int, np.ndarray]]:
    """(direction, reads) of each ramp: the pulse numbers rise down the file, by 1 inside a
    ramp (a read after every pulse); a ramp ends where the direction changes or the numbers
    jump (a gap: a new ramp of the same direction)."""
    step = np.diff(pulse)
    if np.any(step <= 0):
        k = int(np.argmax(step <= 0)) + 1
        raise CircuitnnError(f"{where}: pulse numbers must increase down the file; line "
                             f"{lines[k]} has {pulse[k]:g} after {pulse[k - 1]:g}")
    ends = np.flatnonzero((np.diff(sign) != 0) | (np.abs(step - 1) > 1e-9)) + 1
    starts = np.r_[0, ends, sign.size]
    ramps = []
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        if b - a < MIN_RAMP:
            raise CircuitnnError(f"{where}: the ramp from line {lines[a]} has {b - a} read(s) "
                                 f"(a ramp ends where the direction changes or the pulse "
                                 f"numbers jump); at least {MIN_RAMP} are needed")
        ramps.append((int(sign[a]), g[a:b]))
    return ramps


def load_pulse_file(path: str | Path, columns: Any, unit: Any, direction: Any = None,
                    read_voltage_v: Any = None, where: str | None = None
                    ) -> list[tuple[int, np.ndarray]]:
    """The ramps of one measured pulse file: [(+1 up / -1 down, conductances in S), ...].

    columns: pulse number, reading (a conductance in `unit`, or a current in `unit` read at
    `read_voltage_v`) and optionally a direction column whose sign gives each pulse's direction
    (+ SET / potentiating, - RESET / depressing: e.g. the signed pulse amplitude); without it,
    `direction` ("up" or "down") applies to the whole file. Ramps: see `_split_ramps`.
    """
    from circuitnn.fitting.data import load_table, parse_columns

    where = where or str(path)
    cols = parse_columns(columns)
    if len(cols) not in (2, 3):
        raise CircuitnnError(f"{where}: columns must be pulse,reading[,direction] (2 or 3 "
                             f"entries), got {columns!r}")
    if (len(cols) == 3) == (direction is not None):
        raise CircuitnnError(f"{where}: give either a direction column or a direction "
                             "(up or down) for the whole file")
    if direction is not None and direction not in DIRECTIONS:
        raise CircuitnnError(f"{where}: direction must be up (set) or down (reset), got "
                             f"{direction!r}")
    roles = ("pulse number", "reading", "direction")[:len(cols)]
    table, lines = load_table(path, cols, what=roles, min_rows=MIN_RAMP, line_numbers=True)
    g = _to_siemens(table[:, 1], unit, read_voltage_v, where)
    if np.any(g < 0):
        k = int(np.argmax(g < 0))
        raise CircuitnnError(f"{where}: line {lines[k]} has a negative reading "
                             f"({table[k, 1]:g} {unit}); conductances are >= 0")
    if np.max(g) > MAX_CONDUCTANCE:
        raise CircuitnnError(f"{where}: readings up to {np.max(g):.3g} S (a cell below "
                             f"{1 / MAX_CONDUCTANCE:g} Ohm): is the unit {unit} right?")
    if len(cols) == 3:
        sign = np.sign(table[:, 2])
        if np.any(sign == 0):
            k = int(np.argmax(sign == 0))
            raise CircuitnnError(f"{where}: line {lines[k]}: direction 0; its sign must say "
                                 "up (+) or down (-)")
    else:
        sign = np.full(g.size, float(DIRECTIONS[direction]))
    return _split_ramps(table[:, 0], g, sign, lines, where)


def _pad(ramps: list[np.ndarray]) -> np.ndarray:
    out = np.full((max(r.size for r in ramps), len(ramps)), np.nan)
    for j, r in enumerate(ramps):
        out[:r.size, j] = r
    return out


def load_pulse_data(source: str | Path, columns: Any = None, unit: Any = None,
                    direction: Any = None, read_voltage_v: Any = None) -> PulseData:
    """A user's pulse measurements as `PulseData` (siemens): one file (`columns`, `unit`,
    `direction` or a direction column, `read_voltage_v`) or a TOML manifest of ``[[ramps]]``
    tables with the keys PULSE_KEYS (relative paths relative to the manifest)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise CircuitnnError(f"{source}: pulse data file not found")
    files: list[tuple[int, np.ndarray, str]] = []
    if path.suffix.lower() == ".toml":
        if any(x is not None for x in (columns, unit, direction, read_voltage_v)):
            raise CircuitnnError(f"{source}: columns, unit, direction and read voltage go into "
                                 "the manifest's [[ramps]] tables, not on the command line")
        import tomllib

        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CircuitnnError(f"{source}: cannot read the manifest "
                                 f"({' '.join(str(exc).split())})") from None
        entries = doc.get("ramps")
        if set(doc) - {"ramps"} or not isinstance(entries, list) or not entries or not all(
                isinstance(e, dict) for e in entries):
            raise CircuitnnError(f"{source}: a pulse manifest lists [[ramps]] tables (keys "
                                 f"{', '.join(PULSE_KEYS)}) and nothing else")
        for k, e in enumerate(entries, start=1):
            where = f"{source}: [[ramps]] #{k}"
            bad = sorted(set(e) - set(PULSE_KEYS)) or [
                key for key in ("file", "columns", "unit") if key not in e]
            if bad:
                raise CircuitnnError(f"{where}: unknown or missing key(s) {', '.join(bad)}; "
                                     f"keys: {', '.join(PULSE_KEYS)} (file, columns, unit "
                                     "required)")
            if not isinstance(e["file"], str) or not e["file"].strip():
                raise CircuitnnError(f"{where}: file must be a non-empty string")
            f = Path(e["file"]).expanduser()
            f = f if f.is_absolute() else path.parent / f
            files += [(s, g, f.name) for s, g in load_pulse_file(
                f, e["columns"], e["unit"], e.get("direction"), e.get("read_voltage_v"), where)]
    else:
        if columns is None or unit is None:
            raise CircuitnnError(f"{source}: a pulse file needs --columns and --unit (or list "
                                 "it in a TOML manifest)")
        files = [(s, g, path.name) for s, g in load_pulse_file(path, columns, unit, direction,
                                                               read_voltage_v)]
    levels = {name: float(np.median(np.concatenate([g for _, g, n in files if n == name])))
              for _, _, name in files}
    positive = [v for v in levels.values() if v > 0]
    if len(positive) > 1 and max(positive) / min(positive) > MAX_LEVEL_RATIO:
        shown = ", ".join(f"{n} {v:.3g} S" for n, v in levels.items())
        raise CircuitnnError(f"{source}: the files' median conductances differ by more than "
                             f"{MAX_LEVEL_RATIO:g}x ({shown}): mixed units?")
    up = [g for s, g, _ in files if s > 0]
    down = [g for s, g, _ in files if s < 0]
    if not up or not down:
        have = "up (SET)" if up else "down (RESET)"
        raise CircuitnnError(f"{source}: only {have} ramps; a pulse law needs ramps in both "
                             "directions")
    names = list(dict.fromkeys(n for _, _, n in files))
    return PulseData(path.stem, _pad(up), _pad(down), "S", names, str(path.resolve()),
                     f"{len(up)} up and {len(down)} down ramps read from {', '.join(names)}")


# ------------------------------------------------------------ statistics
def _lengths(ramps: np.ndarray) -> np.ndarray:
    return np.sum(~np.isnan(ramps), axis=0)


def _end_levels(ramps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-ramp start and end levels (mean of the first / last k reads)."""
    starts, ends = [], []
    for j, n in enumerate(_lengths(ramps)):
        k = max(1, int(n) // 50)
        col = ramps[:n, j]
        starts.append(col[:k].mean())
        ends.append(col[-k:].mean())
    return np.array(starts), np.array(ends)


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean along axis 0 ('valid' part only)."""
    w = min(window, x.shape[0])
    c = np.cumsum(np.vstack([np.zeros((1, *x.shape[1:])), x]), axis=0)
    return (c[w:] - c[:-w]) / w


def _block(n: int) -> int:
    return max(1, min(MEAN_BLOCK, n // 5))


def mean_ramp(ramps: np.ndarray) -> np.ndarray:
    """The measured mean ramp (an estimate of E[G] vs pulse number).

    >= 3 ramps: the mean over ramps at each pulse, up to the shortest ramp. Fewer (Gong: one
    long ramp per direction): the means over consecutive non-overlapping blocks of
    B = MEAN_BLOCK pulses (at most a fifth of the ramp; an incomplete last block is dropped),
    located at the block centres (`mean_ramp_pulses`). Why blocks of 100: a single ramp's reads
    carry level noise (sigma_level ~ 0.14, pulse-to-pulse correlation rho ~ 0.4 for Gong), and
    a block mean keeps a read-noise standard error of sigma_level * sqrt((1 + rho) / ((1 -
    rho) B)), about 1% of Gong's range at B = 100 but 2.2% at B = 21, where the maximum over
    the ~50 windows of a 1000-pulse ramp reaches ~5% from read noise alone; the mean law is
    about the ramp's trend, not its read noise. What no averaging within one ramp removes is
    the accumulated update noise (a random walk): the mean ramp of one ramp is one realisation.
    """
    n = int(_lengths(ramps).min())
    if ramps.shape[1] >= 3:
        return ramps[:n].mean(axis=1)
    b = _block(n)
    x = ramps[:n].mean(axis=1)
    return x[: n // b * b].reshape(n // b, b).mean(axis=1)


def mean_ramp_pulses(ramps: np.ndarray) -> np.ndarray:
    """Pulse numbers (row indices, may be fractional) of the points of `mean_ramp(ramps)`."""
    n = int(_lengths(ramps).min())
    if ramps.shape[1] >= 3:
        return np.arange(n, dtype=float)
    b = _block(n)
    return np.arange(n // b) * b + (b - 1) / 2


def monotone_bound(curve: np.ndarray, sign: int) -> float:
    """Smallest max deviation any monotone (in direction `sign`) sequence can have from
    `curve`: half the largest fall (rise for sign < 0) of the curve."""
    y = sign * np.asarray(curve, float)
    return float(np.max(np.maximum.accumulate(y) - y) / 2)


def step_spread(ramps: np.ndarray) -> float:
    """Step-to-step spread: std of dG per pulse after removing the mean step at that pulse
    (mean over ramps up to the shortest ramp for >= 3 ramps, else a running mean over
    SPREAD_WINDOW pulses)."""
    if ramps.shape[1] >= 3:
        ramps = ramps[: int(_lengths(ramps).min())]
    d = np.diff(ramps, axis=0)
    if ramps.shape[1] >= 3:
        e = d - np.nanmean(d, axis=1, keepdims=True)
    else:
        half = SPREAD_WINDOW // 2
        rm = _running_mean(d, SPREAD_WINDOW)
        e = d[half:half + rm.shape[0]] - rm
    return float(np.nanstd(e))


def _model(values: dict[str, float], unit: str, **extra: Any) -> PulseModel:
    return PulseModel(**values, **extra, unit=unit)


def _simulate_like(model: PulseModel, ramps: np.ndarray, direction: int, offset: float,
                   rng: np.random.Generator | None, devices: dict | None = None) -> np.ndarray:
    """Model ramps with the measured ramps' starts and lengths (NaN where data ends)."""
    n = ramps.shape[0]
    sim = model.ramp(ramps[0] + offset, n - 1, direction, rng, devices, read_noise=True)
    sim[np.isnan(ramps)] = np.nan
    return sim


# ------------------------------------------------------------------- fitting
def _fit_direction(ramps: np.ndarray, direction: int, g_min: float, g_max: float, unit: str,
                   knots: np.ndarray | None = None) -> lmfit.minimizer.MinimizerResult:
    """lmfit least squares of one direction's mean law over every read: the exponential law
    (params pmax, nu) or, with `knots` (initial knot values), the spline law (params lf_i =
    log of the knot values); plus the start offset (fraction of the range)."""
    span = g_max - g_min
    mask = ~np.isnan(ramps)
    tag = "p" if direction > 0 else "d"
    fixed = {"g_min": g_min, "g_max": g_max}
    k = 0 if knots is None else len(knots)

    def model_of(p: lmfit.Parameters) -> PulseModel:
        if k:
            f = tuple(math.exp(p[f"lf_{i}"].value) for i in range(k))
            return _model(dict(fixed, pmax_p=1.0, nu_p=0.0, pmax_d=1.0, nu_d=0.0), unit,
                          law=1, fp=f, fd=f)
        return _model(dict(fixed, pmax_p=p["pmax"].value, nu_p=p["nu"].value,
                           pmax_d=p["pmax"].value, nu_d=p["nu"].value), unit)

    def residual(p: lmfit.Parameters) -> np.ndarray:
        sim = model_of(p).ramp(ramps[0] + p["offset"].value * span, ramps.shape[0] - 1,
                               direction)
        return ((sim - ramps) / span)[mask]

    params = lmfit.Parameters()
    if k:
        for i, v in enumerate(knots):  # type: ignore[arg-type]
            params.add(f"lf_{i}", value=math.log(max(float(v), 1e-6)), min=math.log(1e-8),
                       max=0.0)
    else:
        params.add("pmax", value=float(_lengths(ramps).max()), min=1.0, max=1e6)
        params.add("nu", value=0.0, min=-0.5, max=0.5)
    params.add("offset", value=0.0, min=-0.5, max=0.5)
    result = lmfit.minimize(residual, params, max_nfev=MAX_NFEV, ftol=1e-6, xtol=1e-6)
    if not result.success and result.nfev == 0:
        raise CircuitnnError(f"pulse fit ({tag}) failed: {result.message}")
    return result


def _spline_knots(result: lmfit.minimizer.MinimizerResult) -> tuple[float, ...]:
    k = sum(1 for name in result.params if name.startswith("lf_"))
    return tuple(math.exp(result.params[f"lf_{i}"].value) for i in range(k))


def _deterministic_dev(model: PulseModel, ramps: np.ndarray, sign: int, offset: float
                       ) -> float:
    """Max |model mean ramp - measured mean ramp| / range (noise-free model)."""
    det = _simulate_like(model, ramps, sign, offset, None)
    return float(np.max(np.abs(mean_ramp(det) - mean_ramp(ramps))) / (model.g_max - model.g_min))


def _fit_spline(ramps: np.ndarray, sign: int, exp_model: PulseModel, unit: str,
                knot_counts: tuple[int, ...] = SPLINE_KNOTS
                ) -> tuple[lmfit.minimizer.MinimizerResult, dict[str, Any]]:
    """Spline-law fit of one direction for each K in `knot_counts`; keeps the minimum BIC."""
    span = exp_model.g_max - exp_model.g_min
    tried, best = {}, None
    for k in knot_counts:
        grid = exp_model.g_min + span * np.linspace(0.0, 1.0, k)
        init = np.abs(exp_model.mean_step(grid, sign)) / span  # start: the exponential law
        res = _fit_direction(ramps, sign, exp_model.g_min, exp_model.g_max, unit, init)
        tried[k] = {"bic": float(res.bic), "nfev": int(res.nfev)}
        if best is None or res.bic < best.bic:
            best = res
    assert best is not None
    return best, {"K": len(_spline_knots(best)), "tried": tried}


def _lags(max_lag: int) -> np.ndarray:
    """Roughly log-spaced lags 1, 2, 3, 5, 8, ... up to max_lag (short and long lags weigh
    alike in the noise fit)."""
    out = [1, 2]
    while out[-1] + out[-2] <= max_lag:
        out.append(out[-1] + out[-2])
    return np.array(out[1:] if max_lag < 2 else out)


def _lag_variance(e: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """D(k) = mean square of sums of k consecutive residual steps for each k in `lags`,
    pooled over ramps; e is (steps, ramps) with NaN after a ramp's end."""
    ok = ~np.isnan(e)
    c = np.vstack([np.zeros((1, e.shape[1])), np.cumsum(np.where(ok, e, 0.0), axis=0)])
    n_valid = ok.sum(axis=0)
    out = []
    for k in lags:
        sums = c[k:] - c[:-k]
        idx = np.arange(sums.shape[0])[:, None]
        valid = idx + k <= n_valid[None, :]
        out.append(float(np.mean(sums[valid] ** 2)) if valid.any() else math.nan)
    return np.array(out)


def _noise(model: PulseModel, data: PulseData, max_lag: int = 100
           ) -> tuple[dict[str, float], dict[str, Any]]:
    """Cycle-to-cycle noise from the residual steps.

    Residual steps e = dG - s_j mean_step(G) (s_j: ramp j's least-squares step scale, 1 for a
    single ramp). Update noise accumulates, AR(1) level noise does not, so the variance of
    sums of k residual steps is D(k) = k sigma_u^2 + 2 sigma_l^2 (1 - rho^k) + k^2 tau^2, where
    tau is a slow within-ramp drift of the step (correlated over the lags; reported, not part
    of the simulated noise); sigma_u and tau per direction and (sigma_l, rho) shared are
    fitted to D(k) of both directions at k = 1, 2, 3, 5, 8, ... <= min(max_lag,
    shortest ramp / 2) (relative least squares).
    """
    lags, lag_k, scales, binned = {}, {}, {}, {}
    for tag, ramps, sign in (("p", data.up, 1), ("d", data.down, -1)):
        g = ramps[:-1]
        d = np.diff(ramps, axis=0)
        mu = model.mean_step(np.nan_to_num(g, nan=model.g_min), sign)
        mu[np.isnan(d)] = np.nan
        s = np.nansum(d * mu, axis=0) / np.nansum(mu * mu, axis=0)
        if ramps.shape[1] < 3:
            s = np.ones_like(s)
        e = d - s * mu
        if ramps.shape[1] >= 3:  # remove what all ramps share at a pulse number (law misfit)
            e = e - np.nanmean(e, axis=1, keepdims=True)
        e = e - np.nanmean(e)
        lag_k[tag] = _lags(min(max_lag, int(_lengths(ramps).min()) // 2))
        lags[tag] = _lag_variance(e, lag_k[tag])
        scales[tag] = s
        ok = ~np.isnan(e)
        edges = np.quantile(g[ok], np.linspace(0, 1, 11))
        idx = np.clip(np.searchsorted(edges, g[ok], side="right") - 1, 0, 9)
        binned[tag] = {"state": [float(np.mean(g[ok][idx == b])) for b in range(10)],
                       "mean_step": [float(np.mean((s * mu)[ok][idx == b])) for b in range(10)],
                       "step_std": [float(np.std(e[ok][idx == b])) for b in range(10)]}
    scale = float(max(lags["p"][0], lags["d"][0]))  # variances fitted in units of D(1)

    def residual(p: lmfit.Parameters) -> np.ndarray:
        out = []
        for t in ("p", "d"):
            k = lag_k[t]
            level = 2 * p["level_var"].value * (1 - p["rho"].value ** k)
            model_d = k * p[f"u_{t}"].value + level + k**2 * p[f"drift_{t}"].value
            out.append(model_d * scale / lags[t] - 1)
        return np.concatenate(out)

    params = lmfit.Parameters()
    params.add("u_p", value=0.3, min=0.0)
    params.add("u_d", value=0.3, min=0.0)
    params.add("level_var", value=0.3, min=0.0)
    params.add("rho", value=0.3, min=0.0, max=0.95)
    params.add("drift_p", value=0.01, min=0.0)
    params.add("drift_d", value=0.01, min=0.0)
    res = lmfit.minimize(residual, params)
    out = {"sigma_add_p": math.sqrt(res.params["u_p"].value * scale),
           "sigma_add_d": math.sqrt(res.params["u_d"].value * scale),
           "sigma_mult_p": 0.0, "sigma_mult_d": 0.0,
           "sigma_level": math.sqrt(res.params["level_var"].value * scale),
           "rho_level": float(res.params["rho"].value)}
    drift = {t: math.sqrt(res.params[f"drift_{t}"].value * scale) for t in ("p", "d")}
    lag_info = {t: {"k": [int(x) for x in lag_k[t]], "D": [float(x) for x in lags[t]]}
                for t in ("p", "d")}
    return out, {"binned": binned, "scales": scales, "lag_variance": lag_info, "drift": drift}


def _d2d(data: PulseData, scales: dict[str, np.ndarray]) -> dict[str, Any]:
    up_start, up_end = _end_levels(data.up)
    dn_start, dn_end = _end_levels(data.down)
    lows, highs = np.r_[up_start, dn_end], np.r_[up_end, dn_start]
    n_ramps = min(data.up.shape[1], data.down.shape[1])
    if n_ramps < 3:
        return {"g_min_std": 0.0, "g_max_std": 0.0, "scale_p_std": 0.0, "scale_d_std": 0.0,
                "basis": "not measurable: one ramp per direction; set to zero"}
    return {"g_min_std": float(np.std(lows, ddof=1)), "g_max_std": float(np.std(highs, ddof=1)),
            "scale_p_std": float(np.std(scales["p"], ddof=1)),
            "scale_d_std": float(np.std(scales["d"], ddof=1)),
            "basis": (f"ramp-to-ramp spread over {data.up.shape[1]} + {data.down.shape[1]} "
                      "ramps of one device, used as a device-to-device proxy")}


def _quality(model: PulseModel, data: PulseData, offsets: dict[str, float], n_sim: int,
             rng: np.random.Generator) -> dict[str, Any]:
    """Mean-ramp deviation and simulated vs measured step-to-step spread, per direction."""
    span = model.g_max - model.g_min
    out: dict[str, Any] = {}
    for tag, ramps, sign in (("p", data.up, 1), ("d", data.down, -1)):
        det = _simulate_like(model, ramps, sign, offsets[tag], None)
        dev = np.abs(mean_ramp(det) - mean_ramp(ramps))
        measured = step_spread(ramps)
        sims, null_dev = [], []
        for _ in range(n_sim):
            # ramp-to-ramp step scales vary; the bounds stay nominal (measured starts are used)
            devs = model.sample_devices(ramps.shape[1], rng)
            devs["g_min"], devs["g_max"] = model.g_min, model.g_max
            sim = _simulate_like(model, ramps, sign, offsets[tag], rng, devs)
            sims.append(step_spread(sim))
            null_dev.append(float(np.max(np.abs(mean_ramp(sim) - mean_ramp(det))) / span))
        simulated = float(np.mean(sims))
        rms = float(np.sqrt(np.nanmean((det - ramps) ** 2)) / span)
        n = int(_lengths(ramps).min())
        extra = {}
        if ramps.shape[1] < 3:  # the finer running mean, for comparison (not the criterion)
            rm_meas = _running_mean(ramps[:n].mean(axis=1)[:, None], SMOOTH_WINDOW)[:, 0]
            rm_det = _running_mean(det[:n].mean(axis=1)[:, None], SMOOTH_WINDOW)[:, 0]
            extra = {
                f"running{SMOOTH_WINDOW}_max_dev_rel": float(np.max(np.abs(rm_det - rm_meas))
                                                             / span),
                f"running{SMOOTH_WINDOW}_monotone_bound_rel": monotone_bound(rm_meas, sign) / span,
            }
        out[tag] = {
            "mean_ramp_max_dev_rel": float(dev.max() / span),
            "mean_ramp_definition": ("mean over ramps up to the shortest" if ramps.shape[1] >= 3
                                     else f"single ramp, means of non-overlapping "
                                     f"{_block(n)}-pulse blocks"),
            "mean_ramp_monotone_bound_rel": monotone_bound(mean_ramp(ramps), sign) / span,
            **extra,
            "rms_dev_rel": rms,
            "mean_ramp_max_dev_rel_noisy_model_median": float(np.median(null_dev)),
            "mean_ramp_max_dev_rel_noisy_model_p95": float(np.percentile(null_dev, 95)),
            "step_spread_measured": measured,
            "step_spread_simulated": simulated,
            # NaN when the ramps have no step spread at all (noise-free simulated ramps)
            "step_spread_ratio": simulated / measured if measured > 0 else math.nan,
            "n_simulations": n_sim,
        }
    return out


def fit_pulse(data: PulseData, n_sim: int = 20, seed: int = 0,
              spline_knots: tuple[int, ...] = SPLINE_KNOTS) -> PulseFit:
    """Fit bounds, mean law and noise to `data`; evaluate; return model, card and metrics.

    `spline_knots`: knot counts K tried for the spline law (each >= 2; minimum BIC kept).
    """
    if not spline_knots or any(isinstance(k, bool) or not isinstance(k, (int, np.integer))
                               or k < 2 for k in spline_knots):
        raise CircuitnnError(f"spline_knots must be whole numbers >= 2, got {spline_knots!r}")
    t0 = time.perf_counter()
    up_start, up_end = _end_levels(data.up)
    dn_start, dn_end = _end_levels(data.down)
    lows, highs = np.r_[up_start, dn_end], np.r_[up_end, dn_start]
    g_min, g_max = float(np.min(lows)), float(np.max(highs))
    if not g_max > g_min:
        raise CircuitnnError(f"{data.name}: potentiation does not raise the conductance "
                             f"(high level {g_max:g} <= low level {g_min:g})")
    span = g_max - g_min
    res_p = _fit_direction(data.up, 1, g_min, g_max, data.unit)
    res_d = _fit_direction(data.down, -1, g_min, g_max, data.unit)
    values = {"g_min": g_min, "g_max": g_max,
              "pmax_p": res_p.params["pmax"].value, "nu_p": res_p.params["nu"].value,
              "pmax_d": res_d.params["pmax"].value, "nu_d": res_d.params["nu"].value}
    exp_model = _model(values, data.unit)
    exp_offsets = {"p": res_p.params["offset"].value * span,
                   "d": res_d.params["offset"].value * span}
    spl_p, info_p = _fit_spline(data.up, 1, exp_model, data.unit, tuple(spline_knots))
    spl_d, info_d = _fit_spline(data.down, -1, exp_model, data.unit, tuple(spline_knots))
    spl_model = _model(values, data.unit, law=1, fp=_spline_knots(spl_p),
                       fd=_spline_knots(spl_d))
    spl_offsets = {"p": spl_p.params["offset"].value * span,
                   "d": spl_d.params["offset"].value * span}
    laws: dict[str, Any] = {}
    for name, mod, offs, fits in (("exponential", exp_model, exp_offsets, (res_p, res_d)),
                                  ("spline", spl_model, spl_offsets, (spl_p, spl_d))):
        laws[name] = {t: {"mean_ramp_max_dev_rel": _deterministic_dev(mod, r, sg, offs[t]),
                          "bic": float(f.bic), "n_parameters": int(f.nvarys)}
                      for t, r, sg, f in (("p", data.up, 1, fits[0]),
                                          ("d", data.down, -1, fits[1]))}
        laws[name]["worst_dev"] = max(laws[name][t]["mean_ramp_max_dev_rel"] for t in "pd")
    laws["spline"]["knots"] = {"p": info_p, "d": info_d}
    use_spline = (laws["exponential"]["worst_dev"] > TARGET_DEV
                  and laws["spline"]["worst_dev"] < laws["exponential"]["worst_dev"])
    chosen = "spline" if use_spline else "exponential"
    offsets = spl_offsets if use_spline else exp_offsets
    law_model = spl_model if use_spline else exp_model
    noise, diag = _noise(law_model, data)
    d2d = _d2d(data, diag["scales"])
    model = _model(values, data.unit, **noise, d2d=d2d, law=law_model.law, fp=law_model.fp,
                   fd=law_model.fd)
    fit_seconds = time.perf_counter() - t0
    metrics = _quality(model, data, offsets, n_sim, np.random.default_rng(seed))
    metrics["fit_seconds"] = fit_seconds
    metrics["law"] = chosen
    metrics["laws"] = laws

    stderr: dict[str, Any] = {
        "pmax_p": res_p.params["pmax"].stderr, "nu_p": res_p.params["nu"].stderr,
        "pmax_d": res_d.params["pmax"].stderr, "nu_d": res_d.params["nu"].stderr,
        "g_min": None, "g_max": None}
    if use_spline:
        for tag, res in (("fp", spl_p), ("fd", spl_d)):
            for i, v in enumerate(_spline_knots(res)):  # stderr of f from that of log f
                err = res.params[f"lf_{i}"].stderr
                stderr[f"{tag}_{i}"] = None if err is None else v * err
    stderr = {k: (None if v is None or not math.isfinite(v) else float(v))
              for k, v in stderr.items()}
    variation = model.variation()
    variation["cycle_to_cycle"]["model"] = (
        "update noise per pulse: sqrt(sigma_add^2 + (sigma_mult*dG)^2)*N(0,1), accumulating; "
        "level noise sigma_level, AR(1) along a ramp with correlation rho_level, on each read, "
        "not accumulating. Fitted from D(k), the variance of sums of k residual steps "
        "(step_drift_std: slow correlated step deviation, informational, not simulated); the "
        "measured step spread does not grow with the mean step, so sigma_mult = 0")
    variation["cycle_to_cycle"]["unit"] = data.unit
    variation["cycle_to_cycle"]["measured_step_vs_state"] = diag["binned"]
    variation["cycle_to_cycle"]["lag_variance_D_k"] = diag["lag_variance"]
    variation["cycle_to_cycle"]["step_drift_std"] = diag["drift"]
    variation["device_to_device"]["basis"] = d2d["basis"]
    variation["device_to_device"]["unit"] = f"{data.unit} for g_*_std; relative for scale_*_std"
    fit_info = {
        "method": ("lmfit leastsq per direction over every measured read; each model ramp "
                   "starts at its measured first read plus a fitted shared offset; bounds = "
                   "envelope (min / max) of the ramps' end levels"),
        "law": chosen,
        "law_choice": (f"exponential if its mean-ramp max deviation <= {TARGET_DEV:g} of the "
                       "range in both directions (parsimony), else the law with the smaller "
                       "worst-direction deviation; spline K per direction by minimum BIC over "
                       f"{list(spline_knots)}; noise re-estimated on the chosen law's residuals"),
        "laws": laws,
        "n_points": {"p": int(np.sum(~np.isnan(data.up))), "d": int(np.sum(~np.isnan(data.down)))},
        "start_offset": offsets,
        "redchi": {"p": float(res_p.redchi), "d": float(res_d.redchi)},
        **{f"quality_{k}": v for k, v in metrics.items() if k in ("p", "d")},
        "fit_seconds": fit_seconds,
    }
    provenance = {
        "dataset": data.name,
        "source": data.source,
        "files": data.files,
        "date": _dt.date.today().isoformat(),
        "circuitnn_version": circuitnn.__version__,
        "units": data.note,
    }
    notes = (f"Pulse-update model, {chosen} mean step law (law = {law_model.law}; exponential: "
             "NeuroSim, Chen et al. IEEE TCAD 2018; spline: PCHIP of log step over uniform "
             "knots of the normalised state); p = potentiating/SET, d = depressing/RESET.")
    if data.unit != "S":
        notes += f" Conductances in {data.unit} units: {data.note}."
    card = ModelCard(MODEL_NAME, model.card_parameters(stderr), provenance, fit_info,
                     variation, notes)
    return PulseFit(model, card, data, metrics, offsets)


# ---------------------------------------------------------------- figure
def plot_pulse_fit(fit: PulseFit, path: str | Path, seed: int = 1) -> Path:
    """Ramps (measured, means, one noisy simulation) and step size vs state, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from circuitnn.io import save_figure

    model, data = fit.model, fit.data
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, tag, ramps, sign, title in ((axes[0], "p", data.up, 1, "potentiation (SET)"),
                                        (axes[1], "d", data.down, -1, "depression (RESET)")):
        x = np.arange(ramps.shape[0])
        ax.plot(x, ramps, color="0.75", lw=0.5)
        det = _simulate_like(model, ramps, sign, fit.offsets[tag], None)
        m_meas, m_mod = mean_ramp(ramps), mean_ramp(det)
        xm = mean_ramp_pulses(ramps)
        if ramps.shape[1] < 3:
            ax.plot(xm, m_meas, "ks-", lw=1.5, ms=5, label="measured block means")
            ax.plot(x, det[:, 0], color="tab:red", lw=1.8, ls="--", label="model mean")
            ax.plot(xm, m_mod, "o", color="tab:red", ms=4, label="model block means")
        else:
            ax.plot(xm, m_meas, color="k", lw=2, label="measured mean")
            ax.plot(xm, m_mod, color="tab:red", lw=1.8, ls="--", label="model mean")
        noisy = model.ramp(ramps[0, 0] + fit.offsets[tag], ramps.shape[0] - 1, sign, rng,
                           read_noise=True)
        ax.plot(x, noisy, color="tab:blue", lw=0.7, label="model, noisy")
        q = fit.metrics[tag]
        dev = 100 * q["mean_ramp_max_dev_rel"]
        ax.set_title(f"{data.name} ({fit.metrics['law']} law): {title}\n"
                     f"mean-ramp max dev {dev:.1f}% of range, "
                     f"spread sim/meas {q['step_spread_ratio']:.2f}", fontsize=9)
        ax.set_xlabel("pulse number")
        ax.set_ylabel(f"conductance ({data.unit})")
        ax.legend(fontsize=8)
    ax = axes[2]
    grid = np.linspace(model.g_min, model.g_max, 200)
    for ramps, sign, colour, label in ((data.up, 1, "tab:green", "SET"),
                                       (data.down, -1, "tab:purple", "RESET")):
        g, d = ramps[:-1].ravel(), np.diff(ramps, axis=0).ravel()
        ok = ~np.isnan(d)
        ax.scatter(g[ok], d[ok], s=2, color=colour, alpha=0.25, label=f"measured {label}")
        mean = model.mean_step(grid, sign)
        std = np.sqrt(model.step_std(grid, sign) ** 2 + 2 * model.sigma_level**2)
        ax.plot(grid, mean, color=colour, lw=2, label=f"model {label} mean")
        ax.fill_between(grid, mean - std, mean + std, color=colour, alpha=0.15)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(f"state before pulse ({data.unit})")
    ax.set_ylabel(f"step dG ({data.unit})")
    ax.set_title("step size vs state (band: model +-1 std of read-to-read dG)", fontsize=9)
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------- CLI entry
def fit_pulse_cli_main(source: str | PulseData, data_dir: str | Path | None = None,
                       card_out: str | Path | None = None, figure: str | Path | None = None,
                       n_sim: int = 20, seed: int = 0) -> PulseFit:
    """What `circuitnn fit-pulse` does: load (a registered dataset's name, or data already
    loaded by `load_pulse_data`), fit, write the card and figure; returns the fit.

    `card_out` defaults to runs/fit-pulse/<short>.json, `figure` to
    runs/fit-pulse/pulse_fit_<name>.png (both relative to the working folder); "" skips.
    """
    data = source if isinstance(source, PulseData) else load_pulse_dataset(source, data_dir)
    fit = fit_pulse(data, n_sim=n_sim, seed=seed)
    short = {"taox-pulse": "taox-pulse", "reram-pulse-gong": "gong-pulse"}.get(data.name,
                                                                               data.name)
    if card_out is None:
        card_out = Path("runs") / "fit-pulse" / f"{short}.json"
    if figure is None:
        figure = Path("runs") / "fit-pulse" / f"pulse_fit_{data.name}.png"
    if card_out != "":
        fit.card.save(card_out)
    if figure != "":
        plot_pulse_fit(fit, figure)
    return fit


def summary_lines(fit: PulseFit) -> list[str]:
    """Human-readable fit-quality lines (for the CLI and the benchmark)."""
    laws = fit.metrics["laws"]
    lines = [f"{fit.data.name}: fit {fit.metrics['fit_seconds']:.2f} s; law {fit.metrics['law']} "
             f"(worst-direction mean-ramp dev: exponential "
             f"{100 * laws['exponential']['worst_dev']:.2f}%, spline "
             f"{100 * laws['spline']['worst_dev']:.2f}%, K p/d "
             f"{laws['spline']['knots']['p']['K']}/{laws['spline']['knots']['d']['K']})"]
    for tag, name in (("p", "SET/up"), ("d", "RESET/down")):
        q = fit.metrics[tag]
        lines.append(
            f"  {name:10s} mean-ramp max dev {100 * q['mean_ramp_max_dev_rel']:5.2f}% of range; "
            f"step spread measured {q['step_spread_measured']:.3g}, simulated "
            f"{q['step_spread_simulated']:.3g} (ratio {q['step_spread_ratio']:.3f})")
    m = fit.model
    span = m.g_max - m.g_min
    lines.append(f"  cycle-to-cycle: update noise per pulse SET {100 * m.sigma_add_p / span:.3g}%"
                 f" / RESET {100 * m.sigma_add_d / span:.3g}% of the window (+ {m.sigma_mult_p:.3g}"
                 f" / {m.sigma_mult_d:.3g} x the step); read-level noise "
                 f"{100 * m.sigma_level / span:.3g}% (pulse-to-pulse correlation "
                 f"{m.rho_level:.2f})")
    return lines

"""Measured I-V sweeps: read text tables and TOML manifests into checked `Sweep` objects.

A manifest lists one ``[[sweep]]`` table per measurement::

    [[sweep]]
    file = "path/to/memristor.csv"   # relative paths are relative to the manifest
    columns = [0, 1]                 # voltage, current[, time]: 0-based indices or header names
    current_unit = "uA"              # A, mA, uA or nA
    frequency_hz = 10                # no time column: the rows sample one drive period evenly
    device = "M1"                    # optional; sweeps of one device share one parameter set
    series_resistance_ohm = 0        # optional; resistance in series with the device in V
    compliance_a = 100e-6            # optional; the instrument's current compliance (A)
    noise_floor_a = 1e-9             # optional; currents at or below it are noise (A)
    resolution_a = 1e-12             # optional; the instrument's stated current resolution (A)

and, once at the top, optionally ``read_range_v = 0.1`` (V): the read region, |V| across the
device up to it, where `circuitnn.fitting.iv` measures the read-region error.

Noise floor of a sweep (currents at or below it are left out of the log measures): the manifest's
``noise_floor_a``; else estimated from the data: the largest |current| the sweep reads where the
device voltage crosses 0 V (interpolated linearly between the two samples around each crossing,
in time order; a pinched loop carries no current there, so what the instrument reads is its
offset and noise); else, for a sweep that never crosses 0 V, the instrument's resolution: the
manifest's ``resolution_a``, else the smallest step between the recorded current readings. A
stated ``resolution_a`` is also the least the estimate can be. `Sweep.noise_floor_source` says
which.

Every problem with the user's files is reported as a one-line `CircuitnnError` that names the
file and, for bad cells, the line and column.
"""

from __future__ import annotations

import csv
import math
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn import datasets
from circuitnn.devices.card import ModelCard
from circuitnn.errors import CircuitnnError

#: current unit name -> factor to amperes
CURRENT_UNITS: dict[str, float] = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9}
_CURRENT_ALIASES = {"µA": "uA", "μA": "uA"}  # micro sign and Greek mu
#: time unit name -> factor to seconds (for a time column)
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
#: fewest data rows accepted for a fit
MIN_ROWS = 10
#: a reading with |I| >= AT_COMPLIANCE * compliance is the instrument's limit, not the device's
AT_COMPLIANCE = 0.99
#: a measured current above the compliance by more than this factor means a wrong unit
COMPLIANCE_SLACK = 1.05
#: largest plausible compliance or noise floor (A)
MAX_CURRENT_SETTING = 1.0
#: keys a [[sweep]] table may hold
SWEEP_KEYS = (
    "file",
    "columns",
    "current_unit",
    "frequency_hz",
    "device",
    "series_resistance_ohm",
    "time_unit",
    "name",
    "compliance_a",
    "noise_floor_a",
    "resolution_a",
)
#: keys allowed at the top of a manifest besides [[sweep]]
TOP_KEYS = ("read_range_v",)
_REQUIRED_KEYS = ("file", "columns", "current_unit")
_ROLES = ("voltage", "current", "time")

Column = int | str


@dataclass(frozen=True, eq=False)
class Sweep:
    """One measured I-V sweep in SI units (s, V, A); arrays are read-only.

    When `periodic` is True the rows sample one period of a periodic drive evenly, starting at
    an arbitrary phase, and ``t = arange(n) / (n * frequency_hz)``.
    """

    name: str
    device: str
    t: np.ndarray
    v: np.ndarray
    i: np.ndarray
    series_resistance_ohm: float
    periodic: bool
    frequency_hz: float | None
    source: str
    compliance_a: float | None = None
    noise_floor_a: float = 0.0
    #: how the file was read (`load_sweep`'s columns, current_unit, time_unit), for the card
    reading: dict[str, Any] | None = None
    #: where the noise floor comes from ("manifest", "estimated ...", "resolution ...", "given")
    noise_floor_source: str = "given"
    #: the manifest's read range (V), if it gives one
    read_range_v: float | None = None

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.v.size)

    @property
    def duration(self) -> float:
        """Time covered: one full period (1/f) for a periodic sweep, else t[-1] - t[0]."""
        if self.periodic and self.frequency_hz:
            return 1.0 / self.frequency_hz
        return float(self.t[-1] - self.t[0])

    @property
    def at_compliance(self) -> np.ndarray:
        """Points whose reading is the instrument's current limit (|I| >= 0.99 compliance)."""
        if self.compliance_a is None:
            return np.zeros(self.n, dtype=bool)
        return np.abs(self.i) >= AT_COMPLIANCE * self.compliance_a

    @property
    def v_device(self) -> np.ndarray:
        """Voltage across the device alone: v minus the drop on the series resistance."""
        return self.v - self.i * self.series_resistance_ohm


# ----------------------------------------------------------------------------- text tables


def _fail(path: Path | str, msg: str) -> CircuitnnError:
    return CircuitnnError(f"{path}: {msg}")


def _read_text(path: Path) -> str:
    """Read a text file, refusing missing files, folders, binaries and undecodable bytes."""
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a directory, not a data file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read file ({exc.strerror or exc})") from None
    if b"\x00" in raw:
        raise _fail(path, "looks like a binary file (NUL bytes), expected CSV or text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(
            path, f"not UTF-8 text (undecodable byte at offset {exc.start}); binary file?"
        ) from None


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for lines that are neither blank nor '#' comments."""
    out = []
    for k, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append((k, s))
    return out


def _detect_delimiter(lines: Sequence[str]) -> str | None:
    """Tab, ';' or ',' if it occurs in each of the first lines; None means whitespace."""
    head = lines[:5]
    for delim in ("\t", ";", ","):
        if all(delim in line for line in head):
            return delim
    return None


def _split(lines: list[tuple[int, str]], delim: str | None) -> list[tuple[int, list[str]]]:
    if delim is None:
        return [(k, line.split()) for k, line in lines]
    # one reader per line: a stray quote must not swallow the following lines
    out = []
    for k, line in lines:
        cells = next(csv.reader([line], delimiter=delim))
        out.append((k, [c.strip() for c in cells]))
    return out


def _to_float(cell: str, decimal_comma: bool) -> float | None:
    try:
        return float(cell)
    except ValueError:
        pass
    if decimal_comma and cell.count(",") == 1:
        try:
            return float(cell.replace(",", "."))
        except ValueError:
            pass
    return None


def _resolve_column(
    ref: Column, header: list[str] | None, ncols: int, role: str, path: Path
) -> int:
    """Turn a 0-based index or a header name into a column index."""
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise _fail(path, f"{role} column must be a 0-based index or a header name, got {ref!r}")
    if isinstance(ref, str):
        name = ref.strip()
        if header is not None:
            exact = [k for k, h in enumerate(header) if h == name]
            loose = [k for k, h in enumerate(header) if h.strip().lower() == name.lower()]
            for matches in (exact, loose):
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise _fail(path, f"header name {name!r} ({role}) occurs more than once")
        if not name.isdigit():
            if header is None:
                raise _fail(
                    path,
                    f"{role} column {name!r} asked by name, but the file has no header row; "
                    "use 0-based column indices",
                )
            shown = ", ".join(repr(h) for h in header)
            raise _fail(path, f"no column named {name!r} ({role}); header names are: {shown}")
        ref = int(name)
    if ref < 0:
        raise _fail(path, f"{role} column index {ref} is negative; indices are 0-based")
    if ref >= ncols:
        if ncols == 1:
            raise _fail(
                path,
                f"has only 1 column but the {role} column is index {ref}; "
                "separate columns with ',', ';', tab or spaces",
            )
        raise _fail(
            path,
            f"{role} column index {ref} is out of range: the file has {ncols} columns "
            f"(0..{ncols - 1})",
        )
    return ref


def load_table(
    path: str | os.PathLike,
    columns: Sequence[Column],
    *,
    what: Sequence[str] | None = None,
    min_rows: int = MIN_ROWS,
    line_numbers: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Read the chosen columns of a numeric text table as a float array of shape (rows, cols)
    (with `line_numbers`, also each data row's line number in the file).

    Accepts comma-, semicolon- or tab-separated values or whitespace-separated text, with or
    without a header row (a first row with no numeric cell is a header), and skips blank lines
    and lines starting with '#'. `columns` are 0-based indices or header names; `what` names
    their roles (e.g. ``("voltage", "current")``) for error messages. Cells in other columns
    are not checked.
    """
    table, lines = _read_table(Path(path).expanduser(), list(columns), what, min_rows)
    return (table, lines) if line_numbers else table


def _read_table(
    path: Path, columns: list[Column], what: Sequence[str] | None, min_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """`load_table` plus the file line number of each data row."""
    roles = list(what) if what is not None else [f"column #{k + 1}" for k in range(len(columns))]
    if len(roles) != len(columns):
        raise ValueError("`what` must name one role per column")
    if not columns:
        raise _fail(path, "no columns requested")

    lines = _content_lines(_read_text(path))
    if not lines:
        raise _fail(path, "file is empty (no data rows)")
    delim = _detect_delimiter([line for _, line in lines])
    rows = _split(lines, delim)
    decimal_comma = delim in (";", "\t")

    header: list[str] | None = None
    first = rows[0][1]
    if all(_to_float(c, decimal_comma) is None for c in first):
        header = first
        rows = rows[1:]
        if not rows:
            raise _fail(path, "has a header row but no data rows")

    ncols = len(header) if header is not None else len(rows[0][1])
    for lineno, cells in rows:
        if len(cells) != ncols:
            raise _fail(
                path, f"line {lineno}: ragged row with {len(cells)} cells, expected {ncols}"
            )

    idx = [
        _resolve_column(ref, header, ncols, role, path)
        for ref, role in zip(columns, roles, strict=True)
    ]
    if len(set(idx)) != len(idx):
        raise _fail(path, f"the {' and '.join(roles)} columns must differ, got {columns}")

    if len(rows) < min_rows:
        raise _fail(path, f"only {len(rows)} data rows; at least {min_rows} are needed for a fit")

    linenos = np.array([lineno for lineno, _ in rows])
    try:  # fast path; on any failure the loop below finds and reports the bad cell
        out = np.array([[float(cells[col]) for col in idx] for _, cells in rows])
        if np.isfinite(out).all():
            return out, linenos
    except ValueError:
        pass
    out = np.empty((len(rows), len(idx)))
    for r, (lineno, cells) in enumerate(rows):
        for c, (col, role) in enumerate(zip(idx, roles, strict=True)):
            cell = cells[col]
            value = _to_float(cell, decimal_comma)
            if value is None:
                shown = repr(cell) if cell else "an empty cell"
                raise _fail(
                    path, f"line {lineno}, column {col} ({role}): {shown} is not a number"
                )
            if not math.isfinite(value):
                raise _fail(
                    path, f"line {lineno}, column {col} ({role}): value {cell!r} is not finite"
                )
            out[r, c] = value
    return out, linenos


# ----------------------------------------------------------------------------- sweeps


def _check_number(value: Any, key: str, where: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CircuitnnError(f"{where}: {key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise CircuitnnError(f"{where}: {key} must be finite, got {value}")
    if positive and value <= 0:
        raise CircuitnnError(f"{where}: {key} must be > 0, got {value:g}")
    if not positive and value < 0:
        raise CircuitnnError(f"{where}: {key} must be >= 0, got {value:g}")
    return value


def _check_unit(value: Any, key: str, units: dict[str, float], where: str) -> float:
    name = _CURRENT_ALIASES.get(value, value) if isinstance(value, str) else value
    if not isinstance(name, str) or name not in units:
        allowed = ", ".join(units)
        raise CircuitnnError(f"{where}: {key} must be one of {allowed}, got {value!r}")
    return units[name]


def _check_columns(columns: Any, where: str) -> list[Column]:
    if not isinstance(columns, list | tuple) or not 2 <= len(columns) <= 3:
        raise CircuitnnError(
            f"{where}: columns must list 2 or 3 entries (voltage, current[, time]), "
            f"got {columns!r}"
        )
    for ref in columns:
        ok_int = isinstance(ref, int) and not isinstance(ref, bool) and ref >= 0
        if not (ok_int or (isinstance(ref, str) and ref.strip())):
            raise CircuitnnError(
                f"{where}: each column must be a 0-based index or a header name, got {ref!r}"
            )
    return list(columns)


def _default_device(file: Path) -> str:
    """The folder named in the path as written, else 'device'."""
    parent = file.parent.name
    return parent if parent not in ("", ".", "..") else "device"


def load_sweep(
    file: str | os.PathLike,
    columns: Sequence[Column],
    *,
    current_unit: str,
    frequency_hz: float | None = None,
    device: str | None = None,
    series_resistance_ohm: float = 0.0,
    time_unit: str = "s",
    name: str | None = None,
    base_dir: str | os.PathLike | None = None,
    where: str | None = None,
    compliance_a: float | None = None,
    noise_floor_a: float | None = None,
    resolution_a: float | None = None,
    read_range_v: float | None = None,
) -> Sweep:
    """Load and check one sweep; a relative `file` is taken relative to `base_dir` (or cwd).

    `where` prefixes messages about the arguments themselves (e.g. the manifest and entry);
    problems inside the data file name that file. The noise floor is `noise_floor_a`, else
    estimated (module doc).
    """
    written = Path(file).expanduser()
    path = written if base_dir is None else Path(base_dir).expanduser() / written
    where = where or str(path)
    cols = _check_columns(columns, where)
    amps = _check_unit(current_unit, "current_unit", CURRENT_UNITS, where)
    seconds = _check_unit(time_unit, "time_unit", TIME_UNITS, where)
    rs = _check_number(series_resistance_ohm, "series_resistance_ohm", where, positive=False)
    freq = None
    if frequency_hz is not None:
        freq = _check_number(frequency_hz, "frequency_hz", where, positive=True)
    comp = None
    if compliance_a is not None:
        comp = _check_current_setting(compliance_a, "compliance_a", where, positive=True)
    floor = None
    if noise_floor_a is not None:
        floor = _check_current_setting(noise_floor_a, "noise_floor_a", where, positive=False)
    resolution = None
    if resolution_a is not None:
        resolution = _check_current_setting(resolution_a, "resolution_a", where, positive=True)
    if read_range_v is not None:
        read_range_v = _check_number(read_range_v, "read_range_v", where, positive=True)
    if device is None:
        device = _default_device(written)
    if not isinstance(device, str) or not device.strip():
        raise CircuitnnError(f"{where}: device must be a non-empty string, got {device!r}")
    has_time = len(cols) == 3
    if not has_time and freq is None:
        raise CircuitnnError(
            f"{where}: needs a time column (third entry of columns) or frequency_hz "
            "(rows sampling one period evenly)"
        )

    data, linenos = _read_table(path, cols, _ROLES[: len(cols)], MIN_ROWS)
    v = np.ascontiguousarray(data[:, 0])
    i = data[:, 1] * amps
    if has_time:
        t = data[:, 2] * seconds
        steps = np.diff(t)
        if np.any(steps <= 0):
            bad = int(np.argmax(steps <= 0)) + 1
            raise CircuitnnError(
                f"{path}: line {linenos[bad]}, column {cols[2]} (time): t = {data[bad, 2]:g} "
                "does not exceed the previous row; the time column must increase strictly"
            )
        periodic = False
    else:
        n = v.size
        t = np.arange(n) / (n * freq)
        periodic = True

    if name is None:
        name = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    for arr in (t, v, i):
        arr.setflags(write=False)
    sweep = Sweep(
        name=name,
        device=device.strip(),
        t=t,
        v=v,
        i=i,
        series_resistance_ohm=rs,
        periodic=periodic,
        frequency_hz=freq,
        source=str(path),
        compliance_a=comp,
        noise_floor_a=0.0 if floor is None else floor,
        noise_floor_source="manifest",
        read_range_v=read_range_v,
        reading={"columns": list(cols), "current_unit": current_unit, "time_unit": time_unit},
    )
    if floor is None:
        floor, how = estimate_noise_floor(sweep, resolution)
        sweep = replace(sweep, noise_floor_a=floor, noise_floor_source=how)
    check_current_settings(sweep, where)
    return sweep


def zero_volt_currents(sweep: Sweep) -> np.ndarray:
    """The currents the sweep reads where the device voltage crosses 0 V: interpolated linearly
    between the two samples around each crossing, in time order (a periodic sweep wraps round),
    and those of samples at exactly 0 V."""
    v, i = sweep.v_device, sweep.i
    if sweep.periodic:
        v1, i1 = np.roll(v, -1), np.roll(i, -1)
    else:
        v, i, v1, i1 = v[:-1], i[:-1], v[1:], i[1:]
    cross = v * v1 < 0
    at = i[cross] - (i1[cross] - i[cross]) * v[cross] / (v1[cross] - v[cross])
    return np.concatenate([sweep.i[sweep.v_device == 0], at])


def estimate_noise_floor(sweep: Sweep, resolution: float | None = None) -> tuple[float, str]:
    """(noise floor in A, where it comes from) of a sweep without a stated one (module doc)."""
    zero = np.abs(zero_volt_currents(sweep))
    if zero.size:
        floor = float(zero.max())
        how = (f"estimated: the largest |current| read at 0 V over {zero.size} zero "
               "crossing(s) of the device voltage")
        if resolution is not None and resolution > floor:
            return resolution, f"resolution_a (above the estimate {floor:.3g} A)"
        return floor, how
    if resolution is not None:
        return resolution, "resolution_a (the sweep never crosses 0 V)"
    steps = np.diff(np.unique(np.abs(sweep.i)))
    steps = steps[steps > 0]
    floor = float(steps.min()) if steps.size else 0.0
    return floor, ("the smallest step between the recorded currents (the sweep never crosses "
                   "0 V and no resolution_a is given)")


def _check_current_setting(value: Any, key: str, where: str, *, positive: bool) -> float:
    value = _check_number(value, key, where, positive=positive)
    if value > MAX_CURRENT_SETTING:
        raise CircuitnnError(f"{where}: {key} = {value:g} A is absurd for a memristor "
                             f"(> {MAX_CURRENT_SETTING:g} A); give it in amperes, e.g. 100e-6")
    return value


def check_current_settings(sweep: Sweep, where: str) -> None:
    """Refuse a compliance or noise floor that contradicts the data (wrong unit, or nothing left
    to fit); `where` names the sweep in messages."""
    peak = float(np.max(np.abs(sweep.i)))
    if sweep.compliance_a is not None:
        comp = sweep.compliance_a
        if peak > COMPLIANCE_SLACK * comp:
            raise CircuitnnError(
                f"{where}: measured current reaches {peak:.3g} A, above compliance_a = "
                f"{comp:.3g} A; give the compliance in amperes (the data's current_unit does "
                "not apply to it)")
        free = int(np.count_nonzero(~sweep.at_compliance))
        if free < MIN_ROWS:
            raise CircuitnnError(
                f"{where}: the sweep is (almost) entirely at the compliance of {comp:.3g} A "
                f"({sweep.n - free} of {sweep.n} points); nothing of the device to fit")
    if sweep.noise_floor_a:
        floor = sweep.noise_floor_a
        given = sweep.noise_floor_source == "manifest"
        what = f"noise_floor_a = {floor:.3g} A" if given else (
            f"the noise floor {floor:.3g} A ({sweep.noise_floor_source})")
        if given and floor >= peak:
            raise CircuitnnError(
                f"{where}: {what} is above every measured current (peak |I| {peak:.3g} A); "
                "give it in amperes (the data's current_unit does not apply to it)")
        above = int(np.count_nonzero(np.abs(sweep.i) > floor))
        if above < MIN_ROWS:
            hint = "give it in amperes" if given else "give noise_floor_a"
            raise CircuitnnError(
                f"{where}: only {above} of {sweep.n} points lie above {what} (peak |I| "
                f"{peak:.3g} A); {hint}")


def parse_columns(columns: str | Sequence[Column]) -> list[Column]:
    if isinstance(columns, str):
        parts = [p.strip() for p in columns.split(",")]
        return [int(p) if re.fullmatch(r"\d+", p) else p for p in parts]
    return list(columns)


def sweep_from_args(
    file: str | os.PathLike,
    columns: str | Sequence[Column],
    current_unit: str,
    frequency_hz: float | None = None,
    device: str | None = None,
    series_resistance_ohm: float = 0.0,
    compliance_a: float | None = None,
    noise_floor_a: float | None = None,
    read_range_v: float | None = None,
) -> Sweep:
    """Build a sweep from the CLI quick form (``--columns 0,1 --current-unit uA ...``).

    `columns` may be a string such as ``"0,1"``, ``"V,I"`` or ``"0,1,2"`` or a list.
    """
    return load_sweep(
        file,
        parse_columns(columns),
        current_unit=current_unit,
        frequency_hz=frequency_hz,
        device=device,
        series_resistance_ohm=series_resistance_ohm,
        compliance_a=compliance_a,
        noise_floor_a=noise_floor_a,
        read_range_v=read_range_v,
    )


# ----------------------------------------------------------------------------- manifests


def load_manifest(path: str | os.PathLike) -> list[Sweep]:
    """Load every ``[[sweep]]`` of a TOML manifest, in file order, with unique names."""
    path = Path(path).expanduser()
    text = _read_text(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"invalid TOML: {' '.join(str(exc).split())}") from None

    extra = sorted(set(doc) - {"sweep", *TOP_KEYS})
    if extra:
        raise _fail(path, f"unknown top-level key(s) {', '.join(extra)}; allowed: [[sweep]], "
                          f"{', '.join(TOP_KEYS)}")
    if "read_range_v" in doc:
        _check_number(doc["read_range_v"], "read_range_v", str(path), positive=True)
    entries = doc.get("sweep")
    if entries is None:
        raise _fail(path, "no [[sweep]] entries; the manifest lists nothing to load")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _fail(path, "'sweep' must be an array of tables: write [[sweep]], not [sweep]")
    if not entries:
        raise _fail(path, "no [[sweep]] entries; the manifest lists nothing to load")

    sweeps: list[Sweep] = []
    seen: dict[str, int] = {}
    for k, entry in enumerate(entries, start=1):
        where = f"{path}: [[sweep]] #{k}"
        unknown = sorted(set(entry) - set(SWEEP_KEYS))
        if unknown:
            raise CircuitnnError(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SWEEP_KEYS)}"
            )
        missing = [key for key in _REQUIRED_KEYS if key not in entry]
        if missing:
            raise CircuitnnError(f"{where}: missing required key(s) {', '.join(missing)}")
        file = entry["file"]
        if not isinstance(file, str) or not file.strip():
            raise CircuitnnError(f"{where}: file must be a non-empty string, got {file!r}")
        for key in ("name", "device"):
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                raise CircuitnnError(f"{where}: {key} must be a non-empty string")
        try:
            sweep = load_sweep(
                file,
                entry["columns"],
                current_unit=entry["current_unit"],
                frequency_hz=entry.get("frequency_hz"),
                device=entry.get("device"),
                series_resistance_ohm=entry.get("series_resistance_ohm", 0.0),
                time_unit=entry.get("time_unit", "s"),
                name=entry.get("name"),
                base_dir=path.parent,
                where=where,
                compliance_a=entry.get("compliance_a"),
                noise_floor_a=entry.get("noise_floor_a"),
                resolution_a=entry.get("resolution_a"),
                read_range_v=doc.get("read_range_v"),
            )
        except CircuitnnError as exc:
            msg = str(exc)
            raise CircuitnnError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        count = seen.get(sweep.name, 0)
        seen[sweep.name] = count + 1
        if count:
            sweep = replace(sweep, name=f"{sweep.name}#{count + 1}")
        sweeps.append(sweep)
    return sweeps


def card_sweeps(card: ModelCard, where: str = "card") -> list[Sweep]:
    """The measured sweeps a card was fitted to (its provenance `data`), read again as the fit
    read them: each file at its recorded path or, when that is gone and the file belongs to a
    registered public dataset (`circuitnn.datasets`), in that dataset's local folder; with the
    columns and units recorded with it (cards written before those were recorded: the
    registered dataset's). [] for a card without measured data (published parameters)."""
    sweeps = []
    for entry in card.provenance.get("data", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise CircuitnnError(f"{where}: provenance 'data' entries need a 'file'")
        dataset = (entry.get("public_source") or {}).get("dataset")
        path = Path(entry["file"])
        if not path.is_file() and dataset in datasets.DATASETS:
            folder = datasets.DATASETS[dataset].folder
            if folder in path.parts:
                rest = path.parts[path.parts.index(folder) + 1:]
                path = datasets.dataset_path(dataset).joinpath(*rest)
        reading = entry.get("reading")
        if reading is None and dataset in datasets.DATASETS:
            ds = datasets.DATASETS[dataset]
            reading = {"columns": list(ds.columns), "current_unit": ds.current_unit}
        if not isinstance(reading, dict):
            raise CircuitnnError(f"{where}: the card does not record how {entry['file']} was "
                                 "read (its columns and units); fit it again to record them")
        sweeps.append(load_sweep(
            path, reading["columns"], current_unit=reading["current_unit"],
            time_unit=reading.get("time_unit", "s"), frequency_hz=entry.get("frequency_hz"),
            series_resistance_ohm=entry.get("series_resistance_ohm", 0.0),
            compliance_a=entry.get("compliance_a"), name=entry.get("sweep"),
            where=f"{where}: measured data {entry.get('sweep')}"))
    return sweeps


def group_by_device(sweeps: Iterable[Sweep]) -> dict[str, list[Sweep]]:
    """Sweeps per device name, devices in order of first appearance."""
    groups: dict[str, list[Sweep]] = {}
    for sweep in sweeps:
        groups.setdefault(sweep.device, []).append(sweep)
    return groups

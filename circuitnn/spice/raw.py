"""Reader for ngspice raw files (binary and ascii, real and complex, several plots per file).

Layout written by ngspice (``-r file`` in batch mode, or the ``write`` command), per plot::

    Title: ...
    Date: ...
    Plotname: DC transfer characteristic
    Flags: real | complex
    No. Variables: N
    No. Points: P
    Variables:
        0   v(v-sweep)  voltage
        ...
    Binary:            (P*N little-endian float64, or P*N (re, im) pairs if complex)
    Values:            (ascii: per point "index <tab> value" then N-1 lines "<tab> value";
                        complex values are written "re,im")

Plots follow one another in the same file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from circuitnn.errors import CircuitnnError


@dataclass
class RawPlot:
    """One analysis result: a plot with named vectors.

    `variables` lists the vector names in file order, lower-cased as ngspice writes them
    (``v(n1)``, ``i(vsense)``, ``time``, ``v(v-sweep)``); `data` maps each name to a 1-D array
    (float64, or complex128 for complex plots; the ``frequency`` scale is always real).
    """

    title: str
    plotname: str
    variables: list[str]
    data: dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.data[name.lower()]
        except KeyError:
            raise CircuitnnError(
                f"vector '{name}' not in plot '{self.plotname}' (has: {', '.join(self.variables)})"
            ) from None

    @property
    def scale(self) -> np.ndarray:
        """The first vector (sweep variable, time or frequency)."""
        return self.data[self.variables[0]]

    @property
    def npoints(self) -> int:
        return len(self.scale) if self.variables else 0


def _readline(buf: bytes, pos: int, path: str) -> tuple[str, int]:
    end = buf.find(b"\n", pos)
    if end < 0:
        if pos >= len(buf):
            raise CircuitnnError(f"truncated raw file {path}: header ends early")
        end = len(buf)
    return buf[pos:end].decode("utf-8", errors="replace").rstrip("\r"), end + 1


def _parse_int(value: str, key: str, path: str) -> int:
    try:
        n = int(value.split()[0])
    except (ValueError, IndexError):
        raise CircuitnnError(f"malformed raw file {path}: bad '{key}' value {value!r}") from None
    if n < 0:
        raise CircuitnnError(f"malformed raw file {path}: negative '{key}' {n}")
    return n


def _finish(raw_vals: np.ndarray, names: list[str], types: list[str]) -> dict[str, np.ndarray]:
    """Split a (points x vars) matrix into named vectors; the frequency scale is kept real.

    ngspice writes an uninitialised imaginary part for the frequency scale of AC plots,
    so only its real part is meaningful.
    """
    data: dict[str, np.ndarray] = {}
    for j, (name, typ) in enumerate(zip(names, types, strict=True)):
        col = np.ascontiguousarray(raw_vals[:, j])
        if np.iscomplexobj(col) and typ == "frequency":
            col = np.ascontiguousarray(col.real)
        data[name] = col
    return data


def _parse_plot(buf: bytes, pos: int, path: str) -> tuple[RawPlot, int]:
    header: dict[str, str] = {}
    while True:
        line, pos = _readline(buf, pos, path)
        if not line.strip():
            continue
        if line.strip() == "Variables:":
            break
        key, sep, value = line.partition(":")
        if not sep:
            raise CircuitnnError(f"malformed raw file {path}: unexpected header line {line!r}")
        header[key.strip().lower()] = value.strip()
    for key in ("plotname", "flags", "no. variables", "no. points"):
        if key not in header:
            raise CircuitnnError(f"malformed raw file {path}: header lacks '{key}'")
    nvars = _parse_int(header["no. variables"], "No. Variables", path)
    npoints = _parse_int(header["no. points"], "No. Points", path)
    is_complex = "complex" in header["flags"].lower()

    names: list[str] = []
    types: list[str] = []
    for _ in range(nvars):
        line, pos = _readline(buf, pos, path)
        parts = line.split()
        if len(parts) < 2:
            raise CircuitnnError(f"malformed raw file {path}: bad variable line {line!r}")
        names.append(parts[1].lower())
        types.append(parts[2].lower() if len(parts) > 2 else "")
    line, pos = _readline(buf, pos, path)
    kind = line.strip()
    width = 2 if is_complex else 1

    if kind == "Binary:":
        nbytes = npoints * nvars * width * 8
        if pos + nbytes > len(buf):
            raise CircuitnnError(
                f"truncated raw file {path}: plot '{header['plotname']}' needs {nbytes} data "
                f"bytes, {len(buf) - pos} present"
            )
        vals = np.frombuffer(buf, dtype="<f8", count=npoints * nvars * width, offset=pos)
        pos += nbytes
        if is_complex:
            pairs = vals.reshape(npoints, nvars, 2)
            mat = pairs[..., 0] + 1j * pairs[..., 1]
        else:
            mat = vals.reshape(npoints, nvars)
    elif kind == "Values:":
        end = buf.find(b"\nTitle:", pos)
        end = len(buf) if end < 0 else end + 1
        tokens = buf[pos:end].split()
        pos = end
        if len(tokens) != npoints * (nvars + 1):
            raise CircuitnnError(
                f"truncated or malformed raw file {path}: plot '{header['plotname']}' expects "
                f"{npoints} points of {nvars} values, found {len(tokens)} tokens"
            )
        table = np.array(tokens, dtype=object).reshape(npoints, nvars + 1)
        try:
            index = table[:, 0].astype(np.int64) if npoints else np.zeros(0, np.int64)
            if not np.array_equal(index, np.arange(npoints)):
                raise ValueError("point indices out of sequence")
            if is_complex:
                parts = [tok.split(b",") for tok in table[:, 1:].ravel()]
                if any(len(p) != 2 for p in parts):
                    raise ValueError("complex value without 're,im' form")
                ri = np.array(parts, dtype=np.float64).reshape(npoints, nvars, 2)
                mat = ri[..., 0] + 1j * ri[..., 1]
            else:
                mat = table[:, 1:].astype(np.float64).reshape(npoints, nvars)
        except ValueError as exc:
            raise CircuitnnError(
                f"malformed raw file {path}: plot '{header['plotname']}': {exc}"
            ) from None
    else:
        raise CircuitnnError(
            f"malformed raw file {path}: expected 'Binary:' or 'Values:', got {line!r}"
        )
    plot = RawPlot(
        title=header.get("title", ""),
        plotname=header["plotname"],
        variables=names,
        data=_finish(mat, names, types),
    )
    return plot, pos


def read_raw(path: str | os.PathLike) -> list[RawPlot]:
    """Read every plot in an ngspice raw file (binary or ascii; real or complex)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            buf = fh.read()
    except OSError as exc:
        raise CircuitnnError(f"cannot read raw file {path}: {exc.strerror}") from None
    plots: list[RawPlot] = []
    pos = 0
    while True:
        while pos < len(buf) and buf[pos : pos + 1] in (b"\n", b"\r", b" ", b"\t"):
            pos += 1
        if pos >= len(buf):
            break
        if not buf.startswith(b"Title:", pos):
            raise CircuitnnError(
                f"malformed raw file {path}: expected 'Title:' at byte {pos} (truncated plot?)"
            )
        plot, pos = _parse_plot(buf, pos, path)
        plots.append(plot)
    if not plots:
        raise CircuitnnError(f"raw file {path} holds no plots")
    return plots

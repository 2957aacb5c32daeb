"""Run ngspice netlists and return their plots.

Two backends give the same plots (same vector names, same float64 values):

* ``"subprocess"`` (default): ``ngspice -b -r out.raw in.cir`` in a temporary directory, with a
  timeout that kills the whole process group; the raw file is read by :func:`read_raw`.
* ``"shared"``: libngspice through PySpice's ``NgSpiceShared``, in a persistent worker process
  (a fresh interpreter talking over private pipes) so that a crash or a hang of the
  non-re-entrant shared library never takes the caller down; it is restarted after failures.

Failures (syntax errors, unknown elements, aborted or non-converged analyses, missing output,
timeouts) raise :class:`CircuitnnError` with a one-line message naming the netlist. A run that
fails on convergence is retried once with gmin/source stepping and larger iteration limits.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TypeVar

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.spice.names import fmt, safe_name, safe_node
from circuitnn.spice.raw import RawPlot, read_raw

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "CONVERGENCE_OPTIONS",
    "SpiceResult",
    "dc_batch_lines",
    "ngspice_available",
    "run_netlist",
    "shutdown_shared_worker",
    "silence_pyspice_version_warning",
    "with_options",
]

INSTALL_HINT = "ngspice not found: apt-get install -y ngspice libngspice0 libngspice0-dev"

#: Options added on the retry after a convergence failure (names as in the ngspice 39 manual,
#: "DC Solution Options" / "Transient Analysis Options"): fixed-ladder gmin stepping and source
#: stepping with 100 steps each (a value of 1, the default, selects the adaptive variants that
#: already ran), and larger Newton iteration limits for .op (itl1), .dc (itl2) and .tran (itl4).
CONVERGENCE_OPTIONS = ".options gminsteps=100 srcsteps=100 itl1=500 itl2=500 itl4=100"

# A log line is fatal if it matches this (warnings such as "singular matrix" or "gmin stepping
# failed" are not: ngspice often recovers through the next homotopy, e.g. transient op).
_ERROR_RE = re.compile(
    r"^\s*error\b|fatal error|simulation\(s\) aborted|simulation interrupted|timestep too small"
    r"|^\s*doanalyses:|no convergence|solution failed|expression err|cannot compute substitute",
    re.IGNORECASE,
)
_CONVERGENCE_RE = re.compile(
    r"timestep too small|convergence|converge|gmin stepping failed|source stepping failed"
    r"|singular matrix|iteration limit|transient op failed|solution failed",
    re.IGNORECASE,
)
_END_RE = re.compile(r"^\s*\.end\s*$", re.IGNORECASE)
_CONTROL_RE = re.compile(r"^\s*\.control\b", re.IGNORECASE | re.MULTILINE)

_PYSPICE_SHARED_LOGGER = "PySpice.Spice.NgSpice.Shared.NgSpiceShared"


@dataclass
class SpiceResult:
    """Plots of one ngspice run, in the order ngspice wrote them, plus the ngspice log.

    Behaves like the list of plots (``len``, indexing, iteration). `retried` says whether the
    convergence retry was needed.
    """

    plots: list[RawPlot]
    log: str = field(repr=False, default="")
    retried: bool = False

    def __len__(self) -> int:
        return len(self.plots)

    def __getitem__(self, i: int) -> RawPlot:
        return self.plots[i]

    def __iter__(self):
        return iter(self.plots)

    def plot(self, plotname: str) -> RawPlot:
        """First plot whose plotname starts with `plotname` (case-insensitive), e.g.
        ``"Operating Point"``, ``"DC transfer"``, ``"Transient"``, ``"AC"``."""
        for p in self.plots:
            if p.plotname.lower().startswith(plotname.lower()):
                return p
        names = ", ".join(p.plotname for p in self.plots) or "none"
        raise CircuitnnError(f"no plot named '{plotname}' in ngspice result (plots: {names})")


class _RunFailed(Exception):
    """Internal: one attempt failed; carries the one-line reason and whether to retry."""

    def __init__(self, reason: str, convergence: bool):
        super().__init__(reason)
        self.reason = reason
        self.convergence = convergence


def ngspice_available() -> bool:
    """True if the ngspice executable is on PATH."""
    return shutil.which("ngspice") is not None


def with_options(netlist: str, options_line: str) -> str:
    """Insert `options_line` before the netlist's final ``.end`` (or append it if none)."""
    lines = netlist.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if _END_RE.match(lines[i]):
            return "\n".join(lines[:i] + [options_line] + lines[i:]) + "\n"
    return "\n".join(lines + [options_line, ".end"]) + "\n"


def _check_log(log: str) -> None:
    """Raise _RunFailed at the first fatal line of an ngspice log (with its netlist line no.)."""
    lines = [" ".join(ln.split()) for ln in log.splitlines()]
    lines = [ln for ln in lines if ln]
    for i, line in enumerate(lines):
        if _ERROR_RE.search(line):
            if i > 0 and lines[i - 1].lower().startswith("netlist line no"):
                line = f"{lines[i - 1]} {line}"
            if line.endswith(":") and i + 1 < len(lines):  # e.g. "Error on line 3 ...: <line>"
                line = f"{line} {lines[i + 1]}"
            raise _RunFailed(line, _is_convergence_failure(log))


def _is_convergence_failure(log: str) -> bool:
    return bool(_CONVERGENCE_RE.search(log))


# ----------------------------------------------------------------------------- subprocess


# the ngspice processes running now (in any thread), so that an interrupt ends them at once
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def run_parallel(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`fn` over `items` in `workers` threads, each running ngspice; an interrupt (Ctrl-C in the
    calling thread) kills the runs under way and skips the rest, so it is raised at once."""
    pool = ThreadPoolExecutor(workers)
    try:
        return list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        with _LIVE_LOCK:
            _STOPPING.set()
            running = list(_LIVE)
        for proc in running:
            _kill_group(proc)
        raise
    finally:
        pool.shutdown(wait=True)
        _STOPPING.clear()


def _run_subprocess(netlist: str, timeout: float, workdir: str | None) -> tuple[list[RawPlot], str]:
    exe = shutil.which("ngspice")
    if exe is None:
        raise CircuitnnError(INSTALL_HINT)
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
    rundir = os.path.abspath(tempfile.mkdtemp(prefix="circuitnn-ngspice-", dir=workdir))
    try:
        cir = os.path.join(rundir, "in.cir")
        raw = os.path.join(rundir, "out.raw")
        with open(cir, "w") as fh:
            fh.write(netlist if netlist.endswith("\n") else netlist + "\n")
        with _LIVE_LOCK:  # (an interrupt in another thread ends every run: none may start)
            if _STOPPING.is_set():
                raise _RunFailed("interrupted", False)
            proc = subprocess.Popen(
                [exe, "-b", "-r", raw, cir],
                cwd=rundir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _LIVE.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise _RunFailed(f"timed out after {timeout:g} s (ngspice killed)", False) from None
        except BaseException:  # Ctrl-C: ngspice runs in its own session, so end it here
            _kill_group(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        log = out.decode("utf-8", errors="replace")
        if workdir is not None:
            with open(os.path.join(rundir, "ngspice.log"), "w") as fh:
                fh.write(log)
        _check_log(log)
        if proc.returncode != 0:
            tail = [ln.strip() for ln in log.splitlines() if ln.strip()]
            why = tail[-1] if tail else "no output"
            raise _RunFailed(
                f"ngspice exited with code {proc.returncode}: {why}", _is_convergence_failure(log)
            )
        if not os.path.exists(raw) or os.path.getsize(raw) == 0:
            raise _RunFailed("ngspice wrote no raw file (no analysis in the netlist?)", False)
        return read_raw(raw), log
    finally:
        if workdir is None:
            shutil.rmtree(rundir, ignore_errors=True)


# ----------------------------------------------------------------------------- shared library


class _DropVersionWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unsupported Ngspice version")


def silence_pyspice_version_warning() -> None:
    """Drop PySpice 1.5's harmless "Unsupported Ngspice version 39" log message."""
    logger = logging.getLogger(_PYSPICE_SHARED_LOGGER)
    if not any(isinstance(f, _DropVersionWarning) for f in logger.filters):
        logger.addFilter(_DropVersionWarning())


# ngspice vector types (enum simvar_types in ngspice's sim.h)
_SV_VOLTAGE = 3
_SV_CURRENT = 4


def _raw_name(name: str, vtype: int) -> str:
    """Name a shared-library vector the way ngspice's batch raw writer does."""
    low = name.lower()
    if vtype == _SV_CURRENT:
        return f"i({low.replace('#branch', '')})"
    if vtype == _SV_VOLTAGE:
        return low if low.startswith("v(") else f"v({low})"
    return low


class _SharedWorker:
    """One persistent worker process around libngspice; restarted after any failure.

    The worker is a fresh interpreter (``python -m circuitnn.spice._shared_worker``) talking
    over two private pipes, so it never re-imports the caller's main module and libngspice's
    own writes to stdout cannot corrupt the protocol.
    """

    START_TIMEOUT = 120.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "circuitnn.spice._shared_worker", str(req_r), str(rep_w)],
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._proc = proc
        self._send = Connection(req_w, readable=False)
        self._recv = Connection(rep_r, writable=False)
        if not self._recv.poll(self.START_TIMEOUT):
            self.stop()
            raise CircuitnnError(
                f"shared ngspice worker did not start within {self.START_TIMEOUT:g} s"
            )
        try:
            self._recv.recv()
        except (EOFError, OSError):
            self.stop()
            raise CircuitnnError(
                "shared ngspice worker died on start-up (libngspice missing?): "
                "apt-get install -y ngspice libngspice0 libngspice0-dev"
            ) from None

    def stop(self) -> None:
        proc, send, recv = self._proc, self._send, self._recv
        self._proc = self._send = self._recv = None
        if send is not None:
            try:
                send.send(None)
            except (OSError, ValueError):
                pass
            send.close()
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        if recv is not None:
            recv.close()

    def run(self, netlist: str, timeout: float) -> tuple[list[RawPlot], str]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self.stop()
                self._start()
            try:
                self._send.send(netlist)
                if not self._recv.poll(timeout):
                    _kill_group(self._proc)
                    self.stop()
                    raise _RunFailed(
                        f"timed out after {timeout:g} s (ngspice worker killed)", False
                    )
                status, payload, log = self._recv.recv()
            except (EOFError, OSError):
                proc = self._proc
                code = proc.wait(timeout=5) if proc is not None else None
                self.stop()
                raise _RunFailed(
                    f"shared ngspice worker crashed (exit code {code})", False
                ) from None
            try:
                _check_log(log)
                if status != "ok":
                    raise _RunFailed(str(payload), False)
                if not payload:
                    raise _RunFailed(
                        "ngspice produced no plots (no analysis in the netlist?)", False
                    )
            except _RunFailed:
                self.stop()  # libngspice may be left in a bad state: start afresh next time
                raise
            plots = [
                RawPlot(t, p, names, dict(zip(names, arrays, strict=True)))
                for t, p, names, arrays in payload
            ]
            return plots, log


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with start_new_session=True and its children; reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


silence_pyspice_version_warning()
_SHARED = _SharedWorker()
atexit.register(_SHARED.stop)


def shutdown_shared_worker() -> None:
    """Stop the shared-library worker process (it is restarted on the next shared run)."""
    _SHARED.stop()


# ----------------------------------------------------------------------------- public entry


def run_netlist(
    netlist: str,
    *,
    backend: str = "subprocess",
    timeout: float = 300,
    name: str = "netlist",
    workdir: str | None = None,
    retry: bool = True,
) -> SpiceResult:
    """Simulate a complete netlist (title line first, ``.end`` last) and return its plots.

    backend: ``"subprocess"`` (ngspice executable, batch mode) or ``"shared"`` (libngspice in a
    worker process; ``.control`` blocks are not supported there). timeout: seconds per attempt.
    name: used in error messages. workdir: if given, each run's directory (``in.cir``,
    ``out.raw``, ``ngspice.log``) is created inside it and kept; otherwise a temporary one is
    removed. retry: after a convergence failure, run once more with CONVERGENCE_OPTIONS added.
    """
    if backend not in ("subprocess", "shared"):
        raise CircuitnnError(f"unknown ngspice backend '{backend}' (use 'subprocess' or 'shared')")
    if not isinstance(netlist, str) or not netlist.strip():
        raise CircuitnnError(f"netlist '{name}' is empty")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise CircuitnnError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not ngspice_available():
        raise CircuitnnError(INSTALL_HINT)
    if backend == "shared" and _CONTROL_RE.search(netlist):
        raise CircuitnnError(
            f"netlist '{name}' has a .control block: use backend='subprocess' for it"
        )

    def attempt(text: str) -> tuple[list[RawPlot], str]:
        if backend == "subprocess":
            return _run_subprocess(text, timeout, workdir)
        return _SHARED.run(text, timeout)

    try:
        plots, log = attempt(netlist)
        return SpiceResult(plots, log, retried=False)
    except _RunFailed as first:
        if not (retry and first.convergence):
            raise CircuitnnError(f"ngspice failed on netlist '{name}': {first.reason}") from None
    try:
        plots, log = attempt(with_options(netlist, CONVERGENCE_OPTIONS))
    except _RunFailed as second:
        raise CircuitnnError(
            f"ngspice failed on netlist '{name}' (also with gmin/source-stepping retry): "
            f"{second.reason}"
        ) from None
    return SpiceResult(plots, log, retried=True)


# ----------------------------------------------------------------------------- batched DC


def dc_batch_lines(
    inputs: Sequence[tuple[str, str, str]],
    values: np.ndarray,
    *,
    index: str = "batch_idx",
) -> list[str]:
    """Netlist lines that solve the DC point of M input vectors in ONE ngspice run.

    inputs: one ``(name, pos_node, neg_node)`` per input voltage; each becomes a behavioural
    source ``B<name> pos neg V = pwl(v(<index>), 0, x0, 1, x1, ...)`` (its current is the
    vector ``i(b<name>)``). values: array of shape (M, len(inputs)). A voltage source
    ``V<index>`` on node `index` is swept ``.dc V<index> 0 M-1 1``, so sweep point m of the
    "DC transfer characteristic" plot is the DC solution for row m (its scale is 0..M-1).
    Each point starts Newton from the previous solution and the circuit is parsed once; this
    was the fastest of the batch methods measured (1000 vectors, 64-node resistor network:
    ~0.05 s, against ~0.2 s for a PWL transient, ~0.5 s for a ``.control`` alter/op loop and
    ~8 s for separate runs).
    """
    safe_name(index, "batch index node")
    vals = np.asarray(values, dtype=float)
    if vals.ndim != 2 or vals.shape[1] != len(inputs) or vals.shape[0] < 1:
        raise CircuitnnError(
            f"batch values must have shape (M >= 1, {len(inputs)}), got {vals.shape}"
        )
    m = vals.shape[0]
    lines = [f"V{index} {index} 0 DC 0"]
    for j, item in enumerate(inputs):
        if len(item) != 3:
            raise CircuitnnError(f"batch input {j} must be (name, pos_node, neg_node)")
        name = safe_name(item[0], f"batch input {j} name")
        pos, neg = (safe_node(x, f"batch input {j} node") for x in item[1:])
        col = [fmt(v, f"batch value [{r}, {j}]") for r, v in enumerate(vals[:, j])]
        if m == 1:
            col = col * 2  # pwl needs two points
        pairs = ", ".join(f"{r}, {v}" for r, v in enumerate(col))
        lines.append(f"B{name} {pos} {neg} V = pwl(v({index}), {pairs})")
    lines.append(f".dc V{index} 0 {m - 1} 1")
    return lines

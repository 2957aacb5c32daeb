"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops work within 5 s and
leaves no temporary or partial file; a killed writer's temporary file is removed by the next
write of the same target."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitnn.io import atomic_path, write_text

#: two threads each running a long ngspice transient (as the fit's ngspice check does)
SLOW_NGSPICE = """
import sys
from circuitnn.spice.runner import run_netlist, run_parallel
NET = "* slow\\nV1 a 0 SIN(0 1 1k)\\nR1 a b 1k\\nC1 b 0 1u\\n.tran 1n 200m\\n.end\\n"
def one(i):
    try:
        run_netlist(NET, timeout=300, name=f"slow{i}", workdir=sys.argv[1])
    except Exception:
        pass
run_parallel(one, range(4), 2)
"""


def _as_a_shell_starts_it() -> None:
    """In the child before exec: SIGINT at its default and not blocked, as a shell starts a
    foreground command. Both are inherited through exec, and the test worker's may have been
    changed by a library (a child that inherits SIGINT ignored or blocked never sees Ctrl-C)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_as_a_shell_starts_it, **kw)


def _interrupt(proc: subprocess.Popen) -> tuple[float, str]:
    """Ctrl-C to the process group; (seconds until it exited, its stderr)."""
    t0 = time.perf_counter()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return time.perf_counter() - t0, err


def _wait_for(condition, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the run never reached the point to interrupt"
        time.sleep(0.2)


def _running_in(folder: Path) -> list[str]:
    """Command lines of the processes whose command line names `folder`."""
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in text:
            out.append(text)
    return out


@pytest.mark.ngspice
def test_ngspice_runs_in_threads_end_at_ctrl_c(tmp_path):
    proc = _start([sys.executable, "-c", SLOW_NGSPICE, str(tmp_path)])
    _wait_for(lambda: len(_running_in(tmp_path / "circuitnn-ngspice-")) >= 2)
    seconds, _ = _interrupt(proc)
    assert seconds < 5 and proc.returncode != 0
    time.sleep(0.5)
    assert _running_in(tmp_path / "circuitnn-ngspice-") == []  # no ngspice left running


@pytest.mark.slow
def test_a_command_stops_within_5_s_and_leaves_no_temporary(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out" / "card.json"
    proc = _start([sys.executable, "-m", "circuitnn.cli", "surrogate", "fit", "--rows", "32",
                   "--cols", "8", "--tiles", "40", "--check-tiles", "0", "--work-dir",
                   str(work), "--out", str(out)])
    _wait_for(lambda: any(work.glob("train/*.npz")))  # Dask workers are solving tiles
    seconds, err = _interrupt(proc)
    assert seconds < 5 and proc.returncode == 130
    assert err.replace("\r", "\n").strip().splitlines()[-1] == "circuitnn: interrupted"
    assert not out.exists()
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary file anywhere
    assert _running_in(work) == []  # no worker left behind


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "fit [1].png"
    code = ("import sys, time\nfrom circuitnn.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    print(tmp, flush=True)\n    time.sleep(120)\n")
    proc = _start([sys.executable, "-c", code, str(target)])
    left = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait()
    assert left.exists() and not target.exists()  # what a kill leaves: a 0-byte temporary
    with atomic_path(target) as mine:  # a live writer's temporary is never touched
        write_text(target, "again")
        assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]

"""Worker process around libngspice (PySpice ``NgSpiceShared``), used by the "shared" backend.

Started by :mod:`circuitnn.spice.runner` as ``python -m circuitnn.spice._shared_worker R W``
with two inherited pipe file descriptors (R: requests in, W: replies out). Each request is a
netlist string (or None to quit); each reply is ``(status, payload, log)`` where payload is a
list of ``(title, plotname, vector_names, arrays)`` with names as in ngspice raw files.
Running in its own process means a crash or hang of the non-re-entrant library cannot take the
caller down: the parent kills and restarts this process.
"""

from __future__ import annotations

import logging
import sys
from multiprocessing.connection import Connection

import numpy as np

from circuitnn.spice.runner import (
    _check_log,
    _raw_name,
    _RunFailed,
    silence_pyspice_version_warning,
)


def _serve(requests: Connection, replies: Connection) -> None:
    silence_pyspice_version_warning()
    # Everything ngspice prints is captured via send_char; keep PySpice's own echo quiet.
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import FFI, NgSpiceShared, ffi, ffi_string_utf8

    class _Capture(NgSpiceShared):
        def __init__(self, *args, **kwargs):
            self.captured: list[str] = []
            super().__init__(*args, **kwargs)

        def send_char(self, message, ngspice_id):
            _, _, content = message.partition(" ")  # strip the "stdout"/"stderr" prefix
            self.captured.append(content)
            return 0

    ng = _Capture.new_instance()
    lib = ng._ngspice_shared

    def command(text: str) -> None:
        lib.ngSpice_Command(text.encode("ascii"))

    def plot_titles() -> dict[str, tuple[str, str]]:
        """Map plot id (e.g. "dc1") to (title, plotname) from the `setplot` listing."""
        ng.captured.clear()
        command("setplot")
        titles = {}
        for line in ng.captured:
            parts = line.strip().split(None, 1)
            if parts and parts[0] == "Current":
                parts = parts[1].split(None, 1) if len(parts) > 1 else []
            if len(parts) == 2:
                title, _, pname = parts[1].rpartition(" (")
                titles[parts[0]] = (title, pname.rstrip(")"))
        return titles

    def collect() -> list[tuple[str, str, list[str], list[np.ndarray]]]:
        ids = [p for p in ng.plot_names if p != "const"][::-1]  # oldest first, as in raw files
        titles = plot_titles() if ids else {}
        plots = []
        for pid in ids:
            vecs_c = lib.ngSpice_AllVecs(pid.encode())
            vnames = []
            i = 0
            while vecs_c[i] != FFI.NULL:
                vnames.append(ffi_string_utf8(vecs_c[i]))
                i += 1
            names, arrays = [], []
            for vname in vnames[::-1]:  # AllVecs lists newest first; raw files oldest first
                info = lib.ngGet_Vec_Info(f"{pid}.{vname}".encode())
                n = info.v_length
                if info.v_compdata == FFI.NULL:
                    buf = ffi.buffer(info.v_realdata, n * 8)
                    arr = np.frombuffer(buf, dtype=np.float64).copy()
                else:
                    buf = ffi.buffer(info.v_compdata, n * 16)
                    ri = np.frombuffer(buf, dtype=np.float64)
                    arr = ri[0::2] + 1j * ri[1::2]
                    if vname.lower() == "frequency":  # a real scale (see raw.py)
                        arr = arr.real.copy()
                names.append(_raw_name(vname, info.v_type))
                arrays.append(arr)
            title, long_name = titles.get(pid, ("", pid))
            plots.append((title, long_name, names, arrays))
        return plots

    replies.send(("ready", None, ""))
    while True:
        try:
            netlist = requests.recv()
        except EOFError:
            break
        if netlist is None:
            break
        ng.captured.clear()
        command("destroy all")
        lines = [ln for ln in netlist.splitlines() if ln.strip()] + [""]
        keep = [ffi.new("char[]", ln.encode("utf-8")) for ln in lines] + [FFI.NULL]
        lib.ngSpice_Circ(ffi.new("char *[]", keep))
        try:
            _check_log("\n".join(ng.captured))
        except _RunFailed:
            # Do not simulate a netlist that failed to load; the parent restarts this worker.
            replies.send(("ok", [], "\n".join(ng.captured)))
            continue
        command("run")
        log = "\n".join(ng.captured)
        try:
            plots = collect()
        except Exception as exc:  # report instead of dying silently
            replies.send(("error", f"reading vectors failed: {exc}", log))
            continue
        command("remcirc")
        command("destroy all")
        replies.send(("ok", plots, log))


def main(argv: list[str]) -> int:
    requests = Connection(int(argv[0]), writable=False)
    replies = Connection(int(argv[1]), readable=False)
    _serve(requests, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

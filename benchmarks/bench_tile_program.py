"""Benchmark: ngspice programming-transient time vs time step and tile size; figure of a pulse.

Times one SET pulse (`circuitnn.tile.program.program_pulse`, selected row and column dynamic) on
N x N tiles (N = 8, 16, 32) at maximum time steps dt = 0.5, 1, 2, 5 ns, fits
time ~ c * cells^a * steps^b by least squares on logs, prints a markdown table, times the
every-cell-dynamic netlist at 2 ns for comparison and writes benchmarks/results/tile_program.json.
Also draws figures/program_transient.png: the selected
cell's current and state during a SET pulse, the state of the selected, a half-selected and an
unselected cell during a strong RESET pulse, the tile's conductance change, and a write-verify
trace toward a target.

Run: .venv/bin/python benchmarks/bench_tile_program.py [--sizes 8 16 32] [--dts 0.5 1 2 5]
     [--no-figure] [--figure-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from circuitnn.devices import builtin_card
from circuitnn.io import save_figure, write_json
from circuitnn.tile.program import program_pulse, write_verify_cell
from circuitnn.tile.spec import TileSpec

ROOT = Path(__file__).resolve().parents[1]
CARD = builtin_card()


def tile(n: int, g: float = 20e-6) -> TileSpec:
    return TileSpec(conductance=np.full((n, n), g), device=CARD)


def bench(sizes: list[int], dts: list[float], dynamic: str = "cross") -> list[dict]:
    rows = []
    for n in sizes:
        spec = tile(n)
        for dt in dts:
            t0 = time.perf_counter()
            r = program_pulse(spec, n // 2, n // 2, kind="set", v_pulse=2.5, v_gate=1.8,
                              dt=dt * 1e-9, dynamic=dynamic)
            sec = time.perf_counter() - t0
            rows.append({"n": n, "cells": n * n, "dt_ns": dt, "dynamic": dynamic,
                         "steps": int(r.t.size), "seconds": sec,
                         "g_after_uS": float(r.g_after[n // 2, n // 2] * 1e6)})
            print(f"  {n}x{n} dt={dt} ns {dynamic}: {sec:.2f} s ({r.t.size} points)",
                  file=sys.stderr)
    return rows


def fit_exponents(rows: list[dict]) -> dict[str, float]:
    """Least-squares fit of log t = log c + a log cells + b log steps."""
    a = np.array([[1.0, np.log(r["cells"]), np.log(r["steps"])] for r in rows])
    y = np.log([r["seconds"] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    return {"c": float(np.exp(coef[0])), "cells_exponent": float(coef[1]),
            "steps_exponent": float(coef[2]),
            "rms_log_residual": float(np.sqrt(np.mean(resid ** 2)))}


def table(rows: list[dict], sizes: list[int], dts: list[float]) -> str:
    head = "| tile | " + " | ".join(f"dt = {d:g} ns" for d in dts) + " |"
    sep = "|---|" + "---|" * len(dts)
    lines = [head, sep]
    for n in sizes:
        cells = [next(r for r in rows if r["n"] == n and r["dt_ns"] == d) for d in dts]
        lines.append(f"| {n}x{n} | " + " | ".join(
            f"{c['seconds']:.2f} s ({c['steps']} pts)" for c in cells) + " |")
    return "\n".join(lines)


def figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    # (a) SET pulse on an 8x8 tile: selected cell's current and state
    spec = tile(8)
    s = program_pulse(spec, 3, 4, kind="set", v_pulse=2.5, v_gate=1.8, dt=1e-9)
    a = ax[0, 0]
    a.plot(s.t * 1e9, s.i_cell * 1e3, color="C0")
    a.set_xlabel("time (ns)")
    a.set_ylabel("selected cell current (mA)", color="C0")
    a2 = a.twinx()
    a2.plot(s.t * 1e9, s.states_t[3, 4] * 1e9, color="C3")
    a2.set_ylabel("filament gap (nm)", color="C3")
    a.set_title(f"SET 2.5 V, gate 1.8 V: G {s.g_before[3, 4] * 1e6:.0f} -> "
                f"{s.g_after[3, 4] * 1e6:.0f} uS")
    # (b) strong RESET with V/2 inhibit: selected vs half-selected vs unselected states
    spec = tile(8, 50e-6)
    r = program_pulse(spec, 3, 4, kind="reset", v_pulse=2.8, v_gate=3.6, dt=1e-9)
    b = ax[0, 1]
    for (i, j), lab in (((3, 4), "selected (3,4)"), ((3, 0), "half-selected (3,0)"),
                        ((0, 4), "same column, gate off (0,4)"), ((6, 1), "unselected (6,1)")):
        b.plot(r.t * 1e9, r.states_t[i, j] * 1e9, label=lab)
    b.set_xlabel("time (ns)")
    b.set_ylabel("filament gap (nm)")
    b.set_title("RESET 2.8 V, gate 3.6 V, V/2 inhibit")
    b.legend(fontsize=8)
    # (c) relative conductance change of every cell after that RESET
    c = ax[1, 0]
    im = c.imshow((r.g_after - r.g_before) / r.g_before * 100, cmap="coolwarm_r", vmin=-100,
                  vmax=100)
    c.set_title("RESET: conductance change (%) per cell")
    c.set_xlabel("column (source line)")
    c.set_ylabel("row (bit line)")
    fig.colorbar(im, ax=c)
    # (d) write-verify toward two targets
    d = ax[1, 1]
    for g0, tgt, col in ((20e-6, 80e-6, "C0"), (150e-6, 40e-6, "C1")):
        w = write_verify_cell(tile(4, g0), 1, 2, tgt, tol=0.05, max_pulses=25)
        k = np.arange(w.g_trace.size)
        d.plot(k, w.g_trace * 1e6, "-", color=col, alpha=0.6)
        kinds = np.array(["start", *w.kinds])
        for kind, mk in (("start", "o"), ("set", "^"), ("reset", "v")):
            sel = kinds == kind
            d.plot(k[sel], w.g_trace[sel] * 1e6, mk, color=col, ls="none")
        d.axhspan(tgt * 0.95e6, tgt * 1.05e6, color=col, alpha=0.15)
        d.annotate(f"{'done' if w.success else 'failed'} in {w.n_pulses} pulses",
                   (k[-1], w.g_trace[-1] * 1e6), fontsize=8, xytext=(4, 4),
                   textcoords="offset points")
    d.set_xlabel("pulse number (^ SET, v RESET)")
    d.set_ylabel("read-back conductance (uS)")
    d.set_title("write-verify, target band +-5 %")
    fig.suptitle("1T1R programming transients (ngspice, built-in HfOx card)")
    fig.tight_layout()
    save_figure(fig, path)
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--dts", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--figure-only", action="store_true")
    args = p.parse_args()
    if not args.figure_only:
        rows = bench(args.sizes, args.dts)
        fit = fit_exponents(rows)
        print(table(rows, args.sizes, args.dts))
        print(f"\nfit: time ~ {fit['c']:.3g} s * cells^{fit['cells_exponent']:.2f} * "
              f"steps^{fit['steps_exponent']:.2f} (rms log residual "
              f"{fit['rms_log_residual']:.2f}); load average {os.getloadavg()[0]:.1f}")
        full = bench(args.sizes, [2.0], dynamic="all")
        print("\nevery cell dynamic, dt = 2 ns: " + ", ".join(
            f"{r['n']}x{r['n']} {r['seconds']:.2f} s" for r in full))
        write_json(ROOT / "benchmarks" / "results" / "tile_program.json",
                   {"runs": rows, "fit": fit, "all_dynamic_dt2ns": full,
                    "loadavg_1min": os.getloadavg()[0]})
    if not args.no_figure:
        figure(ROOT / "figures" / "program_transient.png")


if __name__ == "__main__":
    main()

"""Benchmark of tile reads: the nodal solver against ngspice, side by side in one run.

Each case builds its TileSpec once and times its preparation (the card's state inversion and
switching threshold, cached on the spec and shared by both engines), then times
`read(spec, V, engine=...)` for each engine: the best of `--repeats` runs (one run where a read
takes longer than 10 s; other jobs on the machine only ever add time), with the agreement of the
two engines. Cases: 1T1R tiles of the built-in
Stanford-PKU card (inputs 0 / 0.2 V) from 4 x 4 to 64 x 64, 128 x 16 with 1 and 16 vectors, a
16 x 8 tile of the fitted Yakopcic card (inputs 0 / 0.05 V, below its ~0.12 V switching
threshold), and 128 x 128 with the nodal solver alone (ngspice takes ~300 s there). Then the cost
per vector of batched reads on 128 x 16 and the ngspice batching methods (pwl B-sources on a
swept index vs a .control loop of alter + op).

Prints markdown tables and writes benchmarks/results/tile_read.json.
Run: .venv/bin/python benchmarks/bench_tile_read.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, builtin_card  # noqa: E402
from circuitnn.io import write_json  # noqa: E402
from circuitnn.spice import fmt  # noqa: E402
from circuitnn.tile import TileSpec, read  # noqa: E402
from circuitnn.tile.netlist import (  # noqa: E402
    circuit_lines,
    driver_node,
    options_line,
    output_vectors,
)

OUT = ROOT / "benchmarks" / "results" / "tile_read.json"
YAKOPCIC = DEVICE_MODELS_DIR / "knowm-m1-yakopcic.json"
# (label, rows, cols, vectors, card, read voltage, with ngspice)
CASES = [
    ("4x4", 4, 4, 1, "pku", 0.2, True),
    ("8x8", 8, 8, 1, "pku", 0.2, True),
    ("16x16", 16, 16, 1, "pku", 0.2, True),
    ("16x8 Yakopcic card", 16, 8, 1, "yakopcic", 0.05, True),
    ("32x32", 32, 32, 1, "pku", 0.2, True),
    ("64x64", 64, 64, 1, "pku", 0.2, True),
    ("128x16", 128, 16, 1, "pku", 0.2, True),
    ("128x16, batch of 16", 128, 16, 16, "pku", 0.2, True),
    ("128x128", 128, 128, 1, "pku", 0.2, False),
]
BATCHES = [1, 10, 100, 1000]
SLOW = 10.0  # s: measure once when a read takes longer than this


def card_of(name: str) -> ModelCard:
    return builtin_card() if name == "pku" else ModelCard.load(YAKOPCIC)


def conductances(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(5e-6, 20e-6, (rows, cols))


def inputs(rows: int, batch: int, v_read: float, seed: int = 1) -> np.ndarray:
    return v_read * np.random.default_rng(seed).integers(0, 2, (batch, rows))


def prepared(g: np.ndarray, card: ModelCard) -> tuple[TileSpec, float]:
    """A TileSpec with its cached card-dependent properties computed, and the time that took."""
    t = time.perf_counter()
    spec = TileSpec(g, device=card)
    _ = spec.states, spec.disturb_voltage
    return spec, time.perf_counter() - t


def timed_read(spec: TileSpec, v: np.ndarray, engine: str, repeats: int):
    """(best time in seconds, currents) of reads of a prepared tile."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = read(spec, v, engine=engine)
        times.append(time.perf_counter() - t)
        if times[-1] > SLOW:
            break
    return min(times), out


def peak_memory_mb(spec: TileSpec, v: np.ndarray, engine: str) -> float:
    """Peak memory of one read (MB): traced Python allocations (numpy included) for the nodal
    solver, the largest resident set of any ngspice child so far for ngspice."""
    if engine == "ngspice":
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    tracemalloc.start()
    read(spec, v, engine=engine)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    ng = subprocess.run(["ngspice", "-v"], capture_output=True, text=True).stdout.splitlines()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": __import__("scipy").__version__,
            "ngspice": next((x.strip("* ").split(":")[0].strip() for x in ng if "ngspice-" in x),
                            "?"),
            "load_average_start": os.getloadavg()}


def compare(repeats: int) -> list[dict]:
    rows = []
    for label, r, c, b, card_name, vr, with_ng in CASES:
        spec, t_prep = prepared(conductances(r, c), card_of(card_name))
        v = inputs(r, b, vr)
        t_nd, i_nd = timed_read(spec, v, "nodal", repeats)
        row = {"case": label, "rows": r, "cols": c, "vectors": b, "spec_prep_s": t_prep,
               "nodal_s": t_nd, "nodal_peak_mb": peak_memory_mb(spec, v, "nodal")}
        if with_ng:
            t_ng, i_ng = timed_read(spec, v, "ngspice", repeats)
            row |= {"ngspice_s": t_ng, "ratio": t_ng / t_nd,
                    "ratio_with_prep": (t_ng + t_prep) / (t_nd + t_prep),
                    "ngspice_peak_rss_mb": peak_memory_mb(spec, v, "ngspice"),
                    "max_rel_diff": float(np.max(np.abs(i_nd - i_ng) / np.abs(i_ng)))}
        rows.append(row)
        print(f"  {label}: {row}", file=sys.stderr)
    return rows


def exponents(rows: list[dict]) -> dict:
    """Fitted a in time ~ cells^a over the one-vector Stanford-PKU cases of both engines."""
    sel = [r for r in rows if r["vectors"] == 1 and "ngspice_s" in r and "Yakopcic" not in
           r["case"]]
    cells = np.log([r["rows"] * r["cols"] for r in sel])
    return {eng: float(np.polyfit(cells, np.log([r[f"{eng}_s"] for r in sel]), 1)[0])
            for eng in ("ngspice", "nodal")}


def batches(quick: bool, repeats: int) -> list[dict]:
    spec, _ = prepared(conductances(128, 16), builtin_card())
    out = []
    for b in BATCHES[:3] if quick else BATCHES:
        v = inputs(128, b, 0.2)
        row = {"vectors": b}
        for eng in ("ngspice", "nodal"):
            row[f"{eng}_ms_per_vector"] = 1e3 * timed_read(spec, v, eng, repeats)[0] / b
        out.append(row)
        print(f"  batch {b}: {row}", file=sys.stderr)
    return out


def alter_loop_netlist(spec: TileSpec, v: np.ndarray) -> str:
    """The alternative batching method: DC sources changed with `alter`, one `op` per vector."""
    lines = ["* alter-loop batch read", *circuit_lines(spec)]
    lines += [f"Vin{i} {driver_node(spec, i)} 0 DC 0" for i in range(spec.rows)]
    lines += [options_line(spec), ".control", "set noaskquit"]
    for b, row in enumerate(v):
        lines += [f"alter Vin{i} dc = {fmt(float(x))}" for i, x in enumerate(row)]
        lines += ["op", f"let out{b} = {output_vectors(spec)[0]}"]
    lines += ["quit", ".endc", ".end"]
    return "\n".join(lines) + "\n"


def batching_methods(quick: bool) -> dict:
    spec = TileSpec(conductances(128, 16), device=builtin_card())
    n_alter = 20 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "alter.cir")
        with open(path, "w") as fh:
            fh.write(alter_loop_netlist(spec, inputs(128, n_alter, 0.2)))
        t0 = time.perf_counter()
        proc = subprocess.run(["ngspice", "-b", path], capture_output=True, text=True, cwd=tmp,
                              timeout=900)
        if proc.returncode != 0 or "error" in proc.stdout.lower():
            raise SystemExit(f"alter loop failed: {proc.stdout[-300:]}")
    t_alter = (time.perf_counter() - t0) / n_alter
    t0 = time.perf_counter()
    read(spec, inputs(128, 10 * n_alter, 0.2), engine="ngspice")
    t_pwl = (time.perf_counter() - t0) / (10 * n_alter)
    return {"pwl_dc_sweep_ms_per_vector": 1e3 * t_pwl, "pwl_vectors": 10 * n_alter,
            "alter_op_ms_per_vector": 1e3 * t_alter, "alter_vectors": n_alter}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batch and batching-method runs")
    ap.add_argument("--repeats", type=int, default=5, help="runs per case (best)")
    args = ap.parse_args()
    info = machine()
    for eng in ("nodal", "ngspice"):  # warm-up: imports, compiled card expressions, page cache
        for card in ("pku", "yakopcic"):
            read(TileSpec(conductances(4, 4), device=card_of(card)), inputs(4, 1, 0.05), engine=eng)
    cmp_rows = compare(args.repeats)
    slopes = exponents(cmp_rows)
    batch_rows = batches(args.quick, args.repeats)
    methods = batching_methods(args.quick)
    info["load_average_end"] = os.getloadavg()
    write_json(OUT, {"machine": info, "command": " ".join(["benchmarks/bench_tile_read.py",
                                                           *sys.argv[1:]]),
                     "nodal_vs_ngspice": cmp_rows, "exponent_vs_cells": slopes,
                     "batches_128x16": batch_rows,
                     "ngspice_batching": methods})

    print(f"\nMachine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, numpy "
          f"{info['numpy']}, scipy {info['scipy']}, {info['ngspice']}; load average "
          f"{info['load_average_start'][0]:.1f} -> {info['load_average_end'][0]:.1f}")
    print("\n### Nodal vs ngspice, one read of a prepared tile (best of runs)\n")
    print("| tile | vectors | ngspice (s) | nodal (s) | ngspice / nodal | tile preparation (s) "
          "| ratio with preparation | max rel. difference | peak MB ngspice / nodal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in cmp_rows:
        if "ngspice_s" in r:
            print(f"| {r['case']} | {r['vectors']} | {r['ngspice_s']:.3f} | {r['nodal_s']:.4f} | "
                  f"{r['ratio']:.1f}x | {r['spec_prep_s']:.4f} | {r['ratio_with_prep']:.1f}x | "
                  f"{r['max_rel_diff']:.1e} | "
                  f"{r['ngspice_peak_rss_mb']:.0f} / {r['nodal_peak_mb']:.2f} |")
        else:
            print(f"| {r['case']} | {r['vectors']} | not run | {r['nodal_s']:.4f} | - | "
                  f"{r['spec_prep_s']:.4f} | - | - | - / {r['nodal_peak_mb']:.2f} |")
    print(f"\ntime ~ cells^a over the one-vector cases from 4x4 to 128x16: ngspice a = "
          f"{slopes['ngspice']:.2f}, nodal a = {slopes['nodal']:.2f}")
    print("\n### Cost per vector of batched reads, 128 x 16 tile\n")
    print("| batch | ngspice (ms/vector) | nodal (ms/vector) | ngspice / nodal |")
    print("|---|---|---|---|")
    for r in batch_rows:
        ng, nd = r["ngspice_ms_per_vector"], r["nodal_ms_per_vector"]
        print(f"| {r['vectors']} | {ng:.2f} | {nd:.3f} | {ng / nd:.0f}x |")
    print("\n### ngspice batching method, 128 x 16\n")
    print("| method | ms/vector |")
    print("|---|---|")
    print(f"| pwl B-sources + .dc index sweep ({methods['pwl_vectors']} vectors) | "
          f"{methods['pwl_dc_sweep_ms_per_vector']:.2f} |")
    print(f"| .control alter + op loop ({methods['alter_vectors']} vectors) | "
          f"{methods['alter_op_ms_per_vector']:.2f} |")
    print(f"\nwrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

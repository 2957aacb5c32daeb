"""Benchmark of tile reads: ngspice vs the nodal solver, by tile size and by batch size.

Prints markdown tables: time and peak memory per read vs tile size (batch of 1 and 10 vectors),
cost per vector of batched reads on the 128 x 16 reference tile, fitted scaling exponents, and
the ngspice batching method comparison (pwl B-sources on a swept index vs a .control loop of
alter + op). Peak memory: nodal = tracemalloc peak of the Python process (numpy included);
ngspice = the largest resident set of any ngspice child so far (ru_maxrss of children).
Run: .venv/bin/python benchmarks/bench_tile_read.py [--quick]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from circuitnn.devices import builtin_card
from circuitnn.errors import CircuitnnError
from circuitnn.spice import fmt
from circuitnn.tile import TileSpec, read
from circuitnn.tile.netlist import circuit_lines, driver_node, options_line, output_vectors

SIZES = [(4, 4), (16, 16), (32, 32), (64, 64), (128, 16), (128, 128)]
BATCHES = [1, 10, 100, 1000]
NGSPICE_LIMIT = 60.0  # s: skip larger ngspice runs once a read takes longer than this
NGSPICE_TIMEOUT = 120.0  # s: one ngspice read longer than this is reported as "inf"


def make_spec(rows: int, cols: int, seed: int = 0) -> TileSpec:
    g = np.random.default_rng(seed).uniform(5e-6, 20e-6, (rows, cols))
    return TileSpec(g, device=builtin_card())


def inputs(rows: int, batch: int, seed: int = 1) -> np.ndarray:
    return 0.2 * np.random.default_rng(seed).integers(0, 2, (batch, rows))


def timed(fn, track_memory: bool):
    if track_memory:
        tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] if track_memory else 0
    if track_memory:
        tracemalloc.stop()
    return out, dt, peak


def child_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


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


def main(quick: bool = False) -> None:
    sizes = SIZES[:3] if quick else SIZES
    read(make_spec(4, 4), inputs(4, 1), engine="nodal")  # warm-up (imports, caches)
    rows_out = []
    t_ng: dict[int, float] = {}
    t_nd: dict[int, float] = {}
    skip_ng = False
    for rows, cols in sizes:
        spec = make_spec(rows, cols)
        v = inputs(rows, 1)
        _, dn, mn = timed(lambda s=spec, v=v: read(s, v, engine="nodal"), True)
        t_nd[rows * cols] = dn
        if skip_ng:
            dg, mg = float("nan"), float("nan")
        else:
            try:
                _, dg, _ = timed(lambda s=spec, v=v: read(s, v, engine="ngspice",
                                                         timeout=NGSPICE_TIMEOUT), False)
                mg = child_maxrss_mb()
                t_ng[rows * cols] = dg
            except CircuitnnError:  # timed out: report as not measured
                dg, mg = float("inf"), float("nan")
            skip_ng = dg > NGSPICE_LIMIT
        rows_out.append((f"{rows}x{cols}", dg, mg, dn, mn / 2**20))
        print(f"  {rows}x{cols}: ngspice {dg:.3f} s, nodal {dn:.3f} s", file=sys.stderr)
    print("\n### One read (1 vector) vs tile size (built-in card, 1T1R, defaults)\n")
    print("| tile | ngspice time (s) | ngspice peak RSS (MB) | nodal time (s) | nodal peak (MB) |")
    print("|---|---|---|---|---|")
    for name, dg, mg, dn, mn in rows_out:
        print(f"| {name} | {dg:.3f} | {mg:.0f} | {dn:.3f} | {mn:.1f} |")
    for label, t in (("ngspice", t_ng), ("nodal", t_nd)):
        if len(t) >= 2:
            print(f"\nscaling exponent of {label} time vs cells: "
                  f"{slope(list(t), list(t.values())):.2f}")

    spec = make_spec(128, 16)
    batches = BATCHES[:3] if quick else BATCHES
    per = {"ngspice": [], "nodal": []}
    for b in batches:
        v = inputs(128, b)
        for eng in per:
            _, dt, _ = timed(lambda e=eng, v=v: read(spec, v, engine=e), False)
            per[eng].append(dt / b)
            print(f"  batch {b} {eng}: {dt:.3f} s", file=sys.stderr)
    print("\n### Cost per vector of batched reads, 128 x 16 tile\n")
    print("| batch | ngspice (ms/vector) | nodal (ms/vector) |")
    print("|---|---|---|")
    for k, b in enumerate(batches):
        print(f"| {b} | {1e3 * per['ngspice'][k]:.2f} | {1e3 * per['nodal'][k]:.2f} |")
    for eng, t in per.items():
        tot = [x * b for x, b in zip(t, batches, strict=True)]
        print(f"\nscaling exponent of {eng} total time vs batch: {slope(batches, tot):.2f}")

    n_alter = 20 if quick else 100
    v = inputs(128, n_alter)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "alter.cir")
        with open(path, "w") as fh:
            fh.write(alter_loop_netlist(spec, v))
        t0 = time.perf_counter()
        proc = subprocess.run(["ngspice", "-b", path], capture_output=True, text=True,
                              cwd=tmp, timeout=900)
        if proc.returncode != 0 or "error" in proc.stdout.lower():
            raise SystemExit(f"alter loop failed: {proc.stdout[-300:]}")
    t_alter = (time.perf_counter() - t0) / n_alter
    v = inputs(128, 10 * n_alter)
    t0 = time.perf_counter()
    read(spec, v, engine="ngspice")
    t_pwl = (time.perf_counter() - t0) / (10 * n_alter)
    print("\n### ngspice batching method, 128 x 16\n")
    print("| method | ms/vector |")
    print("|---|---|")
    print(f"| pwl B-sources + .dc index sweep ({10 * n_alter} vectors) | {1e3 * t_pwl:.2f} |")
    print(f"| .control alter + op loop ({n_alter} vectors) | {1e3 * t_alter:.2f} |")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

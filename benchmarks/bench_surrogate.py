"""Surrogate benchmark: accuracy against ngspice on fresh tiles, speed, per-tile precompute.

Run: `.venv/bin/python benchmarks/bench_surrogate.py [--quick]`. Writes
benchmarks/results/surrogate.json, figures/surrogate_parity_*.png and prints a Markdown table.

Accuracy rows: the shipped 128 x 16 card inside its domain (default and other wire
resistances), cards calibrated here for 64 x 64 and 128 x 128, and the 128 x 16 card applied
outside its r range to chart where it stops being valid (such specs are refused by
`read(..., engine="surrogate")`; here the theta is applied directly). Speed, in one run: ngspice
on one batch of 1000 binary input vectors, the surrogate on the same batch (binary and analog),
and the ideal numpy V @ G of the same shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from circuitnn.devices import DEVICE_MODELS_DIR, builtin_card, load_device  # noqa: E402
from circuitnn.io import write_json  # noqa: E402
from circuitnn.surrogate.calibrate import TileSet, calibrate  # noqa: E402
from circuitnn.surrogate.card import SurrogateCard  # noqa: E402
from circuitnn.surrogate.model import SurrogateTile  # noqa: E402
from circuitnn.surrogate.read import read  # noqa: E402
from circuitnn.surrogate.validate import validate  # noqa: E402
from circuitnn.tile.spec import TileSpec  # noqa: E402

SHIPPED = DEVICE_MODELS_DIR / "surrogate-stanford-pku-hfox-128x16.json"
G_RANGE = (load_device().g_range[0] * (1 + 1e-6), 25e-6)  # S: the tiles of BENCHMARKS.md
WORK = Path("/tmp/circuitnn-bench-surrogate")


def best_time(fn, repeat: int = 30, number: int = 5) -> float:
    """Median over `repeat` of the mean time of `number` calls (s)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times)


def speed(card: SurrogateCard, batch: int = 1000, quick: bool = False) -> dict:
    rng = np.random.default_rng(2024)
    g = rng.uniform(*card.domain["conductance"], (128, 16))
    spec = TileSpec(g, device=builtin_card())
    t = time.perf_counter()
    tile = SurrogateTile(spec, card.theta)
    t_program = time.perf_counter() - t
    vb = (rng.random((batch, 128)) < 0.5) * spec.v_read
    va = rng.uniform(0, spec.v_read, (batch, 128))
    n_spice = 100 if quick else batch
    t = time.perf_counter()
    read(spec, vb[:n_spice], engine="ngspice")
    t_spice = (time.perf_counter() - t) / n_spice
    t_ideal = best_time(lambda: vb @ g)
    t_bin = best_time(lambda: tile.read(vb, binary=True))
    t_auto = best_time(lambda: tile.read(vb))
    t_ana = best_time(lambda: tile.read(va, binary=False))
    t_engine = best_time(lambda: read(spec, vb, engine="surrogate"), repeat=10)
    per = {k: v / batch for k, v in (("ideal", t_ideal), ("binary", t_bin), ("auto", t_auto),
                                     ("analog", t_ana), ("engine", t_engine))}
    return {
        "batch": batch, "ngspice_vectors": n_spice, "program_s": t_program,
        "ngspice_per_read_s": t_spice, "per_read_s": per,
        "speedup_vs_ngspice_binary": t_spice / per["binary"],
        "speedup_vs_ngspice_analog": t_spice / per["analog"],
        "slowdown_vs_ideal": {k: per[k] / per["ideal"] for k in ("binary", "auto", "analog",
                                                                   "engine")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer tiles and ngspice vectors")
    args = ap.parse_args()
    nt = 1 if args.quick else 3
    card = SurrogateCard.load(SHIPPED)
    rows: list[dict] = []

    def acc(name: str, sc: SurrogateCard, ts: TileSet, n: int, plot: str | None = None) -> None:
        res = validate(sc, ts, WORK / name, n, plot=ROOT / "figures" / plot if plot else None,
                       timeout=3000.0)
        res["case"] = name
        rows.append(res)
        m = res["surrogate"]
        print(f"{name}: {m}", file=sys.stderr)

    acc("128x16_default_r2", card, TileSet(128, 16, (2.0, 2.0), G_RANGE, n_vectors=64), nt,
        "surrogate_parity_128x16.png")
    acc("128x16_r0-3", card, TileSet(128, 16, (0.0, 3.0), G_RANGE, n_vectors=64), nt)
    acc("128x16_r0.5", card, TileSet(128, 16, (0.5, 0.5), G_RANGE, n_vectors=64), nt)
    for r in (4.0, 6.0, 10.0):  # outside the calibrated range: where validity ends
        acc(f"128x16_r{r:g}_outside", card, TileSet(128, 16, (r, r), G_RANGE, n_vectors=64), nt)
    for shape in ((64, 64), (128, 128)):
        out = WORK / f"surrogate-{shape[0]}x{shape[1]}.json"
        ts = TileSet(shape[0], shape[1], (0.0, 3.0), G_RANGE, n_vectors=32)
        sc = calibrate(ts, out, WORK / f"cal{shape[0]}x{shape[1]}", n_tiles=6 if not args.quick
                       else 3, n_check=0, seed=5)
        # ngspice needs minutes per 128 x 128 read: fewer fresh vectors there
        nv, nvt = (32, max(1, nt - 1)) if shape[0] * shape[1] <= 4096 else (8, 1)
        acc(f"{shape[0]}x{shape[1]}_default_r2", sc, TileSet(shape[0], shape[1], (2.0, 2.0),
                                                          G_RANGE, n_vectors=nv), nvt,
            f"surrogate_parity_{shape[0]}x{shape[1]}.png")
    sp = speed(card, quick=args.quick)
    write_json(ROOT / "benchmarks" / "results" / "surrogate.json", {"accuracy": rows,
                                                                   "speed": sp})
    print("| case | tiles x vectors | ideal dev. RMS % | RMS err % | max err % | captured % | "
          "in domain | meets targets |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["surrogate"]
        print(f"| {r['case']} | {r['tiles']} x {r['vectors'] // r['tiles']} | "
              f"{m['ideal_rms_pct']:.2f} | {m['rms_pct']:.3f} | {m['max_pct']:.3f} | "
              f"{m['captured_pct']:.2f} | {r['in_domain']} | {r['passes']} |")
    print()
    print(json.dumps(sp, indent=2))


if __name__ == "__main__":
    main()

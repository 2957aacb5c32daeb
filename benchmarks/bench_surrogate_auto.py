"""Automatic surrogate calibration (`circuitnn.surrogate.auto.surrogate_for`): wall time of a
cold calibration (nodal tiles on Dask, fit, ngspice validation on fresh tiles) and of the cached
second request, for the Knowm M1 Yakopcic card at the network's tile size.

Run: `.venv/bin/python benchmarks/bench_surrogate_auto.py [--rows 128 --cols 16] [--g-min-uS A
--g-max-uS B]` (default window: the card's default rule). Uses a fresh temporary cache folder
(CIRCUITNN_CACHE), so the first request always calibrates. A request refused by the validation
is timed and recorded too. Appends to benchmarks/results/surrogate_auto.json (one entry per
card, shape and window) and prints a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--card", default="knowm-m1-yakopcic.json", help="card in device_models/")
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--g-min-uS", dest="g_min", type=float, default=None)
    ap.add_argument("--g-max-uS", dest="g_max", type=float, default=None)
    args = ap.parse_args()
    window = None if args.g_min is None else (args.g_min * 1e-6, args.g_max * 1e-6)
    with tempfile.TemporaryDirectory(prefix="circuitnn-cache-") as cache:
        os.environ["CIRCUITNN_CACHE"] = cache
        from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, operating_point
        from circuitnn.errors import CircuitnnError
        from circuitnn.io import write_json
        from circuitnn.surrogate.auto import surrogate_for

        card = ModelCard.load(DEVICE_MODELS_DIR / args.card)
        op = operating_point(card, window=window)
        out = {"card": args.card, "shape": [args.rows, args.cols], "v_read": op.v_read,
               "window_S": list(op.window), "window_rule": op.window_rule,
               "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
        t = time.perf_counter()
        try:
            sc, report = surrogate_for(card, args.rows, args.cols, window=window,
                                       card_name=args.card)
        except CircuitnnError as exc:
            out.update(cold_s=time.perf_counter() - t, refused=str(exc))
        else:
            out["cold_s"] = time.perf_counter() - t
            t = time.perf_counter()
            _, again = surrogate_for(card, args.rows, args.cols, window=window,
                                     card_name=args.card)
            data = sc.provenance["data"]
            out.update(cached_s=time.perf_counter() - t, r_range_ohm=sc.domain["r_row"],
                       calibration_tiles=data["tiles"], vectors_per_tile=data["vectors_per_tile"],
                       calibrated=[report["calibrated"], again["calibrated"]],
                       validation=report["validation"], train_nodal=sc.fit["train_nodal"])
    path = ROOT / "benchmarks" / "results" / "surrogate_auto.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    runs = [r for r in runs if [r["card"], r["shape"], r["window_S"]] !=
            [out["card"], out["shape"], out["window_S"]]] + [out]
    write_json(path, runs)
    w = out["window_S"]
    if "refused" in out:
        result = f"refused: {out['refused'].split(': ', 1)[-1]}"
    else:
        v = out["validation"]
        result = (f"RMS {v['rms_error']:.2%}, max {v['max_error']:.2%} ({v['tiles']} tiles x "
                  f"{v['vectors'] // v['tiles']} vectors); cached request {out['cached_s']:.3f} s")
    print("| card | tile | v_read | window (uS) | automatic calibration (s) | result |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.card} | {args.rows}x{args.cols} | {op.v_read:g} V | "
          f"{w[0] * 1e6:.4g}-{w[1] * 1e6:.4g} | {out['cold_s']:.0f} | {result} |")


if __name__ == "__main__":
    main()

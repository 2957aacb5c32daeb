"""The operating-point search (`circuitnn.search.operating.run_searched`): wall time of the same
search (the card's default candidates x K chips, the reference system `mcnn run`) with 1 and
with 2 Dask worker processes, and the speed-up.

Run: `.venv/bin/python benchmarks/bench_search.py --weights RUN/weights.npz [--card
knowm-m1-vteam.json] [--seeds 3] [--out DIR]`. The pulse laws and the surrogate card are made
once first (a warm-up search whose results are then removed), so both timed searches run the
same tasks from the same caches: each starts from an empty results folder (`--no-warm-up`
when a run of the same card already made them). Appends to
benchmarks/results/search.json and prints a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--card", default="knowm-m1-vteam.json", help="card in device_models/")
    ap.add_argument("--weights", required=True, help="trained cnn5 weights (mcnn run's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder of the runs (default: a temporary one)")
    ap.add_argument("--no-warm-up", dest="warm", action="store_false",
                    help="skip the warm-up search (the laws and surrogate are cached already)")
    args = ap.parse_args()
    from circuitnn.devices import DEVICE_MODELS_DIR
    from circuitnn.io import write_json
    from circuitnn.mcnn.run import MCNN_SALT, McnnConfig
    from circuitnn.search.operating import run_searched

    root = Path(args.out or tempfile.mkdtemp(prefix="circuitnn-search-"))
    cfg = McnnConfig(iv_card=str(DEVICE_MODELS_DIR / args.card), weights=args.weights,
                     n_check=0)
    seconds = {}
    for workers in (2, 1, 2) if args.warm else (1, 2):  # warm-up (laws, surrogate), timed pair
        out = root / f"w{workers}"
        shutil.rmtree(out / "search", ignore_errors=True)
        t0 = time.perf_counter()
        chosen = run_searched(cfg, out, args.seeds, workers, salt=MCNN_SALT)
        seconds[workers] = time.perf_counter() - t0
    cands = chosen.choice["candidates"]
    entry = {"card": args.card, "seeds": args.seeds, "candidates": len(cands),
             "evaluated": sum("reason" not in c for c in cands),
             "seconds_1_worker": seconds[1], "seconds_2_workers": seconds[2],
             "speedup": seconds[1] / seconds[2], "chosen": {
                 k: chosen.choice[k] for k in ("g_window", "scheme", "gate_set", "why")}}
    path = ROOT / "benchmarks" / "results" / "search.json"
    old = json.loads(path.read_text()) if path.is_file() else []
    write_json(path, old + [entry])
    print(f"| {args.card} | {len(cands)} x {args.seeds} | {seconds[1]:.0f} s | "
          f"{seconds[2]:.0f} s | {entry['speedup']:.2f} |")


if __name__ == "__main__":
    main()

"""Benchmark: every shipped I-V card exported both ways and checked in the second simulator.

For each card of `device_models/` with a compact I-V model and each format (spice: ngspice,
verilog-a: VACASK), what `circuitnn export CARD --format F --name dut --out FILE --check --json`
does: export, then `circuitnn.fitting.export_check.check_export` on the card's measured
waveforms (all its sweeps; a sine for a card without data). Prints a markdown table (NRMSE per
card and format, worst waveform, wall time of the check) and writes
benchmarks/results/export.json.

Run: .venv/bin/python benchmarks/bench_export.py [--timeout 120] [--cards NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard
from circuitnn.devices.models import MODELS
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.export_check import check_export
from circuitnn.io import write_json
from circuitnn.spice.export import FORMATS, export_text, write_export

ROOT = Path(__file__).resolve().parents[1]


def iv_cards() -> list[str]:
    names = []
    for path in sorted(DEVICE_MODELS_DIR.glob("*.json")):
        text = path.read_text()
        if '"circuitnn.card/1"' in text and ModelCard.load(path).model in MODELS:
            names.append(path.stem)
    return names


def bench(cards: list[str], timeout: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in cards:
            card = ModelCard.load(DEVICE_MODELS_DIR / f"{name}.json")
            for kind in FORMATS:
                out = write_export(export_text(card, kind, "dut", f"{name}.json"),
                                   Path(tmp) / f"{name}.{kind}")
                t0 = time.perf_counter()
                row = {"card": name, "model": card.model, "format": kind}
                try:
                    r = check_export(card, out.read_text(), kind, "dut", name, timeout=timeout)
                    row.update(simulator=r.simulator, nrmse=r.nrmse, passed=r.passed,
                               waveform=r.waveform, per_waveform=r.per_waveform)
                except CircuitnnError as exc:
                    row.update(simulator=FORMATS[kind], nrmse=None, passed=False,
                               error=str(exc))
                row["seconds"] = time.perf_counter() - t0
                print(f"  {name} {kind}: {row.get('nrmse')} {row['seconds']:.1f} s",
                      file=sys.stderr)
                rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| card | model | format (simulator) | NRMSE (worst waveform) | waveforms | check s |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        if r["nrmse"] is None:
            err = r["error"] if len(r["error"]) < 90 else r["error"][:87] + "..."
            got = f"failed: {err}"
        else:
            got = f"{r['nrmse']:.2g}" + ("" if r["passed"] else " (above target)")
        n = len(r.get("per_waveform", {})) or "-"
        out.append(f"| {r['card']} | {r['model']} | {r['format']} ({r['simulator']}) | {got} "
                   f"| {n} | {r['seconds']:.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds per simulator run (default 120)")
    ap.add_argument("--cards", nargs="*", default=None, help="card names (default: all)")
    args = ap.parse_args()
    rows = bench(args.cards or iv_cards(), args.timeout)
    print(table(rows))
    write_json(ROOT / "benchmarks" / "results" / "export.json", rows)

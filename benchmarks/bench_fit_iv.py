"""I-V fits of every compact model to the measured loops: one table per data set.

Data sets: the Knowm W-SDC loops of devices M1, M2, M3 (`circuitnn.datasets.knowm_manifest`:
5 kOhm, 0.8 V, 1 / 10 / 100 / 1000 Hz, one parameter set per device for all four frequencies)
and the bipolar loop with its 100 uA compliance (`bipolar_manifest`). For every model: NRMSE,
log error (decades), NRMSE of the card re-simulated in ngspice, and the fit's wall time.
Targets (BENCHMARKS.md): best model NRMSE <= 0.05 and log error <= 0.3 decades on each data set;
one model on four sweeps in <= 60 s.

Then times one device waveform (the 1 Hz M1 sweep with two warm-up periods, 600 samples) in
numpy (`Device.simulate`) against ngspice, as a ratio measured in the same run.

Cards and figures go to --out (default runs/bench_fit_iv/); with --write-device-models the M1
and bipolar cards (M1 with the device-to-device spread of M1-M3) are also written to
device_models/knowm-m1-<model>.json and device_models/bipolar-<model>.json.

Run: .venv/bin/python benchmarks/bench_fit_iv.py [--maxiter 60] [--out DIR]
     [--datasets knowm-m1,knowm-m2,knowm-m3,bipolar] [--models all] [--write-device-models]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from circuitnn.datasets import bipolar_manifest, knowm_manifest
from circuitnn.devices import DEVICE_MODELS_DIR
from circuitnn.fitting.data import load_manifest
from circuitnn.fitting.iv import (
    FIT_MODELS,
    FitSettings,
    check_fit,
    device_spread,
    fit_iv,
    make_card,
    periodic_drive,
    series_element,
)
from circuitnn.fitting.plots import iv_fit_figure
from circuitnn.io import write_json
from circuitnn.spice.subckt import simulate_ngspice

MANIFESTS = {
    "knowm-m1": lambda: knowm_manifest("M1"),
    "knowm-m2": lambda: knowm_manifest("M2"),
    "knowm-m3": lambda: knowm_manifest("M3"),
    "bipolar": bipolar_manifest,
}
LABELS = {
    "knowm-m1": "circuitnn.datasets.knowm_manifest('M1') (benchmarks/bench_fit_iv.py)",
    "knowm-m2": "circuitnn.datasets.knowm_manifest('M2') (benchmarks/bench_fit_iv.py)",
    "knowm-m3": "circuitnn.datasets.knowm_manifest('M3') (benchmarks/bench_fit_iv.py)",
    "bipolar": "circuitnn.datasets.bipolar_manifest() (benchmarks/bench_fit_iv.py)",
}


def waveform_timing(fit, repeats: int = 3, device_voltage: bool = False) -> dict[str, float]:
    """One sweep (two warm-up periods + the compared one) in numpy and in ngspice: best of
    `repeats` wall times each, and the NRMSE between the two currents. With `device_voltage`,
    the measured device voltage is imposed (no series resistor), as in the previous version."""
    dev = fit.device_obj()
    sweep = fit.sweeps[0]
    if device_voltage:
        sweep = replace(sweep, v=sweep.v_device, series_resistance_ohm=0.0, compliance_a=None)
    t, v = periodic_drive(sweep, fit.settings.warmup_periods + 1)
    element = series_element(sweep)
    lo, hi = dev.bounds()
    s0 = float(0.5 * (lo + hi))
    t_np, t_sp = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = dev.simulate(t, v, s0, series=element)
        t_np.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = simulate_ngspice(dev, t, v, s0, series=element)
        t_sp.append(time.perf_counter() - t0)
    err = float(np.sqrt(np.mean((a.i - b.i) ** 2)) / np.ptp(b.i))
    return {"model": fit.model, "sweep": sweep.name, "samples": int(t.size),
            "drive": "device voltage" if device_voltage else "as fitted",
            "numpy_s": min(t_np), "ngspice_s": min(t_sp), "ratio": min(t_sp) / min(t_np),
            "nrmse_numpy_vs_ngspice": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maxiter", type=int, default=FitSettings.maxiter)
    ap.add_argument("--popsize", type=int, default=8)
    ap.add_argument("--models", default="all", help="comma-separated, or 'all'")
    ap.add_argument("--datasets", default=",".join(MANIFESTS))
    ap.add_argument("--out", default="runs/bench_fit_iv", help="folder for cards and figures")
    ap.add_argument("--write-device-models", action="store_true",
                    help="also write the M1 and bipolar cards into device_models/")
    args = ap.parse_args()
    models = list(FIT_MODELS) if args.models == "all" else args.models.split(",")
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in MANIFESTS]
    if unknown:
        raise SystemExit(f"unknown data sets {unknown}; known: {', '.join(MANIFESTS)}")
    out = Path(args.out)
    settings = FitSettings(maxiter=args.maxiter, popsize=args.popsize)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_iv_"))
    fits: dict[str, dict] = {}
    rows: dict[str, list[dict]] = {}
    for ds in datasets:
        manifest = tmp / f"{ds}.toml"
        manifest.write_text(MANIFESTS[ds]())
        sweeps = load_manifest(manifest)
        fits[ds], rows[ds] = {}, []
        for model in models:
            fit = fit_iv(sweeps, model, settings, check=False)
            try:
                check_fit(fit)
                status = "ok"
            except Exception as exc:  # noqa: BLE001 - reported in the table
                status = f"rejected: {str(exc).split('): ', 1)[-1]}"  # without device, model
            fits[ds][model] = fit
            rows[ds].append({
                "model": model, "nrmse": fit.nrmse, "log_error_decades": fit.log_error,
                "nrmse_ngspice": fit.nrmse_ngspice, "score": fit.score,
                "period_drift": max(m.period_drift for m in fit.per_sweep.values()),
                "seconds": fit.seconds["total"], "per_sweep": {
                    k: [m.nrmse, m.log_error_decades] for k, m in fit.per_sweep.items()},
                "converged": fit.refinement["converged"], "status": status})
            print(f"done {model} on {ds}: NRMSE {fit.nrmse:.4f}, log error "
                  f"{fit.log_error:.3f}, ngspice {fit.nrmse_ngspice}, "
                  f"{fit.seconds['total']:.0f} s ({status})", flush=True)

    knowm = [d for d in ("knowm-m1", "knowm-m2", "knowm-m3") if d in fits]
    spreads = {}
    if len(knowm) > 1:
        for model in models:
            spreads[model] = device_spread([fits[d][model] for d in knowm])
    for ds, by_model in fits.items():
        for model, fit in by_model.items():
            spread = spreads.get(model) if ds == "knowm-m1" else None
            card = make_card(fit, LABELS[ds], spread)
            card.save(out / f"{ds}-{model}.json")
            iv_fit_figure(fit, out / f"fit_{ds}-{model}.png")
            if args.write_device_models and ds in ("knowm-m1", "bipolar"):
                card.save(DEVICE_MODELS_DIR / f"{ds}-{model}.json")

    timing = None
    if "knowm-m1" in fits:
        best = min(fits["knowm-m1"].values(), key=lambda f: f.score)
        timing = [waveform_timing(best)]
        if "yakopcic" in fits["knowm-m1"]:
            yak = fits["knowm-m1"]["yakopcic"]
            timing += [waveform_timing(yak), waveform_timing(yak, device_voltage=True)]
    write_json(out / "results.json", {"settings": vars(args), "rows": rows, "timing": timing})

    for ds, table in rows.items():
        print(f"\n{ds}:\n")
        print("| model | NRMSE | log error (dec) | ngspice NRMSE | period drift | time (s) | "
              "per sweep NRMSE / log error | status |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sorted(table, key=lambda r: r["score"]):
            per = ", ".join(f"{a:.3f}/{b:.2f}" for a, b in r["per_sweep"].values())
            sp = "n/a" if r["nrmse_ngspice"] is None else f"{r['nrmse_ngspice']:.4f}"
            print(f"| {r['model']} | {r['nrmse']:.4f} | {r['log_error_decades']:.3f} | {sp} | "
                  f"{r['period_drift']:.4f} | {r['seconds']:.0f} | {per} | {r['status'][:70]} |")
    for tm in timing or []:
        print(f"\none {tm['model']} waveform ({tm['sweep']}, {tm['drive']}, {tm['samples']} "
              f"samples, warm-up included): numpy {tm['numpy_s']:.3f} s, ngspice "
              f"{tm['ngspice_s']:.3f} s "
              f"(numpy {tm['ratio']:.1f}x faster), NRMSE numpy vs ngspice "
              f"{tm['nrmse_numpy_vs_ngspice']:.2e}")
    print(f"\ncards and figures: {out}/" + (" and device_models/" if args.write_device_models
                                             else ""))
    print(json.dumps({"datasets": list(rows)}))


if __name__ == "__main__":
    main()

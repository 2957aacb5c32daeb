"""Full-effort I-V fits of the three compact models to the measured loops, with timings.

Fits yakopcic, vteam and stanford-pku to
  - the Knowm W-SDC loops of device M1 at 5 kOhm / 0.8 V, 1, 10, 100 and 1000 Hz, ONE
    parameter set for all four frequencies (target: overall NRMSE <= 0.10 for the best model);
  - the bipolar loop (target <= 0.10 for the best model);
writes the cards device_models/knowm-m1-<model>.json and device_models/bipolar-<model>.json
and figures figures/fit_knowm-m1-<model>.png, figures/fit_bipolar-<model>.png, and prints a
table (model, dataset, NRMSE overall and per sweep, fit time). With --variation the best Knowm
model is also fitted to devices M2 and M3 and the device-to-device spread goes into the M1
card. Finally times one device waveform in numpy (`Device.simulate`) against ngspice.

Run: .venv/bin/python benchmarks/bench_fit_iv.py [--maxiter 100] [--variation]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from circuitnn.datasets import bipolar_manifest, knowm_manifest
from circuitnn.devices.subckt import simulate_ngspice
from circuitnn.fitting.data import load_manifest
from circuitnn.fitting.iv import FIT_MODELS, FitSettings, device_spread, fit_iv, make_card, nrmse
from circuitnn.fitting.plots import iv_fit_figure

ROOT = Path(__file__).resolve().parents[1]


def _manifest(text: str, folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def ngspice_vs_numpy(fit, sweep_index: int = 0) -> dict[str, float]:
    """Time one sweep (warm-up + compared period) in numpy and in ngspice; compare currents."""
    dev = fit.device_obj()
    s = fit.sweeps[sweep_index]
    w = fit.settings.warmup_periods
    period = 1.0 / s.frequency_hz
    t = np.concatenate([s.t + j * period for j in range(w + 1)])
    v = np.tile(s.v, w + 1)
    lo, hi = dev.bounds()
    s0 = float(0.5 * (lo + hi))
    t0 = time.perf_counter()
    a = dev.simulate(t, v, s0)
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = simulate_ngspice(dev, t, v, s0)
    t_sp = time.perf_counter() - t0
    return {"numpy_s": t_np, "ngspice_s": t_sp, "nrmse_numpy_vs_ngspice": float(nrmse(a.i, b.i)),
            "samples": float(t.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maxiter", type=int, default=100)
    ap.add_argument("--popsize", type=int, default=8)
    ap.add_argument("--models", default=",".join(FIT_MODELS))
    ap.add_argument("--datasets", default="knowm-m1,bipolar")
    ap.add_argument("--variation", action="store_true",
                    help="also fit Knowm M2, M3 with the best Knowm model (device spread)")
    args = ap.parse_args()
    settings = FitSettings(maxiter=args.maxiter, popsize=args.popsize)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_iv_"))
    manifests = {"knowm-m1": _manifest(knowm_manifest("M1"), tmp, "knowm-m1"),
                 "bipolar": _manifest(bipolar_manifest(), tmp, "bipolar")}
    labels = {"knowm-m1": "circuitnn.datasets.knowm_manifest('M1') (benchmarks/bench_fit_iv.py)",
              "bipolar": "circuitnn.datasets.bipolar_manifest() (benchmarks/bench_fit_iv.py)"}
    rows, fits = [], {}
    for ds in args.datasets.split(","):
        sweeps = load_manifest(manifests[ds])
        for model in args.models.split(","):
            fit = fit_iv(sweeps, model, settings, check=False)
            fits[(ds, model)] = fit
            rows.append((model, ds, fit))
            print(f"done {model} on {ds}: NRMSE {fit.nrmse:.4f} in {fit.seconds['total']:.0f} s",
                  flush=True)

    spread: dict = {}
    if args.variation and any(ds == "knowm-m1" for _, ds, _ in rows):
        best = min((f for (ds, _), f in fits.items() if ds == "knowm-m1"), key=lambda f: f.nrmse)
        others = []
        for dev in ("M2", "M3"):
            sweeps = load_manifest(_manifest(knowm_manifest(dev), tmp, f"knowm-{dev}"))
            others.append(fit_iv(sweeps, best.model, settings, check=False))
            print(f"done {best.model} on knowm-{dev}: NRMSE {others[-1].nrmse:.4f}", flush=True)
        spread = {best.model: device_spread([best, *others])}

    for (ds, model), fit in fits.items():
        card = make_card(fit, labels[ds], spread.get(model) if ds == "knowm-m1" else None)
        card.save(ROOT / "device_models" / f"{ds}-{model}.json")
        iv_fit_figure(fit, ROOT / "figures" / f"fit_{ds}-{model}.png")

    print()
    print(f"{'model':13s} {'dataset':9s} {'NRMSE':>7s} {'(fit)':>7s} {'time s':>7s}  per sweep")
    for model, ds, fit in rows:
        per = ", ".join(f"{k.split('/')[0]}={v:.3f}" for k, v in fit.nrmse_per_sweep.items())
        print(f"{model:13s} {ds:9s} {fit.nrmse:7.4f} {fit.nrmse_fit:7.4f} "
              f"{fit.seconds['total']:7.1f}  {per}")
    if spread:
        for model, sp in spread.items():
            print(f"device-to-device ({model}): NRMSE per device {sp['nrmse']}")
    first = rows[0][2]
    timing = ngspice_vs_numpy(first)
    print(f"\none {first.model} waveform ({timing['samples']:.0f} samples, warm-up included): "
          f"numpy {timing['numpy_s']:.3f} s, ngspice {timing['ngspice_s']:.3f} s, "
          f"NRMSE numpy vs ngspice {timing['nrmse_numpy_vs_ngspice']:.4f}")


if __name__ == "__main__":
    main()

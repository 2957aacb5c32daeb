"""Fits right where a network reads the device: `fit --model all` judged by re-simulation.

Three data sets, each fitted through the command line exactly as a user runs it
(`circuitnn fit MANIFEST --model all [--read-range V] --json --out DIR/{model}.json`):
- knowm-device: the Knowm W-SDC M1 loops measured across the memristor itself
  (`memristor.csv`, 1 / 10 / 100 / 1000 Hz, no series resistor), --read-range 0.1;
- knowm-source: the same loops through the 5 kOhm resistor as measured
  (`circuitnn.datasets.knowm_manifest()`), default read range (2 x the card's v_read);
- wide-range: a synthetic interface-type device written here, by a model none of the fitted ones
  is: a Schottky barrier whose height the state lowers, ideality 1.8, 200 ohm in series and a
  2 nS leak, Butler-Volmer state kinetics, integrated with scipy's LSODA; a 1.5 V SET and three
  RESET amplitudes (-1.0, -1.3, -1.6 V), 200 samples per 1 s period, 2% and 20 pA of noise. Its
  current spans seven decades (~1e-10 A near 0 V to ~4.5 mA). The CSV files and the manifest
  are written to a temporary folder, never into the repository.

The judge: every card written by `--out`, simulated with the public `Device.simulate` on its
measured waveforms (two warm-up periods, the sweep's series element), NRMSE and read-region
error (RMS of log10|I_sim| - log10|I_meas| over the measured points above the noise floor with
|V_device| <= the card's read range); then `circuitnn.fitting.readcheck.read_check` of each
card at its v_read (what `device check` and every `--iv-card` use refuse above 0.5 decade).

Run: .venv/bin/python benchmarks/bench_fit_read.py [--out DIR] [--datasets knowm-device,...]
     [--models all] [--set-rates]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from circuitnn.cli import cli
from circuitnn.datasets import knowm_manifest
from circuitnn.devices import Device, ModelCard
from circuitnn.fitting.data import load_manifest
from circuitnn.fitting.iv import log_error, nrmse, periodic_drive, read_mask, series_element
from circuitnn.fitting.readcheck import read_check
from circuitnn.io import write_json

VT = 0.0257  # V, thermal voltage at 298 K
#: the synthetic device's parameters (module doc)
SYNTHETIC = dict(i0=1e-2, phi_off=0.62, phi_on=0.36, n=1.8, rs=200.0, g_leak=2e-9, k0=1.0,
                 v_set=0.9, v_rst=0.9, v_k=0.06, v_pos=1.5)
RESET_AMPLITUDES = (-1.0, -1.3, -1.6)


def synthetic_current(v: np.ndarray, x: np.ndarray, p: dict) -> np.ndarray:
    """Schottky current through the series resistance (Newton on the junction voltage)."""
    isat = p["i0"] * np.exp(-(p["phi_off"] - (p["phi_off"] - p["phi_on"]) * x) / VT)
    vj = np.array(v, dtype=float)
    for _ in range(60):
        e = np.exp(np.clip(vj / (p["n"] * VT), -200, 200))
        vj = vj - (isat * (e - 1) * p["rs"] + vj - v) / (isat * e / (p["n"] * VT) * p["rs"] + 1)
    return isat * (np.exp(vj / (p["n"] * VT)) - 1) + p["g_leak"] * v


def synthetic_loop(p: dict, v_neg: float, n: int = 200, periods: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One period (after two) of the triangle 0 -> +v_pos -> 0 -> v_neg -> 0 at 1 Hz."""
    u = (np.arange(n) + 0.5) / n
    tri = np.where(u < 0.25, 4 * u, np.where(u < 0.5, 2 - 4 * u,
                                             np.where(u < 0.75, 2 - 4 * u, 4 * u - 4)))
    wave = np.where(tri >= 0, tri * p["v_pos"], -tri * v_neg)
    t = np.arange(n * periods) / n
    vv = np.tile(wave, periods)

    def rate(tt: float, y: np.ndarray) -> np.ndarray:
        v = np.interp(tt, t, vv)
        return p["k0"] * (np.exp((v - p["v_set"]) / p["v_k"]) * (1 - y)
                          - np.exp((-v - p["v_rst"]) / p["v_k"]) * y)

    sol = solve_ivp(rate, (0.0, t[-1]), [0.5], t_eval=t, method="LSODA", rtol=1e-8, atol=1e-10,
                    max_step=0.2 / n)
    x = np.clip(sol.y[0][-n:], 0.0, 1.0)
    return wave, synthetic_current(wave, x, p)


def write_synthetic(folder: Path, seed: int = 0) -> Path:
    """The wide-range device's three sweeps (CSV, V and A) and their manifest in `folder`."""
    rng = np.random.default_rng(seed)
    parts = ["# synthetic interface-type device (benchmarks/bench_fit_read.py)"]
    for vn in RESET_AMPLITUDES:
        v, i = synthetic_loop(SYNTHETIC, vn)
        i = i * (1 + 0.02 * rng.standard_normal(i.size)) + 2e-11 * rng.standard_normal(i.size)
        name = f"reset{abs(vn):.1f}V.csv"
        rows = (f"{a:.6g},{b:.6e}" for a, b in zip(v, i, strict=True))
        (folder / name).write_text("\n".join(rows) + "\n")
        parts += ["", "[[sweep]]", f'file = "{name}"', "columns = [0, 1]", 'current_unit = "A"',
                  "frequency_hz = 1", 'device = "wide"']
    path = folder / "wide.toml"
    path.write_text("\n".join(parts) + "\n")
    return path


def fit_all(manifest: Path, out: Path, models: str, read_range: float | None) -> dict:
    """`circuitnn fit MANIFEST --model all ... --json --out DIR/{model}.json` in this process;
    its JSON and the wall time."""
    args = ["fit", str(manifest), "--model", models, "--json",
            "--out", str(out / "{model}.json"), "--figure", str(out / "fit_{model}.png")]
    if read_range is not None:
        args += ["--read-range", str(read_range)]
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        cli.main(args=args, standalone_mode=False)
    return {"json": json.loads(buf.getvalue()), "wall_s": time.perf_counter() - t0}


def judge(card_path: Path, manifest: Path) -> dict:
    """The card re-simulated with `Device.simulate` on its measured waveforms (module doc)."""
    card = ModelCard.load(card_path)
    dev = Device.from_card(card)
    r = float(card.fit["read_range_v"])
    lo, hi = dev.bounds()
    per = {}
    for s in load_manifest(manifest):
        t, v = periodic_drive(s, 3)
        i = dev.simulate(t, v, 0.5 * (lo + hi), series=series_element(s)).i[-s.n:]
        per[s.name] = (float(nrmse(i, s.i)), float(log_error(i, s, read_mask(s, r))))
    check = read_check(card, float(card.values()["v_read"])) if card.operating.get(
        "v_read") else {"checked": False, "reason": card.operating.get("reason")}
    return {"nrmse": float(np.mean([a for a, _ in per.values()])),
            "read_error_decades": float(np.mean([b for _, b in per.values()])),
            "read_range_v": r, "per_sweep": per, "read_check": check,
            "cpu_s": card.fit["seconds"].get("cpu")}


def set_rates(manifest: Path, levels: tuple[float, ...] = (150e-6, 300e-6),
              v_min: float = 0.12) -> dict:
    """The SET of each loop measured across the device: at a conductance G = I / V within 25% of
    each level, the median device voltage and dG/dt (central differences over the samples
    above v_min). A model whose state moves at a rate set by (V, state) alone needs the faster
    SET at the higher voltage; two loops that set faster at the lower voltage cannot share
    one parameter set with the measured voltage imposed."""
    out = {}
    for s in load_manifest(manifest):
        v, i = np.asarray(s.v, float), np.asarray(s.i, float)
        g = i / np.where(v != 0, v, np.nan)
        rate = (np.roll(g, -1) - np.roll(g, 1)) * s.frequency_hz * s.n / 2
        on = (v > v_min) & (np.roll(v, 1) > v_min) & (np.roll(v, -1) > v_min) & (rate > 0)
        out[s.name] = {}
        for level in levels:
            sel = on & (np.abs(g - level) < 0.25 * level)
            if sel.any():
                out[s.name][level] = (float(np.median(v[sel])), float(np.median(rate[sel])),
                                      int(sel.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_fit_read")
    ap.add_argument("--datasets", default="knowm-device,knowm-source,wide-range")
    ap.add_argument("--models", default="all")
    ap.add_argument("--set-rates", action="store_true",
                    help="only print the SET rates of the loops across the device (`set_rates`)")
    args = ap.parse_args()
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_read_"))
    if args.set_rates:
        manifest = tmp / "knowm-device.toml"
        manifest.write_text(knowm_manifest("M1", drive="memristor"))
        print("| loop | G (uS) | samples | median V (V) | median dG/dt (uS/s) |")
        print("|---|---|---|---|---|")
        for name, rows in set_rates(manifest).items():
            for level, (v, rate, n) in rows.items():
                print(f"| {name} | {level * 1e6:.0f} | {n} | {v:.3f} | {rate * 1e6:.3g} |")
        shutil.rmtree(tmp)
        return
    sets = {
        "knowm-device": (lambda: knowm_manifest("M1", drive="memristor"), 0.1),
        "knowm-source": (lambda: knowm_manifest("M1"), None),
        "wide-range": (None, None),
    }
    results = {}
    for name in args.datasets.split(","):
        make, read_range = sets[name]
        if make is None:
            manifest = write_synthetic(tmp)
        else:
            manifest = tmp / f"{name}.toml"
            manifest.write_text(make())
        res = fit_all(manifest, out / name, args.models, read_range)
        rows = {}
        for model, entry in res["json"]["models"].items():
            if "error" in entry:
                rows[model] = {"error": entry["error"], "seconds": entry["seconds"]}
                continue
            rows[model] = {"fit": {k: entry[k] for k in ("nrmse", "log_error_decades",
                                                         "read_error_decades", "read_range_v",
                                                         "nrmse_ngspice", "score", "seconds")},
                           "judge": judge(Path(entry["card"]), manifest)}
        results[name] = {"best": res["json"]["best"], "wall_s": res["wall_s"], "models": rows}
        print(f"\n{name} (best {res['json']['best']}, {res['wall_s']:.0f} s for all models):\n")
        print("| model | NRMSE | log error (dec) | read error (dec, |V| <= range) | read range (V) "
              "| re-simulated NRMSE / read error | read check at v_read | s (wall / cpu) |")
        print("|---|---|---|---|---|---|---|---|")
        for model, row in rows.items():
            if "error" in row:
                print(f"| {model} | rejected: {row['error'][:90]} | | | | | | "
                      f"{row['seconds']:.0f} |")
                continue
            f, j = row["fit"], row["judge"]
            c = j["read_check"]
            check = (f"off {c['worst_decades']:.2f} dec: {'pass' if c['passes'] else 'REFUSED'}"
                     if c.get("checked") else f"not checked ({c.get('reason')})")
            print(f"| {model} | {f['nrmse']:.4f} | {f['log_error_decades']:.3f} | "
                  f"{f['read_error_decades']:.3f} | {f['read_range_v']:.3g} | "
                  f"{j['nrmse']:.4f} / {j['read_error_decades']:.3f} | {check} | "
                  f"{f['seconds']:.0f} / {j['cpu_s']:.0f} |")
    write_json(out / "results.json", {"settings": vars(args), "results": results,
                                      "synthetic": SYNTHETIC, "data_folder": str(tmp)})
    print(f"\ncards, figures, results.json: {out}/; data written to {tmp}/")


if __name__ == "__main__":
    main()

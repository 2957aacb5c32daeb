"""Accuracy under circuit effects: test accuracy after weight transfer (one convolver group, no
hybrid training) vs wire resistance, simulated array size, device variation, ADC bits and
conductance window, reusing the trained network of a finished `mcnn run`.

Axes: "wire" (ohms per wire segment, r_row = r_col; circuit engine), "size" (rows of the
simulated PE: the block sits in an array of that many rows, extra rows at the low state;
circuit engine), "variation" (multiplier of the device's device-to-device spreads, re-programmed
by write-verify), "adc" (ADC bits), "window" (g_max in uS with the run's g_min, re-programmed at
the run's operating point otherwise). The re-programmed points also give the RMS programming
error of the used cells (`programming_error_rms_uS`, the verify read minus the target).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure, write_json
from circuitnn.network import graph
from circuitnn.network.device import array_device
from circuitnn.network.engines import build_engine
from circuitnn.network.mapping import Mapping, target_conductances
from circuitnn.surrogate.read import check_engine
from circuitnn.training.pipeline import verify_read
from circuitnn.training.transfer import program_config, write_verify

# Defaults stay inside the shipped surrogate card (128 x 16, 0-3 ohm per segment, 4.95-40 uS)
# except size 256, which needs a card of its own (`circuitnn surrogate fit --rows 256`; at 2 ohm
# per segment a 256-row tile has more IR drop than the surrogate is valid for): points outside a
# card's domain are refused and reported (sweep.json), not guessed.
AXES = {"wire": [0.0, 0.5, 1.0, 2.0, 3.0],
        "size": [128, 256],
        "variation": [0.0, 1.0, 3.0, 10.0, 30.0],
        "adc": [3, 4, 5, 6, 8, 10],
        "window": [12.0, 18.0, 24.0]}
LABELS = {"wire": "wire resistance per segment (ohm)", "size": "array rows",
          "variation": "device-to-device spread (x card)", "adc": "ADC bits",
          "window": "g_max (uS), g_min fixed"}


def _context(run_dir: Path):
    from circuitnn.mcnn.run import McnnConfig, run_chain

    rep = run_dir / "report.json"
    if not rep.is_file():
        raise CircuitnnError(f"{run_dir}: no finished run (report.json missing); run "
                             "`circuitnn mcnn run --out DIR` first")
    cfg_dict = json.loads(rep.read_text())["config"]
    names = {f.name for f in fields(McnnConfig)}
    cfg = McnnConfig(**{k: v for k, v in cfg_dict.items() if k in names})
    return run_chain(cfg, run_dir, progress=False, until="transfer")  # loads the checkpoints


def run_sweep(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
              engine: str = "surrogate", n_images: int = 300,
              axes: list[str] | None = None, values: dict[str, list] | None = None) -> dict:
    """Run the sweep; writes OUT/sweep.json and OUT/accuracy_sweep.png; returns the results."""
    circuit = check_engine(engine).circuit
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "sweep"
    axes = axes or list(AXES)
    bad = [a for a in axes if a not in AXES]
    if bad:
        raise CircuitnnError(f"unknown sweep axes {bad}; choose from {', '.join(AXES)}")
    if n_images < 1:
        raise CircuitnnError(f"--n-images must be >= 1, got {n_images}")
    values = {**AXES, **(values or {})}
    ctx = _context(run_dir)
    cfg = ctx.cfg
    d = ctx.data
    x, y = d.x_test[:n_images], d.y_test[:n_images]
    g_prog = ctx["transfer"].conductance
    mapping = Mapping.from_dict(ctx["mapping"].mapping)
    levels = ctx["quantise"].levels
    net, params = ctx.net(), ctx["exsitu"].params

    g_min = ctx.device.window.g_min
    used = mapping.used_cells()

    def device(g_max: float):
        """The run's device at its operating point with another window top."""
        choice = replace(ctx.device.choice, g_window=(g_min, g_max), source="given")
        return array_device(cfg.iv_card, cfg.pulse_card, levels=cfg.device_levels,
                            choice=choice, accept_read_error=cfg.accept_read_error,
                            variation=cfg.variation())

    def acc(g: np.ndarray, g_max: float | None = None, **kw) -> float:
        chip = ctx.chip(g)
        if g_max is not None:
            chip = replace(chip, device=device(g_max))
        eng = build_engine(chip, engine, group=0, **kw)
        return float(np.mean(graph.predict(net, params, x, eng) == y))

    def reprogram(dev, variation: float) -> tuple[np.ndarray, float]:
        """(programmed conductances, RMS programming error of the used cells in uS) of the
        run's targets re-programmed on `dev` with its spreads x `variation`."""
        target = target_conductances(mapping, levels, dev.window)
        res = write_verify(target, dev.programming_laws(variation),
                           np.random.default_rng([cfg.seed, 99]),
                           program_config(dev, cfg.max_pulses, variation),
                           verify_read=verify_read(cfg, dev, target.shape))
        return res.conductance, float(np.sqrt(np.mean(res.error[used] ** 2)) * 1e6)

    results: dict[str, list] = {}
    total = sum(len(values[a]) for a in axes)
    with tqdm(total=total, desc="accuracy sweep", leave=False) as bar:
        for axis in axes:
            pts = []
            for v in values[axis]:
                point = {"value": float(v), "accuracy": None}
                try:
                    if axis in ("wire", "size") and not circuit:
                        raise CircuitnnError(f"axis '{axis}' needs a circuit engine")
                    if axis == "wire":
                        point["accuracy"] = acc(g_prog, tile_options={"r_row": float(v),
                                                                      "r_col": float(v)})
                    elif axis == "size":
                        point["accuracy"] = acc(g_prog, pad_rows=int(v))
                    elif axis == "variation":
                        g, point["programming_error_rms_uS"] = reprogram(ctx.device, float(v))
                        point["accuracy"] = acc(g)
                    elif axis == "adc":
                        point["accuracy"] = acc(g_prog, adc_bits=int(v))
                    else:
                        gm = float(v) * 1e-6
                        g, point["programming_error_rms_uS"] = reprogram(device(gm),
                                                                         cfg.variation_scale)
                        point["accuracy"] = acc(g, gm)
                except CircuitnnError as exc:
                    point["reason"] = str(exc)
                pts.append(point)
                bar.update(1)
            results[axis] = pts
    fig_path = out / "accuracy_sweep.png"
    _plot(results, fig_path, engine, len(y))
    res = {"engine": engine, "n_images": len(y), "run_dir": str(run_dir), "axes": results,
           "figure": str(fig_path)}
    write_json(out / "sweep.json", res)
    return res


def _plot(results: dict[str, list], path: Path, engine: str, n_images: int) -> None:
    """One panel per axis; error bars are the binomial standard error of the accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, (axis, pts) in zip(axes[0], results.items(), strict=True):
        xs = [p["value"] for p in pts if p["accuracy"] is not None]
        ys = [100 * p["accuracy"] for p in pts if p["accuracy"] is not None]
        if xs:
            err = [100 * np.sqrt(max(y / 100 * (1 - y / 100), 0) / n_images) for y in ys]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3)
            ax.set_ylim(max(0.0, min(ys) - 5), 100)
        else:
            ax.text(0.5, 0.5, "not available\n(needs a circuit engine)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xlabel(LABELS[axis], fontsize=8)
        if axis in ("size", "window"):
            ax.set_xscale("log", base=2)
        elif axis == "variation":
            ax.set_xscale("symlog", linthresh=1)
        ax.grid(alpha=0.3)
        errs = [(p["value"], p["programming_error_rms_uS"]) for p in pts
                if p.get("programming_error_rms_uS") is not None]
        if errs:  # the re-programmed axes: the programming error beside the accuracy
            twin = ax.twinx()
            twin.plot(*zip(*errs, strict=True), "s--", color="tab:red", ms=4)
            twin.set_ylabel("programming error rms (uS)", color="tab:red", fontsize=8)
            twin.tick_params(axis="y", colors="tab:red", labelsize=8)
            twin.set_ylim(bottom=0)
    axes[0][0].set_ylabel("test accuracy after transfer (%)")
    fig.suptitle(f"accuracy under circuit effects ({engine} engine, {n_images} test images, "
                 "+-1 binomial s.e.)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)

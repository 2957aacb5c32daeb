"""The operating-point search: for the user's device and network, the read voltage, window, SET
gate, RESET amplitude, write-verify tolerance and programming scheme that give the best accuracy
after transfer (`circuitnn.devices.choice.OperatingChoice`).

Candidates (`candidate_grid`): the card's safe read voltage (`circuitnn.devices.operating`)
times V_READ_FACTORS; N_WINDOWS windows of the default rule's on/off ratio, geometrically from
the rule's own down to the lowest the device reaches (g_min = FLOOR_MARGIN x its lowest
reachable conductance): IR drop and the access transistor compress high conductances, so lower
windows often read better; the "fixed" scheme and the "incremental" one (its SET gate ramp and
RESET amplitude ramp start at the fixed scheme's pulses: `circuitnn.devices.choice`), at the
preset's SET gate; TOLERANCE_REL of the level spacing; the RESET amplitude of the pulse
derivation's rule. A setting the user gives fixes its axis. A candidate the device cannot reach
(window outside what its cell reaches, gate or read voltage it cannot take, a pulse law that
cannot be derived) is reported with the reason and not evaluated: nothing is guessed.

Evaluation: every candidate on K chips (chip seeds 1..K: programming noise, stuck cells, and the
device-to-device spread of the pulse law where the card has one), each chip a Dask task
(`circuitnn.tile.sweep.run_sweep`: a local cluster of `workers` processes, or `scheduler`) that
runs the chain's own stages (data, exsitu, quantise, mapping, transfer, calibrate of
`circuitnn.training.pipeline`) in its own folder, starting from the base run's trained network,
and then `stage_heldout`: the accuracy on N_IMAGES held-back training images (a seeded subset of
the training set, never the test images) through the run's engine. The surrogate cards the
tasks need are made (or found) first, in this process, one per read voltage over every
candidate's read range. Every task's result is written as it arrives (`search/results/`) and
every stage checkpoints, so a rerun resumes.

Choice: the highest mean accuracy over the chips; between candidates within one standard error
of it, the fewest write-verify pulses per used cell. The chosen point then runs through the
whole chain (`run_searched` returns its configuration, source "search", with every candidate);
OUT/search/operating-<card> is a copy of the card that carries it (`operating.chosen`), so a
later run with that card takes it as "given" and searches nothing.

Chips: each task's transfer stage draws its chip (`circuitnn.training.transfer.write_verify`
seeded by `chip_seed`: every cell's device from the pulse law's device-to-device statistics,
measured over the devices the I-V card was fitted to where it records them, stuck cells by the
device's stuck fractions, read noise on every verify read; `circuitnn.network.device
.device_variation`).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices.card import ModelCard
from circuitnn.devices.choice import (
    SCHEMES,
    TOLERANCE_REL,
    OperatingChoice,
    carried_choice,
    with_choice,
)
from circuitnn.devices.operating import operating_point, reachable_range, with_operating_point
from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure, write_json
from circuitnn.network import graph
from circuitnn.network.device import BUILTIN_PATH, cell_reads, device_windows, rule_window
from circuitnn.reference import REF
from circuitnn.training.pipeline import (
    NETWORK_SALT,
    NETWORK_STAGES,
    TRAINING,
    Context,
    RunConfig,
    tile_surrogate,
)
from circuitnn.training.stages import Stage, run_stages

#: read voltages searched, as fractions of the safe one (its upper limit): reads are noise-free
#: but for the ADC, so a lower v_read only changes the device's I-V nonlinearity; add fractions
#: to search it (each read voltage needs its own surrogate card)
V_READ_FACTORS = (1.0,)
N_WINDOWS = 3  # windows from the rule's down to the lowest the device reaches, geometrically
FLOOR_MARGIN = 1.25  # the lowest window's g_min: this x the lowest reachable conductance
N_IMAGES = 500  # held-back training images per chip
SEEDS = 3  # chips per candidate (--search-seeds)
TASK_STAGES = (*TRAINING, "quantise", "mapping", "transfer", "calibrate")


@dataclass
class Heldout:
    accuracy: float
    n_images: int
    transfer: dict


def stage_heldout(ctx: Context) -> Heldout:
    """Accuracy after transfer on N_IMAGES held-back training images (seeded, never the test
    images) through the run's engine, for the first hardware mode."""
    d = ctx.data
    n = min(N_IMAGES, len(d.y_train))
    idx = np.sort(np.random.default_rng([ctx.cfg.seed, 77]).permutation(len(d.y_train))[:n])
    group = next(iter(ctx.cfg.modes.values()))
    eng = ctx.engine(ctx.chip(), group)
    pred = graph.predict(ctx.net(), ctx["exsitu"].params, d.x_train[idx], eng)
    return Heldout(float(np.mean(pred == d.y_train[idx])), int(n),
                   ctx["transfer"].report["all_used_cells"])


def _stages(names: tuple[str, ...]) -> list[Stage]:
    by_name = {s.name: s for s in NETWORK_STAGES}
    return [by_name[n] for n in names]


SEARCH_STAGES = _stages(TASK_STAGES) + [
    Stage("heldout", Heldout, stage_heldout, lambda ctx: {"n": N_IMAGES})]


def evaluate(cfg: RunConfig, folder: str, base: str, salt: str) -> dict[str, np.ndarray]:
    """One chip of one candidate (a Dask task): the search stages in `folder`, the run's data
    and trained network (its `TRAINING` stages in `base`) copied in first. A candidate the
    device cannot take returns its reason (utf-8 bytes) instead of numbers."""
    out = Path(folder)
    for name in TRAINING:
        for src in (Path(base) / "stages").glob(f"{name}.*"):
            dest = out / "stages" / src.name
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
    ctx = Context(cfg, out, progress=False)
    try:
        run_stages(SEARCH_STAGES, ctx, out, salt, progress=False)
    except CircuitnnError as err:
        return {"reason": np.frombuffer(str(err).encode(), np.uint8)}
    h, used = ctx["heldout"], ctx["heldout"].transfer
    return {"accuracy": h.accuracy, "n_images": h.n_images, "pulses_mean": used["pulses_mean"],
            "not_converged": used["not_converged"], "n_cells": used["n_cells"]}


def candidate_grid(cfg: RunConfig) -> list[OperatingChoice]:
    """The candidates of the module doc, the user's settings fixing their axes."""
    path = Path(cfg.iv_card) if cfg.iv_card is not None else BUILTIN_PATH
    card = with_operating_point(ModelCard.load(path), str(path))
    safe = operating_point(card, v_read=cfg.v_read, where=str(path)).v_read
    v_reads = [safe] if cfg.v_read is not None else sorted(
        {safe if f == 1 else math.floor(safe * f * 1e4) / 1e4 for f in V_READ_FACTORS},
        reverse=True)
    schemes = [cfg.scheme] if cfg.scheme else list(SCHEMES)
    gate = REF.choices.set_gate if cfg.gate_set is None else cfg.gate_set
    out = []
    for v_read in v_reads:
        op = operating_point(card, v_read=v_read, where=str(path))
        if cfg.g_min is not None:
            windows = [(cfg.g_min, cfg.g_max)]
        else:
            lo, hi = rule_window(card, v_read, op.require_window(str(path)))
            floor = cell_reads(card, v_read, reachable_range(card, v_read, op.thresholds)[0])
            bottom = float(floor[0]) * FLOOR_MARGIN / lo
            ratios = np.geomspace(1.0, bottom, N_WINDOWS) if bottom < 1 else [1.0]
            windows = [(lo * f, hi * f) for f in ratios]
        out += [OperatingChoice(v_read, w, gate, cfg.amplitude_reset,
                                cfg.tolerance_rel or TOLERANCE_REL, scheme, "search")
                for w in windows for scheme in schemes]
    return out


def wants_search(cfg: RunConfig) -> bool:
    """Whether a run searches: asked for, or by default for a card given that carries no
    operating point (and no window or read voltage given by hand)."""
    if cfg.operating_point is not None or cfg.choice is not None:
        return cfg.operating_point == "search" and cfg.choice is None
    if cfg.iv_card in (None, "ohmic") or cfg.g_min is not None or cfg.v_read is not None:
        return False
    return carried_choice(ModelCard.load(cfg.iv_card)) is None


def check_search(seeds: int, workers: int, scheduler: Any) -> None:
    """Refuse impossible search options (before any work), a scheduler address by connecting
    (a `distributed.Client` is taken as it is)."""
    for name, value in (("--search-seeds", seeds), ("--workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CircuitnnError(f"{name} must be a whole number >= 1, got {value!r}")
    if isinstance(scheduler, str):
        from distributed import Client

        try:
            Client(scheduler, timeout="5s").close()
        except (OSError, TimeoutError, ValueError) as exc:
            raise CircuitnnError(f"cannot reach Dask scheduler {scheduler!r}: "
                                 f"{str(exc).splitlines()[0]}") from None


def run_searched(cfg: RunConfig, out: str | Path, seeds: int = SEEDS, workers: int = 2,
                 scheduler: Any = None, progress: bool = True,
                 salt: str = NETWORK_SALT, grid: list[OperatingChoice] | None = None
                 ) -> RunConfig:
    """Search the operating point of `cfg`'s device for its network (module doc): the run's
    `TRAINING` stages into OUT (with `salt`, the run's own: the chosen run loads them), the
    candidates (`grid`, default `candidate_grid`) into OUT/search; returns the configuration
    of the whole chain at the chosen point."""
    check_search(seeds, workers, scheduler)
    if cfg.iv_card == "ohmic":
        raise CircuitnnError("ohmic cells have no I-V card to search an operating point for")
    cfg = dataclasses.replace(cfg, operating_point="search", choice=None)
    cfg.check(device=False)
    root = Path(out) / "search"
    base = dataclasses.replace(cfg, operating_point=None)
    path = Path(cfg.iv_card) if cfg.iv_card is not None else BUILTIN_PATH
    card = with_operating_point(ModelCard.load(path), str(path))
    cands: list[dict[str, Any]] = []
    ranges: dict[float, list[tuple[float, float]]] = {}
    for choice in candidate_grid(cfg) if grid is None else grid:
        entry: dict[str, Any] = {**choice.settings(), "choice": choice}
        try:
            _, read_range = device_windows(card, choice, path.name)
            ranges.setdefault(choice.v_read, []).append(read_range)
        except CircuitnnError as err:
            entry["reason"] = str(err)
        cands.append(entry)
    if all("reason" in c for c in cands):
        choose(cands)  # refuses, with every reason
    run_stages(_stages(TRAINING), Context(base, Path(out), progress), Path(out), salt, progress)
    if cfg.engine == "surrogate":
        for v_read, rr in ranges.items():
            span = (min(r[0] for r in rr), max(r[1] for r in rr))
            tile_surrogate(card, v_read, span, path.name, cfg.tile_options, progress)
    tasks = []  # chip 1 of every candidate first: the chips of one candidate share its laws
    for k in range(1, seeds + 1):
        for i, entry in enumerate(cands):
            if "reason" in entry:
                continue
            task_cfg = dataclasses.replace(
                base, choice=entry["choice"].to_json(), chip_seed=k, operating_point=None)
            tasks.append((f"c{i}-s{k}", {"cfg": task_cfg, "folder": str(root / f"c{i}-s{k}"),
                                         "base": str(out), "salt": salt}))
    from circuitnn.tile.sweep import run_sweep

    results = run_sweep(tasks, evaluate, out_dir=root / "results", scheduler=scheduler,
                        n_workers=workers, progress=progress, desc="operating-point search")
    for i, entry in enumerate(cands):
        if "reason" in entry:
            continue
        runs = [results[f"c{i}-s{k}"] for k in range(1, seeds + 1)]
        reasons = [bytes(r["reason"]).decode() for r in runs if "reason" in r]
        if reasons:
            entry["reason"] = reasons[0]
            continue
        acc = np.array([float(r["accuracy"]) for r in runs])
        entry.update(transfer_accuracy_mean=float(acc.mean()),
                     transfer_accuracy_sd=float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                     n=int(acc.size), n_images=int(runs[0]["n_images"]),
                     pulses_mean=float(np.mean([float(r["pulses_mean"]) for r in runs])),
                     not_converged_fraction=float(np.mean([
                         float(r["not_converged"]) / float(r["n_cells"]) for r in runs])))
    best, why = choose(cands)
    record = {"source": "search", **best["choice"].settings(), "why": why,
              "candidates": [{k: v for k, v in c.items() if k != "choice"} for c in cands]}
    write_json(root / "operating_point.json", record)
    with_choice(ModelCard.load(path), best["choice"]).save(root / f"operating-{path.name}")
    plot_search(record, Path(out) / "operating_point.png")
    return dataclasses.replace(cfg, choice=record, operating_point="search")


def choose(cands: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The chosen candidate (module doc) and why, in words."""
    done = [c for c in cands if "reason" not in c]
    if not done:
        raise CircuitnnError("no operating point of the device can be used: " + "; ".join(
            f"{_label(c)}: {c['reason']}" for c in cands))
    top = max(done, key=lambda c: c["transfer_accuracy_mean"])
    se = top["transfer_accuracy_sd"] / math.sqrt(top["n"])
    near = [c for c in done if c["transfer_accuracy_mean"] >= top["transfer_accuracy_mean"] - se]
    best = min(near, key=lambda c: (c["pulses_mean"], -c["transfer_accuracy_mean"]))
    spread = (f" +- {top['transfer_accuracy_sd']:.2%}" if top["n"] > 1 else "")
    why = (f"highest mean accuracy after transfer on {top['n_images']} held-back training "
           f"images over {top['n']} chip{'s' if top['n'] > 1 else ''} ({_label(top)}: "
           f"{top['transfer_accuracy_mean']:.2%}{spread})")
    if best is not top:
        why += (f"; {_label(best)} is within one standard error of it "
                f"({best['transfer_accuracy_mean']:.2%}) with fewer pulses per cell "
                f"({best['pulses_mean']:.1f} vs {top['pulses_mean']:.1f})")
    skipped = sum("reason" in c for c in cands)
    if skipped:
        why += f"; {skipped} of {len(cands)} candidates not reachable (reasons in the report)"
    return best, why


def _label(c: dict[str, Any]) -> str:
    w = c["g_window"]
    return (f"{w[0] * 1e6:.3g}-{w[1] * 1e6:.3g} uS at {c['v_read']:g} V, {c['scheme']}, "
            f"SET gate {c['gate_set']:g} V")


def plot_search(record: dict[str, Any], path: Path) -> Path:
    """Accuracy after transfer (mean +- sd over the chips) against the window's g_max, one
    line per read voltage and scheme, and write-verify pulses per used cell; the chosen point
    ringed, unreachable candidates marked at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    cands = record["candidates"]
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for c in cands:
        groups.setdefault((c["v_read"], c["scheme"]), []).append(c)
    for (v_read, scheme), cs in sorted(groups.items()):
        ok = sorted((c for c in cs if "reason" not in c), key=lambda c: c["g_window"][1])
        label = f"v_read {v_read:g} V, {scheme}"
        if ok:
            x = [c["g_window"][1] * 1e6 for c in ok]
            line = ax.errorbar(x, [100 * c["transfer_accuracy_mean"] for c in ok],
                               [100 * c["transfer_accuracy_sd"] for c in ok], marker="o",
                               capsize=3, label=label)
            bx.plot(x, [c["pulses_mean"] for c in ok], marker="o", color=line[0].get_color(),
                    label=label)
        bad = [c for c in cs if "reason" in c]
        if bad:
            ax.plot([c["g_window"][1] * 1e6 for c in bad], [0] * len(bad), "x", color="k",
                    transform=ax.get_xaxis_transform(), clip_on=False)
    chosen = next((c for c in cands if "reason" not in c and all(
        c[k] == record[k] for k in ("v_read", "g_window", "gate_set", "scheme",
                                    "tolerance_rel"))), None)
    if chosen is not None:
        ax.plot(chosen["g_window"][1] * 1e6, 100 * chosen["transfer_accuracy_mean"], "o",
                ms=14, mfc="none", mec="tab:red", mew=2, label="chosen")
    ticks = sorted({round(c["g_window"][1] * 1e6, 3) for c in cands})
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
        a.minorticks_off()
        a.set_xlabel("window g_max (uS), g_min = g_max / on-off")
        a.legend(fontsize=8)
    ax.set_ylabel("accuracy after transfer (%), held-back training images")
    bx.set_ylabel("write-verify pulses per used cell (mean)")
    bad = sum("reason" in c for c in cands)
    ax.set_title(f"operating-point search: {len(cands)} candidates"
                 + (f", {bad} not reachable (x)" if bad else ""), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


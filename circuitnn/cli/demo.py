"""`circuitnn demo`: the main job end to end on embedded defaults, one device from measured data
to network accuracy with no manual step.

Stages, each through the same commands a user runs, each printing its time:
1. fits: every model to the Knowm W-SDC M1 loops (four frequencies, one parameter set,
   ranked), the bipolar Cu/a-SiC/TiN loop with its 100 uA compliance (VTEAM), and the
   pulse-update law to the measured TaOx ramps;
2. the device: the first fitted card that the chain can use (a safe read voltage exists, the
   state holds at 0 V, one of the operating-point search's candidates is reachable and a pulse
   law can be derived there), trying Knowm M1's models best-ranked first, then the bipolar
   loop's card; the report says why the ones before it were passed over;
3. tile figures (wire convention, IR drop of the 128 x 16 reference array);
4. the reference chain (`mcnn run`) twice on the same ex-situ trained network: with the built-in
   HfOx device of the reference (at the reference's operating point), and with the device
   chosen in step 2 at the operating point searched for accuracy on this network
   (`circuitnn.search.operating`: its pulse laws derived from the card, its surrogate calibrated
   and validated automatically), and one report that sets the two devices side by side, their
   operating points and the searched accuracy (mean +- sd over chips) included
   (`OUT/report.md`).

The built-in device's chain needs nothing from the fits and runs beside them in its own process
(its log: OUT/hfox.log). Everything is written under --out (default runs/demo);
`--figures-dir` also copies the curated figures there (`make figures` uses it to refresh the
repository's figures/).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from circuitnn.errors import CircuitnnError

#: figures of a demo run that are curated in the repository's figures/ (path under --out)
CURATED = {
    "fits/fit_knowm-m1-mss.png": "fit_knowm-m1-mss.png",
    "fits/fit_knowm-m1-vteam.png": "fit_knowm-m1-vteam.png",
    "fits/fit_knowm-m1-yakopcic.png": "fit_knowm-m1-yakopcic.png",
    "fits/fit_knowm-m1-stanford-pku.png": "fit_knowm-m1-stanford-pku.png",
    "fits/fit_bipolar-vteam.png": "fit_bipolar-vteam.png",
    "fits/pulse_fit_taox-pulse.png": "pulse_fit_taox-pulse.png",
    "tile/tile_wire_convention.png": "tile_wire_convention.png",
    "tile/ir_drop_128x16.png": "ir_drop_128x16.png",
    "hfox/mapping.png": "pe_mapping.png",
    "hfox/device.png": "device_hfox.png",
    "fitted/device.png": "device_fitted.png",
    "hfox/transfer_error_hist.png": "mcnn_transfer_error_hist.png",
    "hfox/transfer_pulse_hist.png": "mcnn_transfer_pulse_hist.png",
    "hfox/hybrid_accuracy.png": "mcnn_hybrid_accuracy.png",
    "fitted/hybrid_accuracy.png": "mcnn_hybrid_accuracy_fitted.png",
}
#: the models fitted to Knowm M1: all of them (2.9-7 s each: BENCHMARKS.md); the MSS card, the
#: best ranked, describes a volatile device, and the chain takes the next usable one
KNOWM_MODELS = ("mss", "vteam", "yakopcic", "stanford-pku")
#: --quick fits Knowm M1 with VTEAM alone, at full effort (a few seconds: BENCHMARKS.md): cut
#: short (--maxiter 3) no Knowm M1 fit gives a card an array can use
QUICK_MODELS = ("vteam",)
QUICK_SEEDS = 1  # chips per candidate operating point in the quick demo (the full one: 3)
#: devices of the comparison: folder under --out, label
DEVICES = {"hfox": "built-in HfOx (Stanford-PKU card, the reference's device class)",
           "fitted": "fitted from measured data in this run"}


def _background(args: list[str], log: Path) -> subprocess.Popen:
    """Start one circuitnn sub-command in its own process, its output into `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"$ circuitnn {' '.join(args)} > {log} 2>&1 &", err=True)
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "circuitnn.cli", *args], stdout=fh,
                                stderr=subprocess.STDOUT)


def _run(args: list[str], capture: bool = False) -> str:
    """Run one circuitnn sub-command in-process (errors propagate as CircuitnnError); returns
    its standard output when `capture`."""
    from circuitnn.cli import cli

    click.echo(f"$ circuitnn {' '.join(args)}", err=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if capture else contextlib.nullcontext():
        cli.main(args=args, standalone_mode=False)
    return out.getvalue()


class _Stages:
    """Times each stage and says so on stderr."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        click.echo(f"[demo] {name}: {self.seconds[name]:.0f} s", err=True)


def usable_card(candidates: list[tuple[str, Path]], cfg: Any
                ) -> tuple[str, Path, list[str], dict[str, Any]]:
    """(label, card path, why the ones before it were passed over, what made it usable) of the
    first candidate card (best first) that the chain can use: an operating point
    (`circuitnn.devices.operating`: a safe read voltage, a state that holds at 0 V) and, among
    the operating-point search's candidates (`circuitnn.search.operating.candidate_grid` for
    `cfg`, the fitted run's configuration), one that the device reaches and whose pulse law can
    be derived (`circuitnn.fitting.derive`, cached, so the search reuses it)."""
    from dataclasses import replace

    from circuitnn.devices import ModelCard
    from circuitnn.network.device import array_device
    from circuitnn.search.operating import candidate_grid

    skipped = []
    for label, path in candidates:
        op = ModelCard.load(path).operating
        if not op.get("usable", True):
            skipped.append(f"{label}: {op.get('reason')}")
            continue
        t0 = time.perf_counter()
        why = []
        try:
            grid = candidate_grid(replace(cfg, iv_card=str(path)))
        except CircuitnnError as err:
            skipped.append(f"{label}: {err}")
            continue
        for choice in grid:
            try:
                dev = array_device(path, choice=choice)
            except CircuitnnError as err:
                why.append(str(err))
                continue
            return label, path, skipped, {"operating_point": dev.choice.to_json(),
                                          "seconds": time.perf_counter() - t0}
        skipped.append(f"{label}: no operating point of the search can be used ({why[0]})")
    raise CircuitnnError("no fitted card can be used in an array: " + "; ".join(skipped))


def candidates(ranking: dict[str, Any], bipolar: Path
               ) -> tuple[list[tuple[str, Path]], list[str]]:
    """The fitted cards in the order the demo tries them: Knowm M1's models by their fit
    ranking (`fit --model all`), then the bipolar loop's VTEAM card."""
    models = ranking["models"]
    ranked = sorted((m for m, e in models.items() if "card" in e),
                    key=lambda m: models[m]["score"])
    rejected = [f"Knowm M1 {m}: {e['error']}" for m, e in models.items() if "card" not in e]
    return [(f"Knowm M1 ({m})", Path(models[m]["card"])) for m in ranked] + [
        ("bipolar Cu/a-SiC/TiN (vteam)", bipolar)], rejected


def copy_figures(run: Path, dest: Path) -> list[Path]:
    """Copy the curated figures of a demo run into `dest` (atomically, one by one)."""
    from circuitnn.io import atomic_path

    copied = []
    for src, name in CURATED.items():
        if (run / src).is_file():
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(run / src, tmp)
            copied.append(dest / name)
    return copied


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's cards, figures and runs.")
@click.option("--figures-dir", default=None, type=click.Path(file_okay=False),
              help="Also copy the curated figures into this folder (`make figures`: figures/).")
@click.option("--quick", is_flag=True, help="Small, fast settings everywhere (smoke test).")
def demo(out: str, figures_dir: str | None, quick: bool) -> None:
    """Run the main job: fit the measured devices, pick the fitted card the chain can use,
    draw the tile figures, and run the reference CNN chain on the built-in and on the fitted
    device."""
    from circuitnn.datasets import bipolar_manifest, knowm_manifest
    from circuitnn.io import write_json, write_text
    from circuitnn.tile.figures import ir_drop, wire_convention

    root, t0 = Path(out), time.perf_counter()
    fits, stages = root / "fits", _Stages()
    quick_args = ["--quick"] if quick else ["--n-check", "10"]
    # the built-in device's chain needs nothing from the fits: it runs beside them
    hfox = _background(["mcnn", "run", "--out", str(root / "hfox"), *quick_args],
                       root / "hfox.log")
    try:
        effort = ["--maxiter", "3"] if quick else []
        with stages.stage("fits"):  # each fit's outputs are written atomically: a rerun resumes
            ranking_path = fits / "knowm-m1-ranking.json"
            if ranking_path.is_file():
                ranking = json.loads(ranking_path.read_text())
            else:
                knowm = write_text(fits / "knowm-m1.toml", knowm_manifest("M1"))
                ranking = json.loads(_run(
                    ["fit", str(knowm), "--model", ",".join(QUICK_MODELS if quick
                                                             else KNOWM_MODELS), "--json",
                     "--out", str(fits / "knowm-m1-{model}.json"),
                     "--figure", str(fits / "fit_knowm-m1-{model}.png")], capture=True))
                write_json(ranking_path, ranking)
            if not (fits / "bipolar-vteam.json").is_file():
                bipolar = write_text(fits / "bipolar.toml", bipolar_manifest())
                _run(["fit", str(bipolar), "--model", "vteam", *effort,
                      "--out", str(fits / "bipolar-vteam.json"),
                      "--figure", str(fits / "fit_bipolar-vteam.png")])
            if not (fits / "taox-pulse.json").is_file():
                _run(["fit-pulse", "taox-pulse", "--out", str(fits / "taox-pulse.json"),
                      "--figure", str(fits / "pulse_fit_taox-pulse.png")])
        with stages.stage("device"):
            from circuitnn.mcnn.run import McnnConfig

            cands, rejected = candidates(ranking, fits / "bipolar-vteam.json")
            fitted_cfg = McnnConfig.quick() if quick else McnnConfig()
            label, card, skipped, usable = usable_card(cands, fitted_cfg)
            skipped = rejected + skipped
            write_json(fits / "device-choice.json", {"device": label, "card": str(card),
                                                      "ranking": ranking, "skipped": skipped,
                                                      "usable": usable})
            click.echo(f"[demo] fitted device: {label} ({card}); passed over: "
                       f"{'; '.join(skipped) or 'none'}", err=True)
            _run(["device", "check", str(card)])
        with stages.stage("tile figures"):
            wire_convention(root / "tile" / "tile_wire_convention.png")
            summary = ir_drop(root / "tile" / "ir_drop_128x16.png")
            click.echo("IR drop, 128x16 reference tile: column current error "
                       f"{summary['column_error_min_pct']:.1f} .. "
                       f"{summary['column_error_max_pct']:.1f} %", err=True)
    except BaseException:  # no orphan left running: it cleans up on SIGINT, else is killed
        hfox.send_signal(signal.SIGINT)
        try:
            hfox.wait(timeout=4)
        except subprocess.TimeoutExpired:
            hfox.kill()
        raise
    with stages.stage("chain, built-in HfOx (the rest of it, after the fits)"):
        if hfox.wait() != 0:
            raise CircuitnnError(f"the built-in device's chain failed: see {root / 'hfox.log'}")
    with stages.stage("chain, fitted device (operating-point search, then the chain)"):
        _run(["mcnn", "run", "--out", str(root / "fitted"), "--iv-card", str(card),
              "--weights", str(root / "hfox" / "weights.npz"), "--operating-point", "search",
              *(["--search-seeds", str(QUICK_SEEDS)] if quick else []), *quick_args])
    compare(root, {"device": label, "card": str(card), "skipped": skipped})
    if figures_dir is not None:
        copied = copy_figures(root, Path(figures_dir))
        click.echo(f"copied {len(copied)} figures into {figures_dir}/", err=True)
    stages.seconds["total"] = time.perf_counter() - t0
    write_json(root / "timings.json", stages.seconds)
    click.echo(f"demo finished in {stages.seconds['total']:.0f} s; report: {root / 'report.md'}",
               err=True)


def _pulse_law(p: dict[str, Any]) -> str:
    """A pulse entry of report.json in a few words."""
    if p["source"] != "derived":
        return f"card {Path(p['path']).name}"
    amps = "/".join(f"{p['pulses'][w]['amplitude']:.2g}" for w in ("set", "reset"))
    return f"derived: {amps} V SET/RESET, {p['settings']['width']:.2g} s pulses"


def _operating(op: dict[str, Any]) -> str:
    """An operating point in a few words."""
    amp = "rule" if op["amplitude_reset"] is None else f"{op['amplitude_reset']:.3g} V"
    return (f"{op['source']}: SET gate {op['gate_set']:g} V, RESET {amp}, {op['scheme']}, "
            f"tolerance {op['tolerance_rel']:.2g} of a level")


def _searched(op: dict[str, Any]) -> str:
    """The chosen candidate's accuracy after transfer (mean +- sd over the chips), or why there
    is none."""
    keys = ("v_read", "g_window", "gate_set", "scheme", "tolerance_rel")
    hit = next((c for c in op.get("candidates", []) if "reason" not in c
                and all(c[k] == op[k] for k in keys)), None)
    if hit is None:
        return f"- (operating point {op['source']}, not searched)"
    if hit["n"] < 2:
        return f"{hit['transfer_accuracy_mean']:.2%} (1 chip: no sd, {hit['n_images']} images)"
    return (f"{hit['transfer_accuracy_mean']:.2%} +- {hit['transfer_accuracy_sd']:.2%} "
            f"({hit['n']} chips, {hit['n_images']} images)")


def compare(root: Path, choice: dict[str, Any]) -> Path:
    """OUT/report.md: the two devices' runs side by side."""
    from circuitnn.io import write_text
    from circuitnn.mcnn.report import _pct, variation_text
    from circuitnn.reference import REF

    reps = {k: json.loads((root / k / "report.json").read_text()) for k in DEVICES}
    ref = REF.published

    def row(name: str, get, fmt=_pct, reference: str = "-") -> str:
        return f"| {name} | " + " | ".join(fmt(get(r)) for r in reps.values()) + \
            f" | {reference} |"

    def num(x: float) -> str:
        return f"{x:,.0f}"

    lines = ["# One network, two devices", "",
             "The reference CNN (Yao et al., Nature 2020: cnn5 on eight 128 x 16 PEs, three "
             "convolver groups) trained once ex situ, then transferred, hybrid-trained and "
             "evaluated on each device. Each run's own report: "
             + ", ".join(f"[{k}]({k}/report.md)" for k in DEVICES) + ".", "",
             f"Fitted device: **{choice['device']}** (`{choice['card']}`), the first fit in "
             "the order Knowm M1 (best-ranked model first), then the bipolar loop, that the "
             "chain can use (a safe read voltage, a state that holds, an operating point it "
             "reaches with a pulse law derived from the card). Its operating point was "
             "searched for accuracy on this network (`fitted/report.md` lists every candidate); "
             "the built-in device runs at the reference's.", "",
             *([f"Passed over: {'; '.join(choice['skipped'])}.", ""] if choice["skipped"]
               else []),
             "| | " + " | ".join([DEVICES["hfox"], f"{choice['device']}, {DEVICES['fitted']}"])
             + " | Yao et al. 2020 |",
             "|---|" + "---|" * (len(DEVICES) + 1),
             row("I-V model", lambda r: r["device"]["iv_card"]["model"], str),
             row("read voltage (V)", lambda r: r["device"]["v_read"], lambda v: f"{v:g}",
                 f"{REF.hardware.v_read:g}"),
             row("window (uS)", lambda r: r["device"]["g_window"],
                 lambda w: f"{w[0] * 1e6:.3g}-{w[1] * 1e6:.3g}"),
             row("operating point", lambda r: r["device"]["operating_point"], _operating),
             row("after transfer, held-back training images (mean +- sd over chips)",
                 lambda r: r["device"]["operating_point"], _searched),
             row("pulse law", lambda r: r["device"]["pulse"], _pulse_law),
             row("device variation", lambda r: r["device"]["variation"],
                 variation_text),
             row("surrogate", lambda r: r["surrogate"],
                 lambda s: f"sha256 {str(s['card_sha256'])[:8]}, "
                 + (f"{s['validation']['rms_error']:.2%} RMS vs ngspice"
                    if s.get("validation") else "")),
             row("software accuracy", lambda r: r["software_test_accuracy"], _pct,
                 _pct(ref.software_test_accuracy)),
             row("after transfer", lambda r: r["transfer_test_accuracy"], _pct,
                 _pct(ref.transfer_test_accuracy)),
             row("after hybrid training", lambda r: r["hybrid_test_accuracy"], _pct,
                 _pct(ref.hybrid_test_accuracy)),
             row("three groups, after transfer",
                 lambda r: r["three_group"]["test_accuracy_before"], _pct,
                 _pct(ref.three_group_before)),
             row("three groups, after hybrid",
                 lambda r: r["three_group"]["test_accuracy_after"], _pct,
                 _pct(ref.three_group_after)),
             row("write-verify pulses per cell (mean)",
                 lambda r: r["transfer"]["all_used_cells"]["pulses_mean"], lambda v: f"{v:.1f}"),
             row("cells not converged", lambda r: r["transfer"]["all_used_cells"]["not_converged"],
                 str),
             row("energy per inference (nJ)",
                 lambda r: r["energy"]["energy_per_inference_J"] * 1e9, lambda v: f"{v:.1f}"),
             row("GOP/s/W", lambda r: r["energy"]["gops_per_w"], num, num(ref.gops_per_w)),
             "", "Device figures: " + ", ".join(f"[{k}]({k}/device.png)" for k in DEVICES)
             + ". Fit figures and cards: `fits/`.", ""]
    return write_text(root / "report.md", "\n".join(lines) + "\n")

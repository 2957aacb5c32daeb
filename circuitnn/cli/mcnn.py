"""`circuitnn mcnn run` and `circuitnn mcnn sweep`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from circuitnn.cli.network import (
    SEARCH_KEYS,
    device_config,
    device_options,
    exsitu_options,
    pair_option,
    searched,
)
from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF
from circuitnn.surrogate.read import ENGINES


def _tile_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as exc:
        raise CircuitnnError(f"--tile-options must be a JSON object: {exc}") from None
    if not isinstance(opts, dict):
        raise CircuitnnError("--tile-options must be a JSON object, e.g. '{\"r_wire\": 1.0}'")
    return opts


@click.group()
def mcnn() -> None:
    """The memristor CNN of Yao et al. (Nature 2020): transfer, hybrid training, sweeps."""


@mcnn.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder (checkpoints, report.json, report.md, figures, chip state).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every stage.")
@click.option("--dataset", default="mnist5k", show_default=True,
              help="mnist5k (embedded), mnist (standard 60k/10k), idx:DIR.")
@device_options
@click.option("--engine", default="surrogate", show_default=True,
              type=click.Choice([e for e, rec in ENGINES.items() if rec.chain]),
              help="How array reads are simulated in the hardware stages.")
@click.option("--epochs", default=None, type=int,
              help="Ex-situ epochs: of float training when the weights are trained here "
                   "(default 30), and with --exsitu chip of the chip-aware fine-tuning "
                   "(default 2).")
@exsitu_options("float")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="NPZ of trained cnn5 parameters (default: shipped for mnist, else train).")
@click.option("--n-test", default=1000, show_default=True, type=int,
              help="Test images split from the 5k subset.")
@click.option("--test-images", default=None, type=int, help="Use only the first N test images.")
@click.option("--hybrid-fraction", default=None, type=float,
              help="Fraction of the training images for hybrid training (default: all of a "
                   "small set, 10% of a large one).")
@click.option("--tolerance", default=None, type=float,
              help="Write-verify tolerance (uS; default: the operating point's, a fraction of "
                   "the level spacing).")
@click.option("--max-pulses", default=REF.choices.max_pulses, show_default=True, type=int,
              help="Write-verify pulse budget per cell.")
@click.option("--variation", default=1.0, show_default=True, type=float,
              help="Multiplier of the card's device-to-device spreads.")
@click.option("--adc-bits", default=REF.hardware.adc_bits, show_default=True, type=int,
              help="ADC resolution.")
@click.option("--hybrid-batches", default=REF.hybrid.batches, show_default=True, type=int,
              help="Mini-batches of in-situ FC training.")
@click.option("--hybrid-lr", default=REF.choices.hybrid_lr, show_default=True, type=float,
              help="Learning rate of hybrid training.")
@click.option("--threshold", default=REF.choices.hybrid_threshold * 1e6, show_default=True,
              type=float, help="Update threshold of hybrid training (uS).")
@click.option("--refresh-every", default=10, show_default=True, type=int,
              help="Re-program the FC tiles' circuit model every N hybrid batches (1 = exact).")
@click.option("--n-check", default=20, show_default=True, type=int,
              help="Test images in the ngspice cross-check (0 = skip).")
@click.option("--tile-options", default=None,
              help="JSON object of extra TileSpec fields for the circuit engines.")
@pair_option(False)
@click.option("--quick", is_flag=True, help="Small, fast settings (tests, smoke runs).")
def run(out: str, seed: int, dataset: str, iv_card: str | None, pulse_card: str | None,
        v_read: float | None, engine: str, epochs: int | None, exsitu: str,
        exsitu_images: int | None, exsitu_noise: bool, weights: str | None, n_test: int,
        test_images: int | None, hybrid_fraction: float | None, g_min: float | None,
        g_max: float | None, tolerance: float,
        max_pulses: int, variation: float, adc_bits: int,
        hybrid_batches: int, hybrid_lr: float, threshold: float, refresh_every: int,
        n_check: int, tile_options: str | None, pair_compensation: bool, quick: bool,
        **device) -> None:
    """Run the reference chain (cnn5 on eight PEs, three convolver groups) into --out,
    resuming finished stages, and write report.json / report.md beside the published figures."""
    from circuitnn.mcnn.run import MCNN_SALT, McnnConfig, run_chain

    search = {k: device.pop(k) for k in SEARCH_KEYS}
    kw = dict(seed=seed, dataset=dataset,
              **device_config(iv_card, pulse_card, v_read, g_min, g_max, **device),
              engine=engine, weights=weights, n_test_split=n_test, exsitu=exsitu,
              exsitu_images=exsitu_images, exsitu_noise=exsitu_noise,
              hybrid_fraction=hybrid_fraction,
              tolerance=None if tolerance is None else tolerance * 1e-6,
              variation_scale=variation, adc_bits=adc_bits,
              hybrid_lr=hybrid_lr, hybrid_threshold=threshold * 1e-6,
              refresh_every=refresh_every, tile_options=_tile_options(tile_options),
              pair_compensation=pair_compensation)
    if test_images is not None:
        kw["test_images"] = test_images
    if epochs is None and exsitu == "float":
        epochs = 30
    defaults = {"epochs": (epochs, 30), "hybrid_batches": (hybrid_batches, REF.hybrid.batches),
                "n_check": (n_check, 20), "max_pulses": (max_pulses, REF.choices.max_pulses)}
    if quick:
        cfg = McnnConfig.quick(**kw, **{k: v for k, (v, d) in defaults.items() if v != d})
    else:
        cfg = McnnConfig(**kw, **{k: v for k, (v, _) in defaults.items()})
    log = run_chain(searched(cfg, out, search, MCNN_SALT), out).log
    rep = log.results["report"].report
    click.echo(f"software {rep['software_test_accuracy']:.4f}  quantised "
               f"{rep['quantized_test_accuracy']:.4f}  transfer {rep['transfer_test_accuracy']:.4f}"
               f"  hybrid {rep['hybrid_test_accuracy']:.4f}  three groups "
               f"{rep['three_group']['test_accuracy_before']:.4f} -> "
               f"{rep['three_group']['test_accuracy_after']:.4f}")
    click.echo(f"stages computed: {', '.join(log.computed) or 'none (all loaded)'}; "
               f"report: {Path(out) / 'report.md'}")


@mcnn.command()
@click.option("--run-dir", required=True, type=click.Path(file_okay=False),
              help="Folder of a finished `mcnn run` (its trained network is reused).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default RUN_DIR/sweep).")
@click.option("--engine", default="surrogate", show_default=True,
              type=click.Choice([e for e, rec in ENGINES.items() if rec.chain and e != "ideal"]),
              help="Circuit engine for the wire-resistance and array-size axes.")
@click.option("--n-images", default=300, show_default=True, type=int,
              help="Test images per point.")
@click.option("--axes", default="wire,size,variation,adc,window", show_default=True,
              help="Comma-separated axes to sweep.")
def sweep(run_dir: str, out: str | None, engine: str, n_images: int, axes: str) -> None:
    """Accuracy under circuit effects vs wire resistance, array size, device variation,
    ADC bits and conductance window (after transfer, one convolver group)."""
    from circuitnn.mcnn.sweep import run_sweep

    res = run_sweep(run_dir, out, engine=engine, n_images=n_images,
                    axes=[a.strip() for a in axes.split(",") if a.strip()])
    for axis, pts in res["axes"].items():
        vals = ", ".join(f"{p['value']:g}: {p['accuracy']:.3f}" if p.get("accuracy") is not None
                         else f"{p['value']:g}: n/a" for p in pts)
        click.echo(f"{axis}: {vals}")
    click.echo(f"figure: {res['figure']}")

"""`circuitnn network run` (the accuracy question for a preset network on a dataset) and
`circuitnn network map` (how a network's layers sit on tiles)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from circuitnn.network.presets import PRESETS
from circuitnn.reference import REF
from circuitnn.surrogate.read import ENGINES

DEVICE_OPTIONS = (
    click.option("--iv-card", default=None, type=click.Path(dir_okay=False),
                 help="I-V card of the cells (default: the built-in HfOx card), read at its safe "
                      "read voltage in its programmable window (see `circuitnn device check`)."),
    click.option("--pulse-card", default=None, type=click.Path(dir_okay=False),
                 help="Pulse-update card of the same device (default: the pulse law derived "
                      "from the I-V card, `circuitnn fit-pulse --from-card`)."),
    click.option("--v-read", default=None, type=float,
                 help="Read voltage (V; default: the I-V card's safe read voltage)."),
    click.option("--g-min", default=None, type=float,
                 help="Window g_min (uS; default: the device's window, for the built-in card the "
                      f"reference's {REF.choices.g_min * 1e6:g}-{REF.choices.g_max * 1e6:g} uS)."),
    click.option("--g-max", default=None, type=float, help="Window g_max (uS), with --g-min."),
    click.option("--accept-read-error", is_flag=True,
                 help="Use the I-V card even when it is off by more than 0.5 decade from its "
                      "measured data at v_read (refused otherwise; the report says so)."),
    click.option("--operating-point", "operating_point", default=None,
                 type=click.Choice(["rule", "search"]),
                 help="How the operating point (read voltage, window, SET gate, RESET "
                      "amplitude, write-verify tolerance, scheme) is chosen: 'search' for "
                      "accuracy on this network, 'rule' by the card's rules. Default: the one "
                      "the card carries (the built-in card: the reference's), else 'search' "
                      "for a card given with --iv-card."),
    click.option("--gate-set", default=None, type=float,
                 help="SET word-line voltage (V): the access transistor's compliance."),
    click.option("--amplitude-reset", default=None, type=float,
                 help="RESET pulse amplitude (V; default: the pulse derivation's rule)."),
    click.option("--tolerance-rel", default=None, type=float,
                 help="Write-verify tolerance as a fraction of the level spacing."),
    click.option("--scheme", default=None, type=click.Choice(["fixed", "incremental"]),
                 help="Programming scheme: fixed pulses, or incremental steps (SET gate "
                      "ramp, RESET amplitude ramp)."),
    click.option("--device-spread", default=None, type=float,
                 help="Device-to-device spread to use instead of the device's own: standard "
                      "deviation of each cell's bounds as a fraction of the window, and of the "
                      "logarithm of its step scales (default: the spread measured over the "
                      "devices the card was fitted to, or the pulse card's)."),
    click.option("--read-noise", default=None, type=float,
                 help="Relative read noise of every cell, per read (default: the card's "
                      "variation.read_noise.sigma_rel, else 0; the pulse law's level noise "
                      "always adds)."),
    click.option("--stuck-low", default=None, type=float,
                 help="Fraction of cells stuck at the low bound (default: half of the "
                      f"reference's {1 - REF.choices.cell_yield:g} stuck cells)."),
    click.option("--stuck-high", default=None, type=float,
                 help="Fraction of cells stuck at the high bound (default: the other half)."),
    click.option("--chip-seed", default=0, show_default=True, type=int,
                 help="Which chip to draw: the seed of its cells' devices, stuck cells, "
                      "programming and read noise (several seeds: chip-to-chip statistics)."),
    click.option("--search-seeds", default=3, show_default=True, type=int,
                 help="Chips each candidate operating point is evaluated on."),
    click.option("--workers", default=2, show_default=True, type=int,
                 help="Dask worker processes of the search's local cluster."),
    click.option("--scheduler", default=None,
                 help="Address of an existing Dask scheduler for the search."),
)
SEARCH_KEYS = ("search_seeds", "workers", "scheduler")


def pair_option(default: bool):
    """`--pair-compensation` (`network run` on, `mcnn run` off: the reference's plain
    write-verify)."""
    return click.option(
        "--pair-compensation/--no-pair-compensation", default=default, show_default=True,
        help="After write-verify, re-target the other cell of the differential pair of every "
             "cell that ended off its target (stuck, or out of pulses) by the same offset, so "
             "the pair's difference holds, and verify it again.")


def exsitu_options(default: str):
    """The options of ex-situ training (`network run`, `mcnn run`), `--exsitu` defaulting to
    `default`."""
    options = (
        click.option("--exsitu", type=click.Choice(["float", "chip"]), default=default,
                     show_default=True,
                     help="Ex-situ training: float (software), or chip: start from the float "
                          "weights (--weights, shipped, else trained float first) and fine-tune "
                          "them with every forward pass through the chip's arithmetic "
                          "(conductance levels of the device's window, bit-serial inputs, ADC, "
                          "the engine's tile reads: surrogate, quantised or ideal), gradients "
                          "straight-through."),
        click.option("--exsitu-images", default=None, type=int,
                     help="--exsitu chip: fine-tune on a seeded subset of N training images."),
        click.option("--exsitu-noise", is_flag=True,
                     help="--exsitu chip: add the programming error write-verify leaves (uniform "
                          "within +-tolerance) to every cell in every training step."),
    )

    def add(command):
        for option in reversed(options):
            command = option(command)
        return command

    return add


def device_options(command):
    """Add the options that name the device of every cell and its operating point (`network
    run`, `mcnn run`)."""
    for option in reversed(DEVICE_OPTIONS):
        command = option(command)
    return command


def device_config(iv_card: str | None, pulse_card: str | None, v_read: float | None,
                  g_min: float | None, g_max: float | None, **kw) -> dict:
    """Those options as `RunConfig` fields (window in S) and the search's (SEARCH_KEYS)."""
    if (g_min is None) != (g_max is None):
        raise click.UsageError("give --g-min and --g-max together")
    return dict(iv_card=iv_card, pulse_card=pulse_card, v_read=v_read,
                g_min=None if g_min is None else g_min * 1e-6,
                g_max=None if g_max is None else g_max * 1e-6, **kw)


def searched(cfg, out: str, search: dict, salt: str | None = None):
    """`cfg` at its operating point: searched when asked for or by default (a card that carries
    none), else as it is; the search's options are checked either way. `salt`: the run's."""
    from circuitnn.search.operating import check_search, run_searched, wants_search
    from circuitnn.training.pipeline import NETWORK_SALT

    seeds, workers, scheduler = (search[k] for k in SEARCH_KEYS)
    check_search(seeds, workers, scheduler)
    if wants_search(cfg):
        return run_searched(cfg, out, seeds, workers, scheduler, salt=salt or NETWORK_SALT)
    return cfg


@click.group()
def network() -> None:
    """Any network on memristor tiles: mapping, transfer, hybrid training, accuracy, energy."""


@network.command()
@click.option("--network", "name", required=True, type=click.Choice(PRESETS),
              help="Preset network.")
@click.option("--dataset", default="mnist5k", show_default=True,
              help="mnist5k (embedded), mnist (standard 60k/10k), idx:DIR, cifar10:DIR.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (checkpoints, report.json, figures).")
@click.option("--train-images", default=None, type=int,
              help="Use a seeded random subset of N training images.")
@click.option("--test-images", default=None, type=int,
              help="Use a seeded random subset of N test images.")
@click.option("--replicate-first", default=1, show_default=True, type=int,
              help="Replicate the first convolution into K groups (each a band of rows).")
@click.option("--hybrid-fraction", default=None, type=float,
              help="Fraction of the training images for hybrid training (default 0.03 for "
                   "the ResNets; cnn5: all of a small set, 0.10 of a large one).")
@click.option("--engine", default="surrogate", show_default=True,
              type=click.Choice([e for e, rec in ENGINES.items() if rec.chain]),
              help="How array reads are simulated.")
@device_options
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="NPZ of trained parameters: the preset's, or another run's "
                   "weights.npz (default: shipped weights, else train).")
@click.option("--epochs", default=None, type=int,
              help="Ex-situ epochs: of float training when the weights are trained here "
                   "(default 30 numpy cnn5, 15 PyTorch), and with --exsitu chip of the "
                   "chip-aware fine-tuning (default 2).")
@exsitu_options("chip")
@click.option("--hybrid-batches", default=REF.hybrid.batches, show_default=True, type=int,
              help="Mini-batches of in-situ training of the last layer.")
@click.option("--n-energy", default=20, show_default=True, type=int,
              help="Test images whose reads are counted for energy.")
@click.option("--calibrate-columns/--no-calibrate-columns", default=True, show_default=True,
              help="After transfer, measure every output column of every row block with the "
                   "layer inputs of 8 training images and apply a fitted digital gain and "
                   "offset before partial sums are added (bit-serial engines; a few seconds).")
@pair_option(True)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every stage.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout.")
def run(name: str, dataset: str, out: str, train_images: int | None, test_images: int | None,
        replicate_first: int, hybrid_fraction: float | None, engine: str, iv_card: str | None,
        pulse_card: str | None, v_read: float | None, g_min: float | None,
        g_max: float | None, weights: str | None, epochs: int | None, exsitu: str,
        exsitu_images: int | None, exsitu_noise: bool, hybrid_batches: int,
        n_energy: int, calibrate_columns: bool, pair_compensation: bool, seed: int,
        as_json: bool, **device) -> None:
    """Run the whole chain for a preset network (resuming finished stages) and write
    OUT/report.json and OUT/report.md."""
    from circuitnn.io import write_json, write_text
    from circuitnn.mcnn.report import operating_lines
    from circuitnn.training.pipeline import (
        RunConfig,
        network_markdown,
        network_report,
        run_pipeline,
    )

    search = {k: device.pop(k) for k in SEARCH_KEYS}
    cfg = RunConfig(network=name, dataset=dataset, train_images=train_images,
                    test_images=test_images, replicate_first=replicate_first,
                    hybrid_fraction=hybrid_fraction, engine=engine,
                    **device_config(iv_card, pulse_card, v_read, g_min, g_max, **device),
                    weights=weights, epochs=epochs, exsitu=exsitu,
                    exsitu_images=exsitu_images, exsitu_noise=exsitu_noise,
                    hybrid_batches=hybrid_batches, n_energy=n_energy, seed=seed,
                    calibrate_columns=calibrate_columns, pair_compensation=pair_compensation)
    ctx = run_pipeline(searched(cfg, out, search), out)
    rep = network_report(ctx)
    write_json(Path(out) / "report.json", rep)
    dev = rep["device"]
    name = "ohmic cells" if dev["iv_card"] is None else f"`{dev['iv_card']['path']}`"
    lines = [*network_markdown(rep), f"## Device: {name}", "",
             *operating_lines(dev["operating_point"])]
    write_text(Path(out) / "report.md", "\n".join(lines) + "\n")
    if as_json:
        click.echo(json.dumps(rep, indent=2))
        return
    click.echo(f"{name} on {rep['data']['source']} (ex situ: {exsitu}): software "
               f"{rep['software_test_accuracy']:.4f}"
               f"  quantised {rep['quantized_test_accuracy']:.4f}  transfer "
               f"{rep['transfer_test_accuracy']:.4f}  hybrid {rep['hybrid_test_accuracy']:.4f}"
               f"  ({rep['tiles']} tiles, {rep['energy']['energy_per_inference_J'] * 1e9:.1f} "
               "nJ per inference)")
    click.echo(f"stages computed: {', '.join(ctx.log.computed) or 'none (all loaded)'}; "
               f"report: {Path(out) / 'report.json'}")


@network.command("map")
@click.option("--network", "name", required=True, type=click.Choice(PRESETS),
              help="Preset network.")
@click.option("--input-shape", default="28,28,1", show_default=True,
              help="H,W,C of the input images (e.g. 32,32,3 for CIFAR-10).")
@click.option("--replicate-first", default=1, show_default=True, type=int,
              help="Replicate the first convolution into K groups.")
@click.option("--rows", default=REF.hardware.pe_rows, show_default=True, type=int,
              help="Tile rows.")
@click.option("--cols", default=REF.hardware.pe_cols, show_default=True, type=int,
              help="Tile columns (two per output: G+ and G-).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Write the mapping figure (PNG) here.")
def map_command(name: str, input_shape: str, replicate_first: int, rows: int, cols: int,
                plot: str | None) -> None:
    """Map a preset network onto tiles and print tiles per layer and utilisation."""
    from circuitnn.errors import CircuitnnError
    from circuitnn.network.mapping import auto_map, describe_mapping, plot_mapping
    from circuitnn.network.presets import preset

    try:
        shape = tuple(int(v) for v in input_shape.split(","))
    except ValueError:
        raise CircuitnnError(f"--input-shape must be H,W,C integers, got {input_shape}") from None
    if len(shape) != 3:
        raise CircuitnnError(f"--input-shape must be H,W,C, got {input_shape}")
    if replicate_first < 1:
        raise CircuitnnError(f"--replicate-first must be >= 1, got {replicate_first}")
    net = preset(name, shape)
    first = net.weight_layers[0]
    m = auto_map({k: net.weight_shape(k) for k in net.weight_layers},
                 {first: replicate_first}, rows, cols)
    text = describe_mapping(m).splitlines()
    click.echo("\n".join(text[:len(net.weight_layers) + 2]))
    click.echo(f"MACs per image: {sum(net.macs().values()):,}")
    if plot:
        plot_mapping(m, plot)
        click.echo(f"figure: {plot}")

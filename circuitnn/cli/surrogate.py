"""`circuitnn surrogate fit|validate`: calibrate a surrogate card and check it against ngspice."""

from __future__ import annotations

import json
from pathlib import Path

import click

from circuitnn.cache import cache_dir
from circuitnn.devices import BUILTIN_CARD, ModelCard, builtin_card
from circuitnn.errors import CircuitnnError


def _card(path: str | None) -> tuple[ModelCard, str]:
    if path is None:
        return builtin_card(), "builtin (device_models/stanford-pku-hfox.json)"
    return ModelCard.load(path), str(path)


def _tiles(rows: int, cols: int, r_min: float, r_max: float, vectors: int, g_min: float | None,
           g_max: float | None):
    from circuitnn.surrogate.calibrate import TileSet

    if rows < 2 or cols < 1:
        raise CircuitnnError(f"tile must have rows >= 2 and cols >= 1, got {rows} x {cols}")
    if not 0 <= r_min <= r_max:
        raise CircuitnnError(f"need 0 <= --r-min <= --r-max, got {r_min}, {r_max}")
    if vectors < 8:
        raise CircuitnnError(f"--vectors must be >= 8, got {vectors}")
    g = None
    if g_min is not None or g_max is not None:
        if g_min is None or g_max is None or not 0 < g_min < g_max:
            raise CircuitnnError("give both --g-min and --g-max (siemens), 0 < g-min < g-max")
        g = (g_min, g_max)
    return TileSet(rows=rows, cols=cols, r_range=(r_min, r_max), g_range=g, n_vectors=vectors)


_common = [
    click.option("--rows", type=int, default=128, show_default=True, help="tile rows"),
    click.option("--cols", type=int, default=16, show_default=True, help="tile columns"),
    click.option("--r-min", type=float, default=0.0, show_default=True,
                 help="smallest r_row / r_col (ohm per segment)"),
    click.option("--r-max", type=float, default=3.0, show_default=True,
                 help="largest r_row / r_col (ohm per segment)"),
    click.option("--vectors", type=int, default=48, show_default=True,
                 help="input vectors per tile"),
    click.option("--g-min", type=float, default=None,
                 help="smallest conductance (S); default: the device card's default window"),
    click.option("--g-max", type=float, default=None,
                 help="largest conductance (S); default: the device card's default window"),
    click.option("--device", "device", type=click.Path(dir_okay=False), default=None,
                 help="device model card (default: the built-in card)"),
    click.option("--work-dir", type=click.Path(file_okay=False), default=None,
                 help="where solved tiles are kept (resumable; default: a folder in the user "
                 "cache, $CIRCUITNN_CACHE or ~/.cache/circuitnn)"),
    click.option("--workers", type=int, default=2, show_default=True,
                 help="Dask worker processes"),
    click.option("--scheduler", default=None, help="address of an existing Dask scheduler"),
]


def common(fn):
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.group()
def surrogate() -> None:
    """Fast behavioural surrogate of 1T1R tile reads, calibrated to circuit solutions."""


@surrogate.command("fit")
@common
@click.option("--tiles", type=int, default=24, show_default=True,
              help="calibration tiles (nodal solutions)")
@click.option("--check-tiles", type=int, default=2, show_default=True,
              help="fresh tiles read by ngspice as a check (0: none)")
@click.option("--seed", type=int, default=1, show_default=True, help="random seed")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="card path (default: surrogate-<device card>-<rows>x<cols>.json in the user "
              "cache's surrogate/ folder, where reads find it)")
def fit(rows, cols, r_min, r_max, vectors, g_min, g_max, device, work_dir, workers, scheduler,
        tiles, check_tiles, seed, out) -> None:
    """Generate nodal/ngspice solutions of network-like tiles on Dask, fit the surrogate's
    factors and write a surrogate card (JSON, with domain, provenance and fit errors)."""
    from circuitnn.surrogate.calibrate import calibrate
    from circuitnn.surrogate.card import CACHE_SUB

    if tiles < 1 or check_tiles < 0:
        raise CircuitnnError("--tiles must be >= 1 and --check-tiles >= 0")
    card, card_file = _card(device)
    ts = _tiles(rows, cols, r_min, r_max, vectors, g_min, g_max)
    stem = Path(device).stem if device else Path(BUILTIN_CARD).stem
    out = out or cache_dir(CACHE_SUB) / f"surrogate-{stem}-{rows}x{cols}.json"
    work = work_dir or cache_dir(CACHE_SUB) / f"work-{stem}-{rows}x{cols}"
    sc = calibrate(ts, out, work, card, card_file, tiles, check_tiles, seed, scheduler,
                   workers)
    click.echo(f"wrote {out}")
    click.echo(json.dumps({"theta": sc.theta, "fit": sc.fit}, indent=2))


@surrogate.command("validate")
@common
@click.option("--card", "card_path", type=click.Path(dir_okay=False), required=True,
              help="surrogate card to validate")
@click.option("--tiles", type=int, default=3, show_default=True, help="fresh tiles")
@click.option("--engine", type=click.Choice(["ngspice", "nodal"]), default="ngspice",
              show_default=True, help="reference solver")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="write parity plots (PNG) here")
def validate_cmd(rows, cols, r_min, r_max, vectors, g_min, g_max, device, work_dir, workers,
                 scheduler, card_path, tiles, engine, plot) -> None:
    """Compare a surrogate card with ngspice on freshly drawn tiles (targets: RMS <= 0.5%,
    max <= 2% of the RMS current, >= 95% of the ideal-vs-ngspice deviation captured)."""
    from circuitnn.surrogate.card import CACHE_SUB, SurrogateCard
    from circuitnn.surrogate.validate import validate

    sc = SurrogateCard.load(card_path)
    card, _ = _card(device)
    ts = _tiles(rows, cols, r_min, r_max, vectors, g_min, g_max)
    work = Path(work_dir) if work_dir else cache_dir(CACHE_SUB) / "work-validate"
    res = validate(sc, ts, work, tiles, card, engine, scheduler=scheduler,
                   n_workers=workers, plot=plot)
    click.echo(json.dumps(res, indent=2))

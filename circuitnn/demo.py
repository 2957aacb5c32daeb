"""`circuitnn demo`: the main job end to end on embedded defaults.

Stages (each through the same commands a user runs): fit compact models to the measured I-V loops
and pulse ramps, draw the tile figures (wire convention, IR drop of the 128 x 16 reference array),
and run the memristor-CNN chain (transfer, hybrid training, energy) on the built-in surrogate.
Outputs: cards and run data under --out, figures under figures/.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def _run(args: list[str]) -> None:
    """Run one circuitnn sub-command in-process (errors propagate as CircuitnnError)."""
    from circuitnn.cli import cli

    click.echo(f"$ circuitnn {' '.join(args)}", err=True)
    cli.main(args=args, standalone_mode=False)


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's cards, manifests and the CNN run.")
@click.option("--fit-maxiter", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="Generations of the global search in the I-V fits.")
@click.option("--skip-fits", is_flag=True, help="Skip the device-fitting stage.")
@click.option("--skip-mcnn", is_flag=True, help="Skip the memristor-CNN chain.")
@click.option("--quick", is_flag=True, help="Small, fast settings everywhere (smoke test).")
def demo(out: str, fit_maxiter: int, skip_fits: bool, skip_mcnn: bool, quick: bool) -> None:
    """Run the main job: fit the built-in examples, draw the figures, run the CNN chain."""
    from circuitnn.datasets import bipolar_manifest, knowm_manifest
    from circuitnn.io import write_text

    root = Path(out)
    cards = root / "cards"
    t0 = time.perf_counter()
    if not skip_fits:
        maxiter = "3" if quick else str(fit_maxiter)
        for name, text, model in (("knowm-m1", knowm_manifest(), "yakopcic"),
                                  ("bipolar", bipolar_manifest(), "vteam")):
            manifest = write_text(root / f"{name}.toml", text)
            _run(["fit", str(manifest), "--model", model, "--maxiter", maxiter,
                  "--out", str(cards / f"{name}-{model}.json"),
                  "--figure", str(FIGURES / f"fit_{name}-{model}.png")])
        for dataset in ("taox-pulse", "reram-pulse-gong"):
            _run(["fit-pulse", dataset, "--out", str(cards / f"{dataset}.json"),
                  "--figure", str(FIGURES / f"pulse_fit_{dataset}.png")])
    from circuitnn.tile.figures import ir_drop, wire_convention

    wire_convention()
    summary = ir_drop()
    click.echo("IR drop, 128x16 reference tile: column current error "
               f"{summary['column_error_min_pct']:.1f} .. {summary['column_error_max_pct']:.1f} %",
               err=True)
    if not skip_mcnn:
        args = ["mcnn", "run", "--out", str(root / "mcnn")]
        _run(args + (["--quick"] if quick else []))
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {root}/ and "
               f"{FIGURES}/", err=True)


"""`circuitnn demo`: the main job end to end on embedded defaults.

Stages (each through the same commands a user runs): fit compact models to the measured I-V loops
and pulse ramps, draw the tile figures (wire convention, IR drop of the 128 x 16 reference array),
and run the memristor-CNN chain (transfer, hybrid training, energy) on the built-in surrogate.
Everything is written under --out (default runs/demo); `--figures-dir` also copies the curated
figures there (`make figures` uses it to refresh the repository's figures/).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

#: figures of a demo run that are curated in the repository's figures/ (path under --out)
CURATED = {
    "fits/fit_knowm-m1-yakopcic.png": "fit_knowm-m1-yakopcic.png",
    "fits/fit_bipolar-vteam.png": "fit_bipolar-vteam.png",
    "fits/pulse_fit_taox-pulse.png": "pulse_fit_taox-pulse.png",
    "fits/pulse_fit_reram-pulse-gong.png": "pulse_fit_reram-pulse-gong.png",
    "tile/tile_wire_convention.png": "tile_wire_convention.png",
    "tile/ir_drop_128x16.png": "ir_drop_128x16.png",
    "mcnn/mapping.png": "pe_mapping.png",
    "mcnn/transfer_error_hist.png": "mcnn_transfer_error_hist.png",
    "mcnn/transfer_pulse_hist.png": "mcnn_transfer_pulse_hist.png",
    "mcnn/hybrid_accuracy.png": "mcnn_hybrid_accuracy.png",
}


def _run(args: list[str]) -> None:
    """Run one circuitnn sub-command in-process (errors propagate as CircuitnnError)."""
    from circuitnn.cli import cli

    click.echo(f"$ circuitnn {' '.join(args)}", err=True)
    cli.main(args=args, standalone_mode=False)


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
              help="Folder for the demo's cards, figures and the CNN run.")
@click.option("--figures-dir", default=None, type=click.Path(file_okay=False),
              help="Also copy the curated figures into this folder (`make figures`: figures/).")
@click.option("--fit-maxiter", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="Generations of the global search in the I-V fits.")
@click.option("--skip-fits", is_flag=True, help="Skip the device-fitting stage.")
@click.option("--skip-mcnn", is_flag=True, help="Skip the memristor-CNN chain.")
@click.option("--quick", is_flag=True, help="Small, fast settings everywhere (smoke test).")
def demo(out: str, figures_dir: str | None, fit_maxiter: int, skip_fits: bool, skip_mcnn: bool,
         quick: bool) -> None:
    """Run the main job: fit the built-in examples, draw the figures, run the CNN chain."""
    from circuitnn.datasets import bipolar_manifest, knowm_manifest
    from circuitnn.io import write_text

    root = Path(out)
    fits = root / "fits"
    t0 = time.perf_counter()
    if not skip_fits:
        maxiter = "3" if quick else str(fit_maxiter)
        for name, text, model in (("knowm-m1", knowm_manifest(), "yakopcic"),
                                  ("bipolar", bipolar_manifest(), "vteam")):
            manifest = write_text(fits / f"{name}.toml", text)
            _run(["fit", str(manifest), "--model", model, "--maxiter", maxiter,
                  "--out", str(fits / f"{name}-{model}.json"),
                  "--figure", str(fits / f"fit_{name}-{model}.png")])
        for dataset in ("taox-pulse", "reram-pulse-gong"):
            _run(["fit-pulse", dataset, "--out", str(fits / f"{dataset}.json"),
                  "--figure", str(fits / f"pulse_fit_{dataset}.png")])
    from circuitnn.tile.figures import ir_drop, wire_convention

    wire_convention(root / "tile" / "tile_wire_convention.png")
    summary = ir_drop(root / "tile" / "ir_drop_128x16.png")
    click.echo("IR drop, 128x16 reference tile: column current error "
               f"{summary['column_error_min_pct']:.1f} .. {summary['column_error_max_pct']:.1f} %",
               err=True)
    if not skip_mcnn:
        args = ["mcnn", "run", "--out", str(root / "mcnn")]
        _run(args + (["--quick"] if quick else []))
    if figures_dir is not None:
        copied = copy_figures(root, Path(figures_dir))
        click.echo(f"copied {len(copied)} figures into {figures_dir}/", err=True)
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {root}/", err=True)

"""`circuitnn export`: a model card as a SPICE subcircuit or a Verilog-A module, optionally
checked in a second simulator."""

from __future__ import annotations

import json
from pathlib import Path

import click

from circuitnn.errors import CircuitnnError


@click.command("export")
@click.argument("card", type=click.Path(dir_okay=False))
@click.option("--format", "kind", required=True,
              help="spice (a .subckt NAME p n for ngspice and SPICE simulators) or verilog-a "
                   "(a module NAME(p, n) for OpenVAF / VACASK, Spectre, Xyce, ...).")
@click.option("--name", required=True,
              help="Subcircuit or module name: a letter or _, then letters, digits or _.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="File to write (its folder must exist).")
@click.option("--check", is_flag=True,
              help="Simulate the written file in a second simulator (ngspice for spice, VACASK "
                   "for verilog-a) on the card's measured waveforms (a sine when it has none) "
                   "and compare with circuitnn's own simulation of the card; fails above NRMSE "
                   "1e-2 (spice) or 1e-3 (verilog-a).")
@click.option("--json", "as_json", is_flag=True,
              help='With --check: print {"simulator": ..., "nrmse": x, "waveform": ...}.')
def export(card: str, kind: str, name: str, out: str, check: bool, as_json: bool) -> None:
    """Export the fitted model CARD (circuitnn fit) for another simulator: the model's own
    equations with the card's values, its state clamped to its bounds, the initial state a
    parameter s0 (default: the middle of the state range), the card's source and fit quality
    in a header comment. See the README, "Use your fitted model in another simulator"."""
    from circuitnn.devices.card import ModelCard
    from circuitnn.spice import export as ex

    ex.check_format(kind)
    ex.check_name(name, kind)
    model_card = ModelCard.load(card)
    text = ex.export_text(model_card, kind, name, source=card)
    if check and kind == "verilog-a":
        from circuitnn.spice.vacask import tools

        tools()  # says how to install VACASK, before anything is written
    path = ex.write_export(text, out)
    if not check:
        click.echo(f"wrote {path} ({kind}, {'module' if kind == 'verilog-a' else 'subcircuit'} "
                   f"{name})", err=as_json)
        return
    from circuitnn.fitting.export_check import check_export

    result = check_export(model_card, Path(path).read_text(), kind, name, where=card)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(f"wrote {path}; {result.simulator}: NRMSE {result.nrmse:.3g} against "
                   f"circuitnn's simulation (target <= {result.target:g}) on {result.waveform}")
        for wave, err in result.per_waveform.items():
            click.echo(f"  {wave}: NRMSE {err:.3g}")
    if not result.passed:
        raise CircuitnnError(f"check failed: {result.simulator} NRMSE {result.nrmse:.3g} > "
                             f"{result.target:g} (the file {path} was kept)")

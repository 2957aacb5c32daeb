"""`circuitnn netlist` and `circuitnn simulate`: tile read netlists and reads from the shell."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF
from circuitnn.surrogate.read import ENGINES


def load_array(path: str, what: str) -> np.ndarray:
    """A 1-D or 2-D float array from .npy (never unpickled) or .csv (comma separated)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        elif suffix == ".csv":
            a = np.loadtxt(p, delimiter=",", dtype=float, ndmin=2, comments="#")
        else:
            raise CircuitnnError(f"{path}: {what} must be a .npy or .csv file")
    except FileNotFoundError:
        raise CircuitnnError(f"{path}: {what} file not found") from None
    except CircuitnnError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        msg = " ".join(str(exc).split())[:160]
        raise CircuitnnError(f"{path}: cannot read {what} ({msg})") from None
    if a.dtype.kind not in "fiub":
        raise CircuitnnError(f"{path}: {what} must hold numbers, got dtype {a.dtype}")
    return a.astype(float)


def _spec(conductance: str, card: str | None, cell: str, r_row: float, r_col: float):
    from circuitnn.devices import ModelCard
    from circuitnn.tile.spec import TileSpec

    g = load_array(conductance, "conductance")
    if g.ndim != 2:
        raise CircuitnnError(f"{conductance}: conductance must be a 2-D (rows, cols) array")
    device = ModelCard.load(card) if card else None
    return TileSpec(g, cell=cell, device=device, r_row=r_row, r_col=r_col)


def _inputs(path: str | None, spec) -> np.ndarray:
    if path is None:
        return np.full((1, spec.rows), spec.v_read)
    v = load_array(path, "inputs")
    return v[None, :] if v.ndim == 1 else v


_common = [
    click.option("--conductance", "conductance", required=True,
                 type=click.Path(dir_okay=False),
                 help="(rows, cols) programmed read conductances in siemens (.npy or .csv)."),
    click.option("--card", type=click.Path(dir_okay=False), default=None,
                 help="Device model card (JSON); default: ohmic cells of exactly G."),
    click.option("--cell", type=click.Choice(["1t1r", "passive"]), default="1t1r",
                 show_default=True, help="Cell: memristor + access transistor, or memristor."),
    click.option("--r-row", type=float, default=REF.choices.r_wire, show_default=True,
                 help="Input (row) wire resistance per segment, ohms."),
    click.option("--r-col", type=float, default=REF.choices.r_wire, show_default=True,
                 help="Output (column) wire resistance per segment, ohms."),
]


def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return deco


@click.command("netlist")
@_apply(_common)
@click.option("--inputs", type=click.Path(dir_okay=False), default=None,
              help="(batch, rows) input volts (.npy or .csv); default: all rows at v_read.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Netlist file to write (.cir).")
def netlist(conductance, card, cell, r_row, r_col, inputs, out) -> None:
    """Write a tile read netlist that plain `ngspice -b` runs (one DC point per input vector)."""
    from circuitnn.io import write_text
    from circuitnn.tile.netlist import read_netlist

    spec = _spec(conductance, card, cell, r_row, r_col)
    text = read_netlist(spec, _inputs(inputs, spec))
    write_text(out, text)
    click.echo(f"wrote {out} ({spec.rows}x{spec.cols} {cell} tile)", err=True)


@click.command("simulate")
@_apply(_common)
@click.option("--inputs", required=True, type=click.Path(dir_okay=False),
              help="(batch, rows) input volts (.npy or .csv).")
@click.option("--engine", type=click.Choice([e for e, rec in ENGINES.items() if rec.read]),
              default="ngspice", show_default=True, help="Read engine.")
@click.option("--backend", type=click.Choice(["subprocess", "shared"]), default="subprocess",
              show_default=True,
              help="How ngspice runs: the `ngspice -b` executable, or libngspice in a worker "
                   "process through PySpice's shared mode (engine ngspice only).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Result: .npz (arrays I, V) or .csv (one row of column currents per vector).")
def simulate(conductance, card, cell, r_row, r_col, inputs, engine, backend, out) -> None:
    """Read a tile: column currents (A) for each input vector, written to OUT."""
    from tqdm import tqdm

    from circuitnn.io import write_npz, write_text
    from circuitnn.surrogate.read import read

    suffix = Path(out).suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise CircuitnnError(f"{out}: output must end in .npz or .csv")
    if backend != "subprocess" and engine != "ngspice":
        raise CircuitnnError(f"--backend {backend} applies to --engine ngspice only")
    spec = _spec(conductance, card, cell, r_row, r_col)
    v = _inputs(inputs, spec)
    with tqdm(total=1, desc=f"{engine} read", unit="run", disable=None) as bar:
        options = {"backend": backend} if engine == "ngspice" else {}
        current = read(spec, v, engine=engine, **options)
        bar.update(1)
    if suffix == ".npz":
        write_npz(out, I=current, V=v)
    else:
        lines = ["# column currents (A), one row per input vector"]
        lines += [",".join(repr(float(x)) for x in row) for row in current]
        write_text(out, "\n".join(lines) + "\n")
    click.echo(f"wrote {out} ({current.shape[0]} vectors x {current.shape[1]} columns)",
               err=True)

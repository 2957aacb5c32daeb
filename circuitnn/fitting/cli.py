"""`circuitnn fit` (compact model to I-V sweeps) and `circuitnn fit-pulse` (pulse-update model)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from circuitnn.errors import CircuitnnError


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _load_sweeps(source: str, columns: str | None, current_unit: str | None,
                 frequency_hz: float | None, device: str | None, series_resistance_ohm: float):
    from circuitnn.fitting.data import group_by_device, load_manifest, sweep_from_args

    if columns is None:
        if current_unit is not None or frequency_hz is not None:
            raise CircuitnnError(f"{source}: --current-unit/--frequency-hz belong to the quick "
                                 "form; give --columns too (or put them in a TOML manifest)")
        if not Path(source).suffix.lower() == ".toml" and Path(source).is_file():
            raise CircuitnnError(f"{source}: not a .toml manifest; for a single data file give "
                                 "--columns, --current-unit and --frequency-hz")
        groups = group_by_device(load_manifest(source))
        if device is not None:
            if device not in groups:
                raise CircuitnnError(f"{source}: no device {device!r} in the manifest; it has "
                                     f"{', '.join(groups)}")
            groups = {device: groups[device]}
        return groups, str(Path(source).resolve())
    if current_unit is None:
        raise CircuitnnError(f"{source}: the quick form needs --current-unit (A, mA, uA or nA)")
    sweep = sweep_from_args(source, columns, current_unit, frequency_hz, device,
                            series_resistance_ohm)
    return {sweep.device: [sweep]}, None


@click.command("fit")
@click.argument("source", type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "model_name", required=True,
              type=click.Choice(["yakopcic", "vteam", "stanford-pku"]),
              help="Compact model to fit.")
@click.option("--columns", default=None,
              help="Quick form: voltage,current[,time] columns of SOURCE (0-based or header "
                   "names), e.g. 0,1.")
@click.option("--current-unit", default=None, help="Quick form: A, mA, uA or nA.")
@click.option("--frequency-hz", type=float, default=None,
              help="Quick form: drive frequency; the rows sample one period evenly.")
@click.option("--device", default=None,
              help="Device name (quick form), or the one device of the manifest to fit.")
@click.option("--series-resistance-ohm", type=float, default=0.0, show_default=True,
              help="Quick form: resistance in series with the device in the voltage column.")
@click.option("--out", default=None,
              help="Card path (default device_models/<device>-<model>.json). With several "
                   "devices it must contain '{device}'.")
@click.option("--figure", default=None,
              help="Figure path (default figures/fit_<device>-<model>.png); '{device}' as "
                   "for --out.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary (model, nrmse, params) on stdout and nothing else.")
@click.option("--maxiter", type=click.IntRange(1, 10000), default=80, show_default=True,
              help="Differential-evolution generations per polarity.")
@click.option("--popsize", type=click.IntRange(2, 200), default=8, show_default=True,
              help="DE population per free parameter.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the search.")
@click.option("--max-nfev", type=click.IntRange(1, 100000), default=60, show_default=True,
              help="lmfit residual evaluations in the refinement.")
@click.option("--start", "start_card", default=None, type=click.Path(dir_okay=False),
              help="Skip the global search: refine from the values of this model card.")
def fit(source: str, model_name: str, columns: str | None, current_unit: str | None,
        frequency_hz: float | None, device: str | None, series_resistance_ohm: float,
        out: str | None, figure: str | None, as_json: bool, maxiter: int, popsize: int,
        seed: int, max_nfev: int, start_card: str | None) -> None:
    """Fit ONE parameter set of a compact model to all I-V sweeps of a device.

    SOURCE is a TOML manifest of sweeps (see circuitnn.fitting.data) or, with --columns,
    --current-unit and --frequency-hz, one data file. Each sweep is fitted in periodic steady
    state (warm-up periods of the same waveform), by a vectorised differential-evolution
    search over both polarities followed by lmfit least-squares refinement. A manifest with
    several devices fits each device separately (one card and figure each, and the cards
    record the device-to-device spread); --device picks one. Prints each parameter with its
    standard error and the NRMSE (RMS error / current span) per sweep and overall. Nothing is
    written unless every fit succeeds.
    """
    from tqdm import tqdm

    from circuitnn.devices.card import ModelCard
    from circuitnn.fitting.iv import FitSettings, device_spread, fit_iv, fit_summary, make_card
    from circuitnn.fitting.plots import iv_fit_figure

    groups, manifest = _load_sweeps(source, columns, current_unit, frequency_hz, device,
                                    series_resistance_ohm)
    many = len(groups) > 1
    for opt, value in (("--out", out), ("--figure", figure)):
        if many and value is not None and "{device}" not in value:
            raise CircuitnnError(f"{source}: the manifest has {len(groups)} devices "
                                 f"({', '.join(groups)}); {opt} must contain '{{device}}' "
                                 "or pick one with --device")
    settings = FitSettings(maxiter=maxiter, popsize=popsize, seed=seed, max_nfev=max_nfev)
    if start_card is not None:
        card = ModelCard.load(start_card)
        if card.model != model_name:
            raise CircuitnnError(f"{start_card}: card is for model {card.model!r}, "
                                 f"not {model_name!r}")
        values = card.values()
        settings.start_polarity = values.pop("polarity", 1.0)
        values.pop("v_read", None)
        settings.start = values

    fits = []
    for name, sweeps in groups.items():
        total = 0 if settings.start else settings.maxiter * len(settings.polarities)
        with tqdm(total=total, desc=f"fit {model_name} {name}", file=sys.stderr,
                  disable=None, leave=False) as bar:
            fits.append(fit_iv(sweeps, model_name, settings, progress=lambda: bar.update()))

    spread = device_spread(fits)
    written = []
    for f in fits:
        slug = _slug(f.device)
        card_path = Path((out or "device_models/{device}-" + model_name + ".json")
                         .replace("{device}", slug))
        fig_path = Path((figure or "figures/fit_{device}-" + model_name + ".png")
                        .replace("{device}", slug))
        iv_fit_figure(f, fig_path)
        make_card(f, manifest, spread).save(card_path)
        written.append((f, card_path, fig_path))

    if as_json:
        summaries = [fit_summary(f) for f in fits]
        for s, (_, c, g) in zip(summaries, written, strict=True):
            s["card"], s["figure"] = str(c), str(g)
        if many:
            obj = {"model": model_name, "nrmse": sum(f.nrmse for f in fits) / len(fits),
                   "devices": {s["device"]: s for s in summaries}}
        else:
            obj = summaries[0]
        click.echo(json.dumps(obj, default=_json_default))
        return
    for f, card_path, fig_path in written:
        click.echo(f"{f.model} fit to device {f.device} (polarity {f.polarity:+.0f}, "
                   f"{f.seconds['total']:.1f} s)")
        for k, v in f.params.items():
            se = f.stderr.get(k)
            tag = "fixed" if k in f.fixed else ("n/a" if se is None else f"{se:.3g}")
            click.echo(f"  {k:10s} {v: .6g}  +- {tag}")
        for k, v in f.nrmse_per_sweep.items():
            click.echo(f"  NRMSE {k}: {v:.4f}")
        click.echo(f"  NRMSE overall: {f.nrmse:.4f} (refinement tolerance: {f.nrmse_fit:.4f})")
        click.echo(f"  card: {card_path}\n  figure: {fig_path}")


@click.command("fit-pulse")
@click.argument("dataset", type=click.Choice(["taox-pulse", "reram-pulse-gong"]))
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the dataset (default: the registered measured-data folder).")
@click.option("--out", default=None,
              help="Card path (default device_models/<taox-pulse|gong-pulse>.json).")
@click.option("--figure", default=None,
              help="Figure path (default figures/pulse_fit_<dataset>.png).")
@click.option("--n-sim", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Noisy simulations used to check the noise model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the fit quality as JSON on stdout and nothing else.")
def fit_pulse(dataset: str, data_dir: str | None, out: str | None, figure: str | None,
              n_sim: int, seed: int, as_json: bool) -> None:
    """Fit the pulse-update model (bounds, mean step law, update noise) to measured pulse ramps.

    DATASET is a registered pulse dataset; writes a model card and a figure.
    """
    from circuitnn.fitting.pulse import fit_pulse_cli_main, summary_lines

    result = fit_pulse_cli_main(dataset, data_dir, out, figure, n_sim=n_sim, seed=seed)
    if as_json:
        click.echo(json.dumps({"dataset": dataset, "model": result.card.model,
                               "params": {k: p.to_json()
                                          for k, p in result.card.parameters.items()},
                               "metrics": result.metrics}, default=_json_default))
        return
    for line in summary_lines(result):
        click.echo(line)

"""`circuitnn fit` (compact model to I-V sweeps) and `circuitnn fit-pulse` (pulse-update model)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from circuitnn.errors import CircuitnnError
from circuitnn.fitting.iv import FIT_MODELS, FitSettings


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
                 frequency_hz: float | None, device: str | None, series_resistance_ohm: float,
                 compliance_a: float | None, noise_floor_a: float | None):
    from circuitnn.fitting.data import group_by_device, load_manifest, sweep_from_args

    if columns is None:
        quick = (current_unit, frequency_hz, compliance_a, noise_floor_a)
        if any(q is not None for q in quick):
            raise CircuitnnError(f"{source}: --current-unit/--frequency-hz/--compliance-a/"
                                 "--noise-floor-a belong to the quick form; give --columns too "
                                 "(or put them in a TOML manifest)")
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
                            series_resistance_ohm, compliance_a, noise_floor_a)
    return {sweep.device: [sweep]}, None


class _Progress:
    """tqdm bars on stderr: one for the search (generations), one for the refinement
    (residual evaluations)."""

    def __init__(self, label: str, generations: int) -> None:
        self.label = label
        self.generations = generations
        self.bar = None
        self.stage = ""

    def __call__(self, stage: str) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            total = self.generations if stage == "search" else None
            unit = "generation" if stage == "search" else "evaluation"
            self.bar = tqdm(total=total, desc=f"{self.label}: {stage}", unit=unit,
                            file=sys.stderr, disable=None, leave=False)
        self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _path(template: str, device: str, model: str) -> Path:
    return Path(template.replace("{device}", device).replace("{model}", model))


@click.command("fit")
@click.argument("source", type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "model_name", required=True, metavar=f"{{{'|'.join(FIT_MODELS)}|all}}",
              help="Compact model to fit, 'all' to fit every model, or several separated by "
                   "commas (e.g. mss,yakopcic); several are ranked by the score mean over sweeps "
                   "of (NRMSE/0.05)^2 + (log error/0.3)^2 + (read error/0.15)^2 (lower is "
                   "better).")
@click.option("--columns", default=None,
              help="Quick form: voltage,current[,time] columns of SOURCE (0-based or header "
                   "names), e.g. 0,1.")
@click.option("--current-unit", default=None, help="Quick form: A, mA, uA or nA.")
@click.option("--frequency-hz", type=float, default=None,
              help="Quick form: drive frequency; the rows sample one period evenly.")
@click.option("--device", default=None,
              help="Device name (quick form), or the one device of the manifest to fit.")
@click.option("--series-resistance-ohm", type=float, default=0.0, show_default=True,
              help="Quick form: resistance between the source and the device.")
@click.option("--compliance-a", type=float, default=None,
              help="Quick form: the instrument's current compliance in amperes.")
@click.option("--noise-floor-a", type=float, default=None,
              help="Quick form: currents at or below this (A) are noise, left out of the log "
                   "measures (default: estimated from the data; see circuitnn.fitting.data).")
@click.option("--read-range", "read_range", type=float, default=None, metavar="V",
              help="Read region |V| <= V across the device, where the read-region error is "
                   "measured and weighed (default: the manifest's read_range_v, else twice the "
                   "fitted card's safe read voltage).")
@click.option("--out", default=None,
              help="Card path (default runs/fit/{device}-{model}.json). '{device}' and "
                   "'{model}' are replaced; needed with several devices or --model all.")
@click.option("--figure", default=None,
              help="Figure path (default runs/fit/fit_{device}-{model}.png); placeholders as "
                   "for --out.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"best": MODEL, "models": {MODEL: {nrmse, log_error_decades, '
                   'read_error_decades, read_range_v, nrmse_ngspice, params, stderr, '
                   'stderr_reason, seconds, per_sweep}}} on stdout and nothing else (a model '
                   'that failed: {error, seconds}).')
@click.option("--maxiter", type=click.IntRange(1, 10000), default=FitSettings.maxiter,
              show_default=True,
              help="Differential-evolution generations per search (at most: a population "
                   "that converges with 15 or more generations left starts again with the "
                   "generations left; one that converges later ends the search).")
@click.option("--popsize", type=click.IntRange(2, 200), default=8, show_default=True,
              help="DE population per search variable.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the search.")
@click.option("--searches", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Independent searches per terminal orientation (seeds SEED, SEED+1, ...), "
                   "run side by side; the best members of each one's population are refined "
                   "(coarse, then the two best in full) and the lowest refined objective wins.")
@click.option("--max-nfev", type=click.IntRange(0, 100000), default=0, show_default=True,
              help="Safety cap on the refinement's residual evaluations (0: 100 per variable); "
                   "the refinement ends on its tolerance, and a fit that hits the cap fails.")
@click.option("--bootstrap", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also refit N times on sweeps resampled with replacement (spread in the card).")
@click.option("--start", "start_card", default=None, type=click.Path(dir_okay=False),
              help="Skip the global search: refine from the values of this model card.")
def fit(source: str, model_name: str, columns: str | None, current_unit: str | None,
        frequency_hz: float | None, device: str | None, series_resistance_ohm: float,
        compliance_a: float | None, noise_floor_a: float | None, read_range: float | None,
        out: str | None, figure: str | None, as_json: bool, maxiter: int, popsize: int,
        seed: int, searches: int, max_nfev: int, bootstrap: int, start_card: str | None
        ) -> None:
    """Fit ONE parameter set of a compact model to all I-V sweeps of a device.

    SOURCE is a TOML manifest of sweeps (see circuitnn.fitting.data) or, with --columns,
    --current-unit and --frequency-hz, one data file. Each sweep is fitted in periodic steady
    state (warm-up periods of the same waveform), through the instrument's series resistance and
    current compliance as the manifest gives them, by a vectorised differential-evolution
    search over both polarities and an lmfit least-squares refinement (coarse from several
    search results, then in full to convergence). The
    objective weighs the linear scale, the log scale and the read region: (NRMSE/0.05)^2 +
    (log error/0.3)^2 + (read error/0.15)^2 per sweep; several models are ranked by its mean.
    Reports per sweep and overall the NRMSE, the log error (decades, every point above the
    noise floor), the read-region error (decades, |V| <= the read range) and the NRMSE of the
    card re-simulated in ngspice; every free parameter with its standard error or the reason it
    has none. A card is rejected when ngspice disagrees
    (NRMSE by more than 0.01) or when it is not in periodic steady state after its warm-up. A
    manifest with several devices fits each device separately (the cards record the
    device-to-device spread of the devices fitted); a device that cannot be fitted is reported
    with the reason and the others' cards are written. With several models, models that fail
    are reported with their error and the others are written and ranked.
    """
    from circuitnn.devices.card import ModelCard
    from circuitnn.fitting.iv import (
        check_fit,
        device_spread,
        fit_iv,
        fit_summary,
        given_read_range,
        make_card,
    )
    from circuitnn.fitting.plots import iv_fit_figure

    groups, manifest = _load_sweeps(source, columns, current_unit, frequency_hz, device,
                                    series_resistance_ohm, compliance_a, noise_floor_a)
    models = list(FIT_MODELS) if model_name == "all" else model_name.split(",")
    unknown = [m for m in models if m not in FIT_MODELS]
    if unknown or len(set(models)) != len(models):
        raise CircuitnnError(f"--model: {model_name!r} is not a model, 'all' or a list of "
                             f"distinct models separated by commas ({', '.join(FIT_MODELS)})")
    for opt, value in (("--out", out), ("--figure", figure)):
        if value is None:
            continue
        if len(groups) > 1 and "{device}" not in value:
            raise CircuitnnError(f"{source}: the manifest has {len(groups)} devices "
                                 f"({', '.join(groups)}); {opt} must contain '{{device}}' "
                                 "or pick one with --device")
        if len(models) > 1 and "{model}" not in value:
            raise CircuitnnError(f"{opt} must contain '{{model}}' with several models")
    settings = FitSettings(maxiter=maxiter, popsize=popsize, seed=seed, searches=searches,
                           max_nfev=max_nfev, bootstrap=bootstrap, read_range_v=read_range)
    for sweeps in groups.values():  # a bad read range is refused before any fit
        given_read_range(sweeps, settings)
    if start_card is not None:
        if len(models) > 1:
            raise CircuitnnError("--start refines one model's card; give --model too")
        card = ModelCard.load(start_card)
        if card.model != model_name:
            raise CircuitnnError(f"{start_card}: card is for model {card.model!r}, "
                                 f"not {model_name!r}")
        values = card.values()
        settings.start_polarity = values.pop("polarity", 1.0)
        values.pop("v_read", None)
        settings.start = values

    fits: dict[str, dict[str, Any]] = {}  # device -> model -> IVFit
    errors: dict[str, dict[str, dict[str, Any]]] = {}
    for name, sweeps in groups.items():
        fits[name], errors[name] = {}, {}
        for model in models:
            bar = _Progress(f"fit {model} {name}",
                            settings.maxiter * settings.searches * len(settings.polarities))
            t0 = time.perf_counter()
            try:
                f = fit_iv(sweeps, model, settings, progress=bar, check=False)
                check_fit(f)
                fits[name][model] = f
            except CircuitnnError as exc:
                if len(models) == 1 and len(groups) == 1:
                    raise
                errors[name][model] = {"error": str(exc),
                                       "seconds": time.perf_counter() - t0}
            finally:
                bar.close()
    failed = [name for name in groups if not fits[name]]
    if len(failed) == len(groups):
        raise CircuitnnError("no model could be fitted to " + "; ".join(
            f"device {name!r}: " + "; ".join(e["error"] for e in errors[name].values())
            for name in failed))
    for name in failed:  # the other devices' cards are written; say which failed and why
        click.echo(f"circuitnn: warning: device {name!r} not fitted, no card written: "
                   + "; ".join(f"{m}: {e['error']}" for m, e in errors[name].items()), err=True)
        del fits[name]

    spreads = {m: device_spread([fits[d][m] for d in fits if m in fits[d]]) for m in models}
    written: dict[str, dict[str, tuple[Path, Path]]] = {}
    for name, by_model in fits.items():
        written[name] = {}
        for model, f in by_model.items():
            slug = _slug(f.device)
            card_path = _path(out or "runs/fit/{device}-{model}.json", slug, model)
            fig_path = _path(figure or "runs/fit/fit_{device}-{model}.png", slug, model)
            iv_fit_figure(f, fig_path)
            make_card(f, manifest, spreads.get(model)).save(card_path)
            written[name][model] = (card_path, fig_path)

    results: dict[str, Any] = {name: {"error": "; ".join(f"{m}: {e['error']}" for m, e in
                                                     errors[name].items())} for name in failed}
    for name, by_model in fits.items():
        best = min(by_model, key=lambda m: by_model[m].score)
        entries = {}
        for model in models:
            if model in by_model:
                entry = fit_summary(by_model[model])
                entry["card"], entry["figure"] = map(str, written[name][model])
            else:
                entry = errors[name][model]
            entries[model] = entry
        results[name] = {"best": best, "models": entries}
    if as_json:
        obj = next(iter(results.values())) if len(results) == 1 else {"devices": results}
        click.echo(json.dumps(obj, default=_json_default))
        return
    for name, res in results.items():
        if "error" in res:
            click.echo(f"device {name}: not fitted: {res['error']}")
            continue
        for model, entry in res["models"].items():
            if "error" in entry:
                click.echo(f"{model} fit to device {name}: failed: {entry['error']}")
                continue
            f = fits[name][model]
            click.echo(f"{model} fit to device {name} (polarity {f.polarity:+.0f}, "
                       f"{f.seconds['total']:.1f} s)")
            for k, v in f.params.items():
                se = f.stderr.get(k)
                tag = ("fixed" if k in f.fixed else f"{se:.3g}" if se is not None
                       else f"n/a: {f.stderr_reason[k]}")
                click.echo(f"  {k:10s} {v: .6g}  +- {tag}")
            for k, m in f.per_sweep.items():
                click.echo(f"  {k}: NRMSE {m.nrmse:.4f}, log error {m.log_error_decades:.3f} dec, "
                           f"read region {m.read_error_decades:.3f} dec, ngspice NRMSE "
                           f"{m.nrmse_ngspice:.4f}")
            click.echo(f"  overall: NRMSE {f.nrmse:.4f}, log error {f.log_error:.3f} decades, "
                       f"read region (|V| <= {f.read_range_v:.4g} V, {f.read_range_rule}) "
                       f"{f.read_error:.3f} decades, ngspice NRMSE {f.nrmse_ngspice:.4f}, "
                       f"score {f.score:.2f}")
            card_path, fig_path = written[name][model]
            click.echo(f"  card: {card_path}\n  figure: {fig_path}")
        if len(models) > 1:
            click.echo(f"best model for device {name}: {res['best']} (lowest score)")


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise CircuitnnError(f"--window must be GMIN,GMAX in siemens, got {text!r}") from None
    return lo, hi


def _fit_pulse_from_card(card: str, amplitude_set: float | None, amplitude_reset: float | None,
                         width: float | None, gates: dict[str, float], pulses: int,
                         noise: float | None, noise_from: str | None, window: str | None,
                         v_read: float | None, check: bool, out: str | None,
                         figure: str | None, as_json: bool) -> None:
    """`fit-pulse --from-card`: every input checked, then derive (progress bar on stderr)."""
    from tqdm import tqdm

    from circuitnn.devices.card import ModelCard
    from circuitnn.devices.operating import PULSE_MODEL
    from circuitnn.devices.profile import DeviceProfile
    from circuitnn.fitting.derive import (
        DeriveSettings,
        derived_pulse,
        plot_derived,
        pulse_card_noise,
    )

    path = Path(card)
    if not path.is_file():
        raise CircuitnnError(f"{card}: card file not found")
    if ModelCard.load(path).model == PULSE_MODEL:
        raise CircuitnnError(f"{card} is a pulse-update card; --from-card needs an I-V "
                             "compact-model card (a pulse card is used as it is)")
    pulse_noise = None
    if noise_from is not None:
        if noise is not None:
            raise CircuitnnError("give --noise or --noise-from, not both")
        if not Path(noise_from).is_file():
            raise CircuitnnError(f"{noise_from}: pulse card not found")
        pulse_noise = pulse_card_noise(ModelCard.load(noise_from), noise_from)
    from circuitnn.network.device import resolve_device

    _, choice, dev_window, _ = resolve_device(path, None, {"v_read": v_read,
                                                          "g_window": _window(window)})
    settings = DeriveSettings(amplitude_set=amplitude_set, width=width, pulses=pulses,
                              noise=noise, pulse_noise=pulse_noise,
                              **{"gate_set": choice.gate_set, **gates},
                              amplitude_reset=choice.amplitude_reset
                              if amplitude_reset is None else amplitude_reset)
    profile = DeviceProfile.load(path, v_read=choice.v_read, window=dev_window)
    with tqdm(desc=f"derive pulse law from {path.name}", unit="pulse", file=sys.stderr,
              disable=None, leave=False) as bar:
        model, report = derived_pulse(profile, settings, check_ngspice=check,
                                      progress=bar.update)
    if out is not None:
        ModelCard.load(report["path"]).save(out)
        report["copied_to"] = str(out)
    if figure is not None:
        report["figure"] = str(plot_derived(model, report, figure))
    if as_json:
        report.pop("ramps_S", None)
        click.echo(json.dumps(report, default=_json_default))
        return
    p, d = report["pulses"]["set"], report["pulses"]["reset"]
    click.echo(f"pulse law derived from {path.name} at v_read = {report['v_read']:g} V, window "
               f"[{report['window'][0] * 1e6:.4g}, {report['window'][1] * 1e6:.4g}] uS"
               + (" (cached)" if report["cached"] else f" in {report['seconds']['total']:.1f} s"))
    click.echo(f"  SET   {p['amplitude']:.3g} V, gate {p['gate']:g} V: "
               f"{report['ramp_pulses']['set']} pulses across the window "
               f"({report['amplitude_rule']['set']})")
    click.echo(f"  RESET {d['amplitude']:.3g} V, gate {d['gate']:g} V: "
               f"{report['ramp_pulses']['reset']} pulses across the window "
               f"({report['amplitude_rule']['reset']})")
    fit = report["fit"]
    click.echo(f"  law {fit['law']}: mean-ramp max deviation SET "
               f"{100 * fit['p']['mean_ramp_max_dev_rel']:.2f}%, RESET "
               f"{100 * fit['d']['mean_ramp_max_dev_rel']:.2f}% of the range; noise "
               f"{report['noise_sigma_rel']:g} of the window per pulse ({report['noise_source']})")
    chk = report["ngspice_check"]
    if chk is not None:
        click.echo(f"  ngspice check: max state error {100 * chk['max_state_error']:.3f}% of the "
                   f"window's state span over {chk['set']['pulses']} pulses per direction")
    click.echo(f"  card: {report['path']}" + (f" (copied to {out})" if out else ""))
    if figure is not None:
        click.echo(f"  figure: {report['figure']}")


@click.command("fit-pulse")
@click.argument("source", required=False)
@click.option("--columns", default=None,
              help="A pulse file: pulse,reading[,direction] columns (0-based or header names). "
                   "Pulse numbers rise down the file, by 1 inside a ramp; a ramp ends where "
                   "they jump or the direction column's sign (+ SET/up, - RESET/down, e.g. the "
                   "signed amplitude) changes.")
@click.option("--unit", default=None,
              help="A pulse file: unit of the readings, a conductance (S, mS, uS, nS) or a "
                   "current (A, mA, uA, nA) with --read-voltage.")
@click.option("--direction", type=click.Choice(["up", "down"]), default=None,
              help="A pulse file without a direction column: the direction of all its pulses.")
@click.option("--read-voltage", type=float, default=None,
              help="A pulse file of read currents: the read voltage in V (G = I / V).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="A registered dataset's folder (default: the registered measured-data folder).")
@click.option("--from-card", "from_card", default=None,
              help="Derive the law from this I-V compact-model card instead of measured data: "
                   "SET/RESET pulse trains of the card in its 1T1R cell (circuitnn.fitting."
                   "derive), checked against ngspice, then fitted.")
@click.option("--amplitude-set", type=float, default=None,
              help="--from-card: SET pulse amplitude in V (default: the amplitude rule, a "
                   "multiple of the card's switching threshold).")
@click.option("--amplitude-reset", type=float, default=None,
              help="--from-card: RESET pulse amplitude |V| (default: the amplitude rule).")
@click.option("--width", type=float, default=None,
              help="--from-card: pulse width in s, up to 1e-3 (default: the reference's 50 ns, "
                   "else the first decade longer whose pulses cross the window).")
@click.option("--gate-set", type=float, default=None,
              help="--from-card: SET word-line voltage in V, the access transistor's "
                   "compliance (default: the card's operating point).")
@click.option("--gate-reset", type=float, default=None,
              help="--from-card: word-line (gate) voltage during RESET (default: the "
                   "reference preset's).")
@click.option("--pulses", type=int, default=100, show_default=True,
              help="--from-card: most pulses per ramp (4 to 10000).")
@click.option("--noise", type=float, default=None,
              help="--from-card: cycle-to-cycle sigma per pulse as a fraction of the window, "
                   "used when the card has no variation.cycle_to_cycle.sigma_rel (default 0).")
@click.option("--noise-from", "noise_from", default=None, type=click.Path(dir_okay=False),
              help="--from-card: a pulse card of the same device (circuitnn fit-pulse FILE): "
                   "the derived law takes its cycle-to-cycle statistics (update and read-level "
                   "noise, relative to the window).")
@click.option("--window", default=None,
              help="--from-card: programmable window GMIN,GMAX in S as the 1T1R cell reads it "
                   "(default: the card's operating point).")
@click.option("--v-read", type=float, default=None,
              help="--from-card: read voltage in V (default: the card's safe v_read).")
@click.option("--no-ngspice-check", is_flag=True,
              help="--from-card: skip the ngspice check of the cell simulation.")
@click.option("--out", default=None,
              help="Card path (default runs/fit-pulse/<name>.json; with --from-card the card "
                   "stays in the user cache unless --out is given).")
@click.option("--figure", default=None,
              help="Figure path (default runs/fit-pulse/pulse_fit_<name>.png; with --from-card: "
                   "no figure unless given).")
@click.option("--n-sim", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Noisy simulations used to check the noise model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the fit quality (with --from-card: the derivation report) as JSON on "
                   "stdout and nothing else.")
def fit_pulse(source: str | None, columns: str | None, unit: str | None,
              direction: str | None, read_voltage: float | None, data_dir: str | None,
              from_card: str | None, amplitude_set: float | None, amplitude_reset: float | None,
              width: float | None, gate_set: float | None, gate_reset: float | None,
              pulses: int, noise: float | None, noise_from: str | None, window: str | None,
              v_read: float | None, no_ngspice_check: bool, out: str | None,
              figure: str | None, n_sim: int, seed: int, as_json: bool) -> None:
    """Fit the pulse-update model (bounds, mean step law, cycle-to-cycle noise) to measured
    pulse ramps, or derive it from an I-V card (--from-card).

    SOURCE is a registered pulse dataset (taox-pulse, reram-pulse-gong), a pulse file (the
    conductance or read current after each pulse: --columns, --unit, and --direction or a
    direction column) or a TOML manifest of [[ramps]] tables (keys file, columns, unit,
    direction, read_voltage_v) for several files. Writes a model card and a figure.
    """
    from circuitnn.fitting.pulse import PULSE_DATASETS

    if (source is None) == (from_card is None):
        raise CircuitnnError("give either SOURCE (measured pulse ramps) or --from-card CARD")
    file_only = {"--columns": columns, "--unit": unit, "--direction": direction,
                 "--read-voltage": read_voltage}
    if from_card is not None:
        given = [k for k, v in {**file_only, "--data-dir": data_dir}.items() if v is not None]
        if given:
            raise CircuitnnError(f"{', '.join(given)} belong to measured pulse data, not to "
                                 "--from-card")
        gates = {k: v for k, v in (("gate_set", gate_set), ("gate_reset", gate_reset))
                 if v is not None}
        _fit_pulse_from_card(from_card, amplitude_set, amplitude_reset, width, gates, pulses,
                             noise, noise_from, window, v_read, not no_ngspice_check, out,
                             figure, as_json)
        return
    derive_only = {"--amplitude-set": amplitude_set, "--amplitude-reset": amplitude_reset,
                   "--width": width, "--noise": noise, "--noise-from": noise_from,
                   "--window": window, "--v-read": v_read, "--gate-set": gate_set,
                   "--gate-reset": gate_reset}
    given = [k for k, v in derive_only.items() if v is not None]
    if given or no_ngspice_check or pulses != 100:
        raise CircuitnnError(f"{', '.join(given) or 'those options'} belong to --from-card")
    from circuitnn.fitting.pulse import fit_pulse_cli_main, load_pulse_data, summary_lines

    if source in PULSE_DATASETS:
        given = [k for k, v in file_only.items() if v is not None]
        if given:
            raise CircuitnnError(f"{', '.join(given)} belong to a pulse file, not to the "
                                 f"registered dataset {source}")
        data: Any = source
    else:
        if data_dir is not None:
            raise CircuitnnError("--data-dir belongs to a registered dataset "
                                 f"({', '.join(PULSE_DATASETS)})")
        if not Path(source).is_file():
            raise CircuitnnError(f"{source}: neither a registered pulse dataset "
                                 f"({', '.join(PULSE_DATASETS)}) nor a file")
        data = load_pulse_data(source, columns, unit, direction, read_voltage)
    result = fit_pulse_cli_main(data, data_dir, out, figure, n_sim=n_sim, seed=seed)
    if as_json:
        click.echo(json.dumps({"dataset": result.data.name, "model": result.card.model,
                               "params": {k: p.to_json()
                                          for k, p in result.card.parameters.items()},
                               "cycle_to_cycle": result.model.variation()["cycle_to_cycle"],
                               "metrics": result.metrics}, default=_json_default))
        return
    for line in summary_lines(result):
        click.echo(line)

"""`circuitnn device check`: what a device engineer wants to know before using a device."""

from __future__ import annotations

import json
from typing import Any

import click

from circuitnn.errors import CircuitnnError


def _window(g_min_us: float | None, g_max_us: float | None) -> tuple[float, float] | None:
    if g_min_us is None and g_max_us is None:
        return None
    if g_min_us is None or g_max_us is None:
        raise CircuitnnError("give both --g-min-uS and --g-max-uS (or neither)")
    return g_min_us * 1e-6, g_max_us * 1e-6


SOURCES = {"given": "given: carried by the card, from the reference preset, or set here",
           "rule": "the default rule of circuitnn.devices.operating"}


def _text(r: dict[str, Any]) -> list[str]:
    op = r["operating"]
    thr = op["thresholds_V"]

    def volts(x: float | None) -> str:
        return "none up to 5 V" if x is None else f"{x:.4g} V"

    def ratio(x: float | None) -> str:
        return "inf (low state open)" if x is None else f"{x:.3g}"

    lo, hi = op["g_range_S"]
    src = r["source"]
    origin = src.get("published")
    if origin is None:
        quality = "" if src.get("nrmse") is None else f", NRMSE {src['nrmse']:.3f}"
        origin = (f"fitted to device {src.get('device')} "
                  f"({', '.join(src.get('datasets', [])) or 'measured data'}{quality})")
    lines = [
        f"device card: {r['iv_card']['path']}",
        f"  model: {r['iv_card']['model']} ({r['citation']})",
        f"  source: {origin}",
        f"  v_read: {op['v_read']:g} V ({op['source']}): {op['v_read_rule']}",
        f"  switching thresholds: +{volts(thr['positive'])} / -{volts(thr['negative'])}",
        f"  g_range at v_read: [{lo * 1e6:.4g}, {hi * 1e6:.4g}] uS, on/off {ratio(op['on_off'])}",
    ]
    c = r["operating_point"]
    w, dw = c["g_window"], c["device_window"]
    lines.append(f"  window: [{w[0] * 1e6:.4g}, {w[1] * 1e6:.4g}] uS as the 1T1R cell reads, "
                 f"on/off {w[1] / w[0]:.3g} ({SOURCES[c['source']]}); the device itself at "
                 f"[{dw[0] * 1e6:.4g}, {dw[1] * 1e6:.4g}] uS")
    lines.append(f"  programming: SET gate {c['gate_set']:g} V, {c['scheme']} pulses, "
                 f"write-verify tolerance {c['tolerance_rel']:g} of the level spacing")
    if "read_check" in r:
        from circuitnn.fitting.readcheck import read_check_line

        lines.append(f"  {read_check_line(r['read_check'])}")
    d = op["read_disturb"]
    lines.append(f"  read disturb: drift {d['drift']:.3g} after {d['reads']:,} reads of "
                 f"{d['pulse_width_s'] * 1e9:g} ns at {d['v_read']:g} V (limit "
                 f"{d['limit']:.0%}): {'pass' if d['passes'] else 'FAIL'}")
    pr = r["pulse_response"]
    if r["pulse"] is not None and "error" in r["pulse"]:
        lines.append(f"pulse law: cannot be derived from the card: {r['pulse']['error']}")
    if pr is not None and r["pulse"]["source"] == "derived":
        p = r["pulse"]
        amps = ", ".join(f"{w.upper()} {p['pulses'][w]['amplitude']:.3g} V (gate "
                         f"{p['pulses'][w]['gate']:g} V)" for w in ("set", "reset"))
        chk = p.get("ngspice_check")
        lines.append(f"pulse law: derived from the card ({pr['law']} law; {amps}, "
                     f"{p['settings']['width']:.3g} s pulses"
                     + (f"; ngspice agrees within {chk['max_state_error']:.2%} of the state "
                        "span" if chk else "") + f"; card {p['path']})")
    elif pr is not None:
        lines.append(f"pulse card: {r['pulse']['path']} ({pr['law']} law, mapped onto the window "
                     f"x{r['pulse']['pulse_scale']:.3g})")
    if pr is not None:
        for name in ("set", "reset"):
            p = pr[name]
            n = "not within 1e6 pulses" if p["pulses"] is None else f"{p['pulses']} pulses"
            nl = "" if p["nonlinearity"] is None else f", nonlinearity {p['nonlinearity']:.3f}"
            noise = "n/a" if p["step_noise"] is None else f"{p['step_noise']:.3g}"
            lines.append(f"  {name.upper()}: {n} to traverse the window{nl}, step noise "
                         f"{noise} of the mean step")
        dd = pr["device_to_device"]
        lines.append(f"  level noise {pr['level_noise']:.3g} of the window; device-to-device: "
                     f"g_min {dd['g_min']:.3g}, g_max {dd['g_max']:.3g} of the window, step "
                     f"scales {dd['scale_p']:.3g} / {dd['scale_d']:.3g}")
    return lines


@click.group()
def device() -> None:
    """Devices: an I-V compact card (read physics) and its pulse-update card (programming)."""


@device.command("check")
@click.argument("card", type=click.Path(dir_okay=False))
@click.option("--pulse-card", default=None, type=click.Path(dir_okay=False),
              help="Pulse-update card of the same device (see circuitnn fit-pulse).")
@click.option("--v-read", type=float, default=None,
              help="Read voltage (V) to check instead of the card's safe one.")
@click.option("--g-min-uS", "g_min_us", type=float, default=None,
              help="Window low end (uS) instead of the default rule.")
@click.option("--g-max-uS", "g_max_us", type=float, default=None,
              help="Window high end (uS) instead of the default rule.")
@click.option("--derive/--no-derive", default=True, show_default=True,
              help="Without --pulse-card, derive the pulse law from the card (circuitnn "
                   "fit-pulse --from-card; cached) and show its response.")
@click.option("--accept-read-error", is_flag=True,
              help="Use a card even when it is off by more than 0.5 decade from its measured "
                   "data at v_read (the report says so).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def check(card: str, pulse_card: str | None, v_read: float | None, g_min_us: float | None,
          g_max_us: float | None, derive: bool, accept_read_error: bool, as_json: bool) -> None:
    """Check a device before using it: model and source, the safe read voltage and why,
    switching thresholds, conductance range and programmable window at v_read, on/off ratio,
    the card against its measured data at v_read (refused when off by more than 0.5 decade,
    unless --accept-read-error; circuitnn.fitting.readcheck), read-disturb drift after 10^6
    reads, and the pulse response (pulses to traverse the window each way, nonlinearity, noise)
    of --pulse-card or of the law derived from the card. CARD is an I-V card (circuitnn fit); a
    card without an operating record gets one computed (see circuitnn.devices.operating).
    """
    from circuitnn.devices.card import ModelCard
    from circuitnn.devices.operating import PULSE_MODEL
    from circuitnn.devices.profile import DeviceProfile
    from circuitnn.fitting.readcheck import require_read_match
    from circuitnn.network.device import resolve_device

    if ModelCard.load(card).model == PULSE_MODEL:  # the profile refuses it in one line
        DeviceProfile.load(card)
    _, choice, dev_window, _ = resolve_device(
        card, None, {"v_read": v_read, "g_window": _window(g_min_us, g_max_us)})
    profile = DeviceProfile.load(card, pulse_card, v_read, dev_window)
    read = require_read_match(profile.iv_card, profile.v_read, card, accept_read_error)
    report = profile.report()
    report["operating_point"] = {**choice.to_json(), "device_window": list(dev_window)}
    report["read_check"] = read
    if pulse_card is None and derive:
        from circuitnn.devices.pulse import pulse_response, scale_model
        from circuitnn.fitting.derive import DeriveSettings, derived_pulse

        try:
            model, derived = derived_pulse(profile, DeriveSettings(
                gate_set=choice.gate_set, amplitude_reset=choice.amplitude_reset))
        except CircuitnnError as err:  # a finding about the device, not a failed check
            report["pulse"] = {"source": "derived", "error": str(err)}
        else:
            report["pulse"] = derived
            report["pulse_response"] = pulse_response(scale_model(model, *profile.window))
    if as_json:
        click.echo(json.dumps(report))
        return
    for line in _text(report):
        click.echo(line)

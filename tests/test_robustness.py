"""Property-based reliability: generated manifests, tile specs and card edits fed through the
public entry points give a result or one `CircuitnnError` with a one-line message, never any
other exception (1,200 generated cases in all)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitnn.devices import builtin_card, load_device
from circuitnn.devices.card import ModelCard
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import SWEEP_KEYS, load_manifest
from circuitnn.tile import TileSpec, read

EXAMPLES = 400
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def only_clear_errors(fn, *args, **kwargs):
    """Run fn: success, or a CircuitnnError whose message is one non-empty line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no numpy warning may leak out
            return fn(*args, **kwargs)
    except CircuitnnError as exc:
        msg = str(exc)
        assert msg.strip() and "\n" not in msg, f"not a one-line message: {msg!r}"
        return None


# --------------------------------------------------------------------------- manifests
scalars = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(), st.sampled_from(["uA", "mA", "A", "nA", "s", "ms", "V"]),
)
values = st.one_of(scalars, st.lists(st.one_of(st.integers(-3, 5), st.text(max_size=6)),
                                     max_size=4))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


@st.composite
def manifests(draw) -> str:
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.lists(st.sampled_from([*SWEEP_KEYS, "junk"]), unique=True, max_size=9))
        entry = {k: draw(values) for k in keys}
        if draw(st.booleans()):
            entry["file"] = draw(st.sampled_from(["good.csv", "bad.csv", "empty.csv",
                                                  "missing.csv", "../good.csv"]))
        if draw(st.booleans()):
            entry["columns"] = draw(st.sampled_from([[0, 1], [0, 1, 2], [1, 0], ["v", "i"]]))
        entries.append(entry)
    text = "".join("[[sweep]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items())
                   for e in entries)
    if draw(st.integers(0, 9)) == 9:  # sometimes plain garbage
        text = draw(st.text(max_size=80))
    return text


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("manifests")
    t = np.linspace(0, 1, 50, endpoint=False)
    v = 0.8 * np.sin(2 * np.pi * t)
    rows = "\n".join(f"{a:.6g},{1e3 * a * (1.2 + np.sign(a)):.6g},{b:.6g}" for a, b in zip(
        v, t, strict=True))
    (d / "good.csv").write_text("v,i,t\n" + rows + "\n")
    (d / "bad.csv").write_text("v,i\n1,2\nx,y\n3\n")
    (d / "empty.csv").write_text("")
    return d


@SETTINGS
@given(text=manifests())
def test_generated_manifests(data_dir, text):
    path = data_dir / "m.toml"
    path.write_text(text)
    only_clear_errors(load_manifest, path)


# --------------------------------------------------------------------------- tile specs
finite_or_not = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([0.0, -1.0, np.nan, np.inf,
                                                                  1e-30, 1e30]))


def mostly(valid, bad=finite_or_not):
    """Valid values four times out of five, else a bad one."""
    return st.integers(0, 4).flatmap(lambda k: bad if k == 4 else valid)


@st.composite
def tile_inputs(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    g = np.exp(draw(st.lists(st.floats(-14, -9), min_size=rows * cols, max_size=rows * cols)))
    g = np.asarray(g).reshape(rows, cols)
    if draw(st.integers(0, 5)) == 5:
        g[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] = draw(finite_or_not)
    kw = {"conductance": g}
    valid = {"r_row": st.floats(0, 10), "r_col": st.floats(0, 10), "r_wl": st.floats(0, 10),
             "r_driver": st.floats(0, 100), "v_gate": st.floats(0.5, 3), "gmin": st.floats(0, 1e-9),
             "v_read": st.floats(0.01, 0.3)}
    for name in draw(st.lists(st.sampled_from(sorted(valid)), unique=True, max_size=3)):
        kw[name] = draw(mostly(valid[name]))
    kw["cell"] = draw(mostly(st.sampled_from(["1t1r", "passive"]), st.just("2t2r")))
    kw["sense"] = draw(mostly(st.sampled_from(["ideal", "tia"]), st.just("none")))
    if draw(st.booleans()):
        kw["row_mask"] = np.array(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    v = draw(mostly(st.lists(st.floats(-0.3, 0.3), min_size=rows, max_size=rows),
                    st.lists(finite_or_not, min_size=rows - 1, max_size=rows + 1)))
    return kw, np.asarray(v), draw(mostly(st.sampled_from(["nodal", "ideal"]), st.just("spice")))


@SETTINGS
@given(case=tile_inputs())
def test_generated_tile_specs(case):
    kw, v, engine = case

    def build_and_read():
        return read(TileSpec(**kw), v, engine=engine)

    only_clear_errors(build_and_read)


# --------------------------------------------------------------------------- card edits
BUILTIN = builtin_card().to_json()


@st.composite
def card_edits(draw) -> dict:
    card = json.loads(json.dumps(BUILTIN))
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["param", "drop", "top", "model", "stderr"]))
        params = card.get("parameters")
        names = sorted(params) if isinstance(params, dict) and params else ["x"]
        if what == "param" and isinstance(card.get("parameters"), dict):
            card["parameters"].setdefault(draw(st.sampled_from(names)), {})["value"] = \
                draw(st.one_of(finite_or_not, st.text(max_size=4), st.none()))
        elif what == "drop" and isinstance(card.get("parameters"), dict) and card["parameters"]:
            card["parameters"].pop(draw(st.sampled_from(sorted(card["parameters"]))))
        elif what == "top":
            card[draw(st.sampled_from(["schema", "parameters", "fit", "junk"]))] = draw(values)
        elif what == "model":
            card["model"] = draw(st.sampled_from(["yakopcic", "vteam", "nope", "", "ohmic"]))
        elif isinstance(card.get("parameters"), dict) and card["parameters"]:
            card["parameters"][draw(st.sampled_from(sorted(card["parameters"])))]["stderr"] = \
                draw(values)
    return card


@SETTINGS
@given(card=card_edits())
def test_generated_card_edits(card):
    def use():
        mc = ModelCard.from_json(card)
        dev = load_device(mc)
        lo, hi = dev.g_range
        g = np.full((2, 2), 0.5 * (lo + hi)) if np.isfinite(lo + hi) and hi > 0 else \
            np.full((2, 2), 1e-5)
        return read(TileSpec(g, device=mc), np.full(2, 0.05), engine="nodal")

    only_clear_errors(use)

"""A user's own pulse measurements (`circuitnn fit-pulse FILE --columns ...`, or a manifest):
the measured TaOx ramps written out as an instrument would log them (a running pulse counter,
the read current and the signed pulse amplitude) must give the card the registered loader gives,
and bad files are refused with one line."""

import json

import numpy as np
import pytest

from circuitnn.devices.card import ModelCard
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.pulse import load_pulse_data, load_pulse_dataset
from tests.cli_run import run

pytestmark = pytest.mark.measured


def _long_format(folder, ramps: int | None = None):
    """The TaOx ramps (read current in A at 0.1 V) in one long table, up and down ramps
    alternating (39 up, 40 down)."""
    data = load_pulse_dataset("taox-pulse")
    rows, pulse, last = [], 0, 0
    for j in range(ramps or max(data.up.shape[1], data.down.shape[1])):
        for sign, table in ((1, data.up), (-1, data.down)):
            if j >= table.shape[1]:
                continue
            pulse += 10 if sign == last else 0  # a gap between ramps of one direction
            last = sign
            g = table[~np.isnan(table[:, j]), j]
            for x in g:
                pulse += 1
                rows.append(f"{pulse},{float(x) * 0.1!r},{sign * 1.5:g}")
    path = folder / "taox_long.csv"
    path.write_text("pulse,I_read,V_pulse\n" + "\n".join(rows) + "\n")
    return data, path


def test_a_long_pulse_file_loads_as_the_registered_ramps(tmp_path) -> None:
    ref, path = _long_format(tmp_path, ramps=5)
    data = load_pulse_data(path, "pulse,I_read,V_pulse", "A", read_voltage_v=0.1)
    np.testing.assert_allclose(data.up, ref.up[:, :5][: data.up.shape[0]], rtol=1e-12,
                               equal_nan=True)
    np.testing.assert_allclose(data.down, ref.down[:, :5][: data.down.shape[0]], rtol=1e-12,
                               equal_nan=True)
    assert data.unit == "S" and data.up.shape[1] == data.down.shape[1] == 5


def test_fit_pulse_on_a_users_file_gives_the_registered_card(tmp_path, capsys) -> None:
    _, path = _long_format(tmp_path)
    out = tmp_path / "mine.json"
    code, stdout, err = run(["fit-pulse", str(path), "--columns", "pulse,I_read,V_pulse",
                             "--unit", "A", "--read-voltage", "0.1", "--out", str(out),
                             "--figure", str(tmp_path / "mine.png"), "--n-sim", "5", "--json"],
                            capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["cycle_to_cycle"]["sigma_add_p"] > 0
    mine = ModelCard.load(out).values()
    code, _, err = run(["fit-pulse", "taox-pulse", "--out", str(tmp_path / "ref.json"),
                        "--figure", "", "--n-sim", "5"], capsys)
    assert code == 0, err
    ref = ModelCard.load(tmp_path / "ref.json").values()
    for key in ("g_min", "g_max", "pmax_p", "nu_p", "pmax_d", "nu_d"):
        assert mine[key] == pytest.approx(ref[key], rel=1e-6), key
    assert (tmp_path / "mine.png").stat().st_size > 0


def test_a_manifest_of_one_direction_per_file(tmp_path) -> None:
    ref = load_pulse_dataset("taox-pulse")
    for name, table in (("set", ref.up), ("reset", ref.down)):
        g = table[~np.isnan(table[:, 0]), 0] * 1e6
        (tmp_path / f"{name}.csv").write_text(
            "".join(f"{k + 1} {float(x)!r}\n" for k, x in enumerate(g)))
    (tmp_path / "m.toml").write_text(
        '[[ramps]]\nfile = "set.csv"\ncolumns = [0, 1]\nunit = "uS"\ndirection = "up"\n'
        '[[ramps]]\nfile = "reset.csv"\ncolumns = [0, 1]\nunit = "uS"\ndirection = "down"\n')
    data = load_pulse_data(tmp_path / "m.toml")
    n = data.up.shape[0]
    np.testing.assert_allclose(data.up[:, 0], ref.up[:n, 0], rtol=1e-12)
    assert data.files == ["set.csv", "reset.csv"]


@pytest.mark.parametrize("case, message", [
    ("backwards", "pulse numbers must increase"),
    ("one_column", "column"),
    ("short", "at least 3 are needed"),
    ("one_direction", "only up (SET) ramps"),
    ("mixed_units", "mixed units"),
    ("negative", "negative reading"),
    ("no_direction", "give either a direction column or a direction"),
])
def test_bad_pulse_files_are_refused_with_one_line(tmp_path, capsys, case, message) -> None:
    up = "".join(f"{k},{10 + k}\n" for k in range(1, 11))
    down = "".join(f"{k},{20 - k}\n" for k in range(11, 21))
    args = ["--columns", "0,1", "--unit", "uS", "--direction", "up"]
    path = tmp_path / "p.csv"
    if case == "backwards":
        path.write_text("1,10\n2,11\n3,12\n2,13\n")
    elif case == "one_column":
        path.write_text("".join(f"{10 + k}\n" for k in range(10)))
    elif case == "short":
        path.write_text("1,10\n2,11\n3,12\n5,13\n")
    elif case == "one_direction":
        path.write_text(up)
    elif case == "negative":
        path.write_text("1,10\n2,-11\n3,12\n")
    elif case == "no_direction":
        path.write_text(up)
        args = ["--columns", "0,1", "--unit", "uS"]
    elif case == "mixed_units":
        (tmp_path / "u.csv").write_text(up)
        (tmp_path / "d.csv").write_text(down)
        path = tmp_path / "m.toml"
        path.write_text('[[ramps]]\nfile = "u.csv"\ncolumns = [0, 1]\nunit = "uS"\n'
                        'direction = "up"\n[[ramps]]\nfile = "d.csv"\ncolumns = [0, 1]\n'
                        'unit = "mS"\ndirection = "down"\n')
        args = []
    out = tmp_path / "card.json"
    code, stdout, err = run(["fit-pulse", str(path), *args, "--out", str(out)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("circuitnn: error:") and message in lines[0]
    assert not out.exists()


def test_a_pulse_file_needs_its_units_and_sensible_readings(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("".join(f"{k},{10 + k},{1 if k < 6 else -1}\n" for k in range(1, 11)))
    with pytest.raises(CircuitnnError, match="need the read voltage"):
        load_pulse_data(path, "0,1,2", "uA")
    with pytest.raises(CircuitnnError, match="is the unit S right"):
        load_pulse_data(path, "0,1,2", "S")
    with pytest.raises(CircuitnnError, match="unit must be one of"):
        load_pulse_data(path, "0,1,2", "ohm")
    data = load_pulse_data(path, "0,1,2", "uS")
    assert data.up.shape == (5, 1) and data.down.shape == (5, 1)
    assert data.up[0, 0] == pytest.approx(11e-6)

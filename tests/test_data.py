"""Loading measured sweeps: real public datasets through manifests, and every kind of bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from circuitnn import datasets
from circuitnn.datasets import (
    DATASETS,
    bipolar_manifest,
    dataset_path,
    knowm_manifest,
    measured_root,
)
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import (
    SWEEP_KEYS,
    Sweep,
    group_by_device,
    load_manifest,
    load_sweep,
    load_table,
    sweep_from_args,
)

KNOWM = Path(__file__).resolve().parents[1].parent / "shared" / "measured" / "knowm-wsdc-iv"


def _loop(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic pinched loop: V in volts, I in microamps."""
    v = 0.8 * np.sin(2 * np.pi * np.arange(n) / n)
    i_ua = 50.0 * v * (1 + 0.5 * np.sin(2 * np.pi * np.arange(n) / n - 0.7))
    return v, i_ua


def _write_csv(path: Path, n: int = 40, sep: str = ",", header: str | None = None) -> Path:
    v, i = _loop(n)
    lines = [header] if header else []
    lines += [f"{float(a)!r}{sep}{float(b)!r}" for a, b in zip(v, i, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest(tmp_path: Path, body: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


SWEEP = """
[[sweep]]
file = "loop.csv"
columns = [0, 1]
current_unit = "uA"
frequency_hz = 10
"""


# ----------------------------------------------------------------------------- real data


@pytest.mark.measured
def test_knowm_manifest_loads_one_device(tmp_path: Path) -> None:
    man = _manifest(tmp_path, knowm_manifest(device="M2"))
    sweeps = load_manifest(man)
    assert [s.frequency_hz for s in sweeps] == [1, 10, 100, 1000]
    raw = np.loadtxt(KNOWM / "5k_0.8V_10Hz_M2" / "resistor_plus_memristor.csv", delimiter=",")
    s = sweeps[1]
    assert s.n == 200 and s.periodic and s.device == "M2"
    assert s.name == "5k_0.8V_10Hz_M2/resistor_plus_memristor"
    np.testing.assert_allclose(s.v, raw[:, 0])  # the source drives device + 5 kOhm
    assert s.series_resistance_ohm == 5000
    np.testing.assert_allclose(s.i, raw[:, 1] * 1e-6)  # uA -> A
    # the device voltage alone, as the other file of the folder has it
    device_only = knowm_manifest(device="M2", drive="memristor")
    s_dev = load_manifest(_manifest(tmp_path, device_only))[1]
    assert s_dev.series_resistance_ohm == 0
    np.testing.assert_allclose(s.v_device, s_dev.v, atol=1e-9)
    np.testing.assert_allclose(np.diff(s.t), 1 / (200 * 10))
    assert s.duration == pytest.approx(0.1)
    assert 5e-5 < np.abs(s.i).max() < 2e-4  # about 100 uA peak
    assert list(group_by_device(sweeps)) == ["M2"]


def test_knowm_series_resistor_checks_unit_conversion(tmp_path: Path) -> None:
    """Real data: (V_total - V_memristor) / I must equal the 5 kOhm series resistor in ohms."""
    folder = KNOWM / "5k_0.8V_100Hz_M1"
    body = "".join(
        f'[[sweep]]\nfile = "{folder / f}"\ncolumns = [0, 1]\ncurrent_unit = "uA"\n'
        "frequency_hz = 100\n"
        for f in ("memristor.csv", "resistor_plus_memristor.csv")
    )
    mem, tot = load_manifest(_manifest(tmp_path, body))
    assert mem.device == tot.device == "5k_0.8V_100Hz_M1"  # default: the folder
    big = np.abs(mem.i) > 5e-6
    r = (tot.v[big] - mem.v[big]) / mem.i[big]
    assert np.median(r) == pytest.approx(5000, rel=0.01)
    # the same file seen as "resistor + memristor" with Rs given: v_device recovers V_memristor
    s = dataclasses.replace(tot, series_resistance_ohm=5000.0)
    assert np.abs(s.v_device - mem.v).max() < 0.02


def test_all_knowm_loops_load(tmp_path: Path) -> None:
    folders = sorted(p for p in KNOWM.iterdir() if p.is_dir())
    assert len(folders) == 27
    body = "".join(
        f'[[sweep]]\nfile = "{p / "memristor.csv"}"\ncolumns = [0, 1]\ncurrent_unit = "uA"\n'
        f'frequency_hz = {p.name.split("_")[2][:-2]}\ndevice = "{p.name.split("_")[3]}"\n'
        for p in folders
    )
    sweeps = load_manifest(_manifest(tmp_path, body))
    assert all(s.n == 200 for s in sweeps)
    assert sorted(group_by_device(sweeps)) == ["M1", "M2", "M3"]
    assert all(len(g) == 9 for g in group_by_device(sweeps).values())


@pytest.mark.measured
def test_bipolar_manifest(tmp_path: Path) -> None:
    (s,) = load_manifest(_manifest(tmp_path, bipolar_manifest()))
    assert s.n == 150 and s.periodic and s.frequency_hz == 1.0
    assert s.v.max() == pytest.approx(0.88) and s.v.min() == pytest.approx(-0.58)
    assert 9e-5 < s.i.max() <= 1.0001e-4  # current compliance near 100 uA, already in A
    assert s.duration == pytest.approx(1.0)
    np.testing.assert_allclose(s.t[1], 1 / 150)


@pytest.mark.measured
def test_other_datasets_read_as_tables() -> None:
    g = load_table(dataset_path("reram-pulse-gong") / "gong_et_al.csv", [0, 1])
    assert g.shape == (1000, 2) and np.abs(g).max() < 1.5
    # a headed real file: names work, and the empty cells ending short ramps are reported
    with pytest.raises(CircuitnnError, match=r"set\.csv: line \d+, column 0 .*empty cell"):
        load_table(dataset_path("taox-pulse") / "set.csv", ["rmp1", "RMP39"])


def test_registry_and_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    assert measured_root() == KNOWM.parent
    assert set(DATASETS) == {p.name for p in KNOWM.parent.iterdir() if p.is_dir()}
    for key, ds in DATASETS.items():
        folder = dataset_path(key)
        assert ds.licence and ds.repository and len(ds.commit) == 40
        text = (folder / "SOURCE.md").read_text()
        assert ds.repository in text and ds.commit in text and ds.licence in text
        for f in ds.files:
            assert "<" in f or (folder / f).is_file()
    with pytest.raises(CircuitnnError, match="unknown dataset 'nope'"):
        dataset_path("nope")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert measured_root() == tmp_path
    with pytest.raises(CircuitnnError, match=f"not found at {tmp_path}"):
        dataset_path("bipolar-loop")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(CircuitnnError, match="CIRCUITNN_MEASURED=.*missing"):
        measured_root()
    monkeypatch.delenv(datasets.ENV_VAR)
    missing = "no Knowm loop 5k_0.8V_1Hz_M9 under .*available: 47k_0.8V_1000Hz_M1"
    with pytest.raises(CircuitnnError, match=missing):
        knowm_manifest(device="M9")


# ----------------------------------------------------------------------------- good formats


def test_header_names_and_time_column(tmp_path: Path) -> None:
    v, i = _loop(30)
    rows = [f"{k * 2.0},{a},{b}" for k, (a, b) in enumerate(zip(v, i, strict=True))]
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "timed.csv"
    f.write_text("# exported by a tester\nTime_ms,Voltage,Current\n" + "\n".join(rows) + "\n")
    s = load_sweep(f, ["voltage", "Current", "Time_ms"], current_unit="uA", time_unit="ms")
    assert not s.periodic and s.frequency_hz is None and s.device == "d"
    np.testing.assert_allclose(s.t, np.arange(30) * 2e-3)
    np.testing.assert_allclose(s.i, i * 1e-6)
    assert s.duration == pytest.approx(29 * 2e-3)
    # names and indices mix; the CLI string form parses both
    s2 = sweep_from_args(f, "Voltage,2", "mA", frequency_hz=5)
    np.testing.assert_allclose(s2.i, i * 1e-3)
    assert s2.periodic and s2.t[1] == pytest.approx(1 / (30 * 5))


@pytest.mark.parametrize(
    ("sep", "decimal_comma"), [(" ", False), ("   ", False), ("\t", False), (";", False),
                               (";", True), ("\t", True)]
)
def test_separators(tmp_path: Path, sep: str, decimal_comma: bool) -> None:
    v, i = _loop(20)
    cells = [(f"{a:.6f}", f"{b:.6f}") for a, b in zip(v, i, strict=True)]
    if decimal_comma:
        cells = [(a.replace(".", ","), b.replace(".", ",")) for a, b in cells]
    f = tmp_path / "x.txt"
    f.write_text("V" + sep + "I\r\n" + "\r\n".join(a + sep + b for a, b in cells) + "\r\n")
    s = sweep_from_args(f, ["V", "I"], "nA", frequency_hz=1)
    np.testing.assert_allclose(s.v, v, atol=1e-6)
    np.testing.assert_allclose(s.i, i * 1e-9, atol=1e-15)
    assert s.device == tmp_path.name and s.name == f"{tmp_path.name}/x"


def test_manifest_relative_paths_names_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    _write_csv(tmp_path / "loop.csv")
    _write_csv(tmp_path / "sub" / "loop.csv")
    body = SWEEP + SWEEP + SWEEP.replace('"loop.csv"', '"sub/loop.csv"') + (
        'device = "D7"\nseries_resistance_ohm = 100.5\nname = "mine"\n'
    )
    man = _manifest(tmp_path, body)
    monkeypatch.chdir(tmp_path / "sub")  # relative to the manifest, not the working directory
    a, b, c = load_manifest(man)
    assert a.name == f"{tmp_path.name}/loop" and b.name == f"{tmp_path.name}/loop#2"
    assert a.device == b.device == "device" and c.device == "D7" and c.name == "mine"
    assert c.series_resistance_ohm == 100.5 and a.series_resistance_ohm == 0.0
    assert Path(c.source) == tmp_path / "sub" / "loop.csv"
    assert list(group_by_device([a, b, c])) == ["device", "D7"]
    assert [len(g) for g in group_by_device([a, b, c]).values()] == [2, 1]


def test_sweep_is_immutable(tmp_path: Path) -> None:
    s = sweep_from_args(_write_csv(tmp_path / "loop.csv"), "0,1", "uA", frequency_hz=10)
    assert isinstance(s, Sweep)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.device = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.v[0] = 1.0


# ----------------------------------------------------------------------------- bad data files


def _bad(tmp_path: Path, name: str, content: str | bytes) -> Path:
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    return f


GOOD_ROWS = "".join(f"{k * 0.1},{k}\n" for k in range(12))

BAD_FILES = [
    ("empty.csv", "", "empty"),
    ("comments.csv", "# nothing\n\n# here\n", "empty"),
    ("headonly.csv", "V,I\n", "header row but no data"),
    ("nul.csv", b"0.1,2\x00\x00\x01\n" * 12, "binary"),
    ("latin.csv", b"V,I\xff\xfe\n" + GOOD_ROWS.encode(), "not UTF-8"),
    ("word.csv", GOOD_ROWS + "0.5,abc\n", r"line 13, column 1 \(current\): 'abc' is not a number"),
    ("emptycell.csv", "0.5,\n" + GOOD_ROWS, r"line 1, column 1 \(current\): an empty cell"),
    ("nan.csv", "0.1,nan\n" + GOOD_ROWS, r"line 1, column 1 \(current\): value 'nan' is not fin"),
    ("inf.csv", GOOD_ROWS + "-inf,2\n", r"line 13, column 0 \(voltage\): value '-inf' is not fin"),
    ("onecol.csv", "".join(f"{k}\n" for k in range(12)), "only 1 column"),
    ("ragged.csv", GOOD_ROWS + "1,2,3\n", "line 13: ragged row with 3 cells, expected 2"),
    ("few.csv", "V,I\n1,2\n3,4\n", "only 2 data rows; at least 10"),
    ("mixedhead.csv", "0.1,volts\n" + GOOD_ROWS, r"line 1, column 1 \(current\): 'volts'"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_bad_data_file(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    f = _bad(tmp_path, name, content)
    with pytest.raises(CircuitnnError, match=message) as err:
        load_table(f, [0, 1], what=("voltage", "current"))
    assert str(f) in str(err.value) and "\n" not in str(err.value)
    # the same error, in context, through a manifest
    man = _manifest(tmp_path, SWEEP.replace("loop.csv", name))
    with pytest.raises(CircuitnnError, match=message) as err:
        load_manifest(man)
    assert str(man) in str(err.value) and str(f) in str(err.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CircuitnnError, match="nothere.csv: file not found"):
        sweep_from_args(tmp_path / "nothere.csv", "0,1", "A", frequency_hz=1)
    with pytest.raises(CircuitnnError, match=f"{tmp_path}: is a directory"):
        load_table(tmp_path, [0, 1])
    with pytest.raises(CircuitnnError, match="m.toml: file not found"):
        load_manifest(tmp_path / "m.toml")


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([0, 5], r"current column index 5 is out of range: the file has 2 columns \(0..1\)"),
        (["V", "Amps"], "no column named 'Amps' \\(current\\); header names are: 'V', 'I'"),
        ([1, 1], "voltage and current columns must differ"),
    ],
)
def test_bad_column_choice(tmp_path: Path, columns: list, message: str) -> None:
    f = _write_csv(tmp_path / "h.csv", header="V,I")
    with pytest.raises(CircuitnnError, match=message) as err:
        load_table(f, columns, what=("voltage", "current"))
    assert str(f) in str(err.value)


def test_name_on_headerless_file(tmp_path: Path) -> None:
    f = _write_csv(tmp_path / "loop.csv")
    with pytest.raises(CircuitnnError, match="no header row; use 0-based column indices"):
        sweep_from_args(f, "V,I", "uA", frequency_hz=10)


def test_time_column_must_increase(tmp_path: Path) -> None:
    rows = [f"{0.1 * k},{k},{k * 1e-3}" for k in range(12)]
    rows[7] = "0.7,7,0.006"  # equal to the previous time
    f = tmp_path / "t.csv"
    f.write_text("\n".join(rows) + "\n")
    with pytest.raises(CircuitnnError, match=r"t.csv: line 8, column 2 \(time\).*increase"):
        sweep_from_args(f, "0,1,2", "A")


# ----------------------------------------------------------------------------- bad manifests


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("frequency_hz = 10", "frequency_hz = 10\ncolour = 3"),
         "unknown key\\(s\\) colour; allowed: " + ", ".join(SWEEP_KEYS)),
        (('current_unit = "uA"', 'current_unit = "kA"'),
         "current_unit must be one of A, mA, uA, nA, got 'kA'"),
        (('current_unit = "uA"', 'current_unit = "volts"'), "got 'volts'"),
        (('current_unit = "uA"', "current_unit = 1e-6"), "current_unit must be one of"),
        (('current_unit = "uA"\n', ""), "missing required key\\(s\\) current_unit"),
        (("frequency_hz = 10", "frequency_hz = 0"), "frequency_hz must be > 0, got 0"),
        (("frequency_hz = 10", "frequency_hz = -5.0"), "frequency_hz must be > 0"),
        (("frequency_hz = 10", "frequency_hz = inf"), "frequency_hz must be finite"),
        (("frequency_hz = 10", "frequency_hz = nan"), "frequency_hz must be finite"),
        (("frequency_hz = 10", 'frequency_hz = "10"'), "frequency_hz must be a number"),
        (("frequency_hz = 10", "frequency_hz = true"), "frequency_hz must be a number"),
        (("frequency_hz = 10\n", ""), "needs a time column .* or frequency_hz"),
        (("frequency_hz = 10", "frequency_hz = 10\nseries_resistance_ohm = -1"),
         "series_resistance_ohm must be >= 0"),
        (("frequency_hz = 10", "frequency_hz = 10\nseries_resistance_ohm = inf"),
         "series_resistance_ohm must be finite"),
        (("columns = [0, 1]", "columns = [0]"), "columns must list 2 or 3 entries"),
        (("columns = [0, 1]", "columns = [0, 1, 2, 3]"), "columns must list 2 or 3 entries"),
        (("columns = [0, 1]", 'columns = "0,1"'), "columns must list 2 or 3 entries"),
        (("columns = [0, 1]", "columns = [0, -1]"), "0-based index or a header name, got -1"),
        (("columns = [0, 1]", "columns = [0, 1.5]"), "0-based index or a header name, got 1.5"),
        (('file = "loop.csv"', "file = 3"), "file must be a non-empty string"),
        (("frequency_hz = 10", 'frequency_hz = 10\ndevice = ""'), "device must be a non-empty"),
        (("frequency_hz = 10", 'frequency_hz = 10\ntime_unit = "h"'),
         "time_unit must be one of s, ms, us, ns"),
    ],
)
def test_bad_manifest_values(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    _write_csv(tmp_path / "loop.csv")
    man = _manifest(tmp_path, SWEEP.replace(*edit))
    with pytest.raises(CircuitnnError, match=message) as err:
        load_manifest(man)
    text = str(err.value)
    assert text.startswith(f"{man}: [[sweep]] #1: ") and "\n" not in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "no \\[\\[sweep\\]\\] entries"),
        ("# only a comment\n", "no \\[\\[sweep\\]\\] entries"),
        ("sweep = []\n", "no \\[\\[sweep\\]\\] entries"),
        ('[sweep]\nfile = "loop.csv"\n', "write \\[\\[sweep\\]\\], not \\[sweep\\]"),
        ('title = "x"\n' + SWEEP, "unknown top-level key\\(s\\) title"),
        ("[[sweep]]\nfile = \"loop.csv\ncolumns = [0, 1]\n", "invalid TOML: .*line 2"),
        ("[[sweep]\n", "invalid TOML"),
        (b"\x00\x01binary".decode(), "binary"),
    ],
)
def test_bad_manifest_structure(tmp_path: Path, body: str, message: str) -> None:
    _write_csv(tmp_path / "loop.csv")
    man = _manifest(tmp_path, body)
    with pytest.raises(CircuitnnError, match=message) as err:
        load_manifest(man)
    assert str(err.value).startswith(str(man)) and "\n" not in str(err.value)


def test_second_entry_is_named(tmp_path: Path) -> None:
    _write_csv(tmp_path / "loop.csv")
    man = _manifest(tmp_path, SWEEP + SWEEP.replace('"uA"', '"kA"'))
    with pytest.raises(CircuitnnError, match=r"\[\[sweep\]\] #2: current_unit"):
        load_manifest(man)


def test_cli_quick_form_errors(tmp_path: Path) -> None:
    f = _write_csv(tmp_path / "loop.csv")
    for kwargs, message in [
        ({"current_unit": "kA", "frequency_hz": 1}, "current_unit must be one of"),
        ({"current_unit": "uA"}, "needs a time column"),
        ({"current_unit": "uA", "frequency_hz": -1}, "frequency_hz must be > 0"),
        ({"current_unit": "uA", "frequency_hz": 1, "series_resistance_ohm": -3},
         "series_resistance_ohm must be >= 0"),
    ]:
        with pytest.raises(CircuitnnError, match=message) as err:
            sweep_from_args(f, "0,1", **kwargs)
        assert str(err.value).startswith(str(f))
    s = sweep_from_args(f, "0, 1", "µA", frequency_hz=2.5, device="M9", series_resistance_ohm=50)
    assert s.device == "M9" and s.frequency_hz == 2.5 and s.series_resistance_ohm == 50.0
    np.testing.assert_allclose(s.i, _loop(40)[1] * 1e-6)

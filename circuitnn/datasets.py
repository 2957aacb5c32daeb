"""Registry of the public measured datasets used by tests and benchmarks, and where to find them.

The data are not shipped with circuitnn: they are read from a local copy (see `measured_root`)
and each entry names its public source so users can fetch it themselves.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from circuitnn.errors import CircuitnnError

#: environment variable naming the folder that holds the dataset folders
ENV_VAR = "CIRCUITNN_MEASURED"


@dataclass(frozen=True)
class Dataset:
    """One public dataset: what it is, its licence, its public source and its local folder."""

    key: str
    description: str
    licence: str
    repository: str
    source_path: str
    commit: str
    folder: str
    files: tuple[str, ...]
    attribution: str = ""
    #: how its I-V files are read (voltage and current columns, current unit); None: not I-V
    columns: tuple[int, int] | None = None
    current_unit: str = "A"

    @property
    def url(self) -> str:
        """Web address of the source at the recorded commit."""
        return f"https://github.com/{self.repository}/tree/{self.commit}/{self.source_path}"


DATASETS: dict[str, Dataset] = {
    d.key: d
    for d in (
        Dataset(
            key="knowm-wsdc-iv",
            description=(
                "Knowm W-SDC memristors (chalcogenide, bipolar): 27 sinusoidal I-V loops, "
                "devices M1-M3, 1-1000 Hz, 5k/47k series resistor, 0.3/0.8 V drive; 200 samples "
                "of one period per file (arbitrary start phase), current in uA. Measured "
                "2020-07-15 with the Memristor Discovery board V2."
            ),
            licence="GPL-3.0",
            repository="knowm/memristor-discovery",
            source_path="data/",
            commit="9e01a9b7103545fa5fecabcaada6bac462c3ecda",
            folder="knowm-wsdc-iv",
            files=("<R>_<amplitude>_<f>Hz_<device>/memristor.csv",
                   "<R>_<amplitude>_<f>Hz_<device>/resistor_plus_memristor.csv"),
            attribution="Knowm Memristor Discovery (Knowm Inc.)",
            columns=(0, 1),
            current_unit="uA",
        ),
        Dataset(
            key="bipolar-loop",
            description=(
                "One quasi-static bipolar I-V loop of a Cu / a-SiC / TiN type resistive switch, "
                "150 points, whitespace-separated V (V) and I (A); the SET branch saturates "
                "near 100 uA (current compliance)."
            ),
            licence="GPL-3.0",
            repository="fgr1986/vlsi_memristor_compact_model",
            source_path="data_measures/example_bipolar_measurement.txt",
            commit="3b9bd8d0c78991fca251bde2c467f2868d57192d",
            folder="bipolar-loop",
            files=("bipolar_loop.txt",),
            columns=(0, 1),
        ),
        Dataset(
            key="taox-pulse",
            description=(
                "TaOx RRAM (Sandia): 39 potentiation and 39 depression ramps; read current (A) "
                "at 0.1 V after each identical programming pulse; header rmp1..rmp39, empty "
                "cells or zeros end a shorter ramp."
            ),
            licence="BSD-3-Clause",
            repository="sandialabs/cross-sim",
            source_path="examples/lookup_table_generation/lookup_table_example/",
            commit="b30b36596290a946ccaf7624ce3f39461ed74460",
            folder="taox-pulse",
            files=("set.csv", "reset.csv"),
        ),
        Dataset(
            key="reram-pulse-gong",
            description=(
                "HfOx-class ReRAM pulse response (Gong et al. 2018): 1000 consecutive up and "
                "down pulses, conductance normalised to about [-1, 1], with cycle-to-cycle noise."
            ),
            licence="MIT",
            repository="IBM/aihwkit",
            source_path="examples/csv/gong_et_al.csv",
            commit="4545f11b5214c5e3c6b9d293053bbf8baf74e110",
            folder="reram-pulse-gong",
            files=("gong_et_al.csv",),
        ),
    )
}


def measured_root() -> Path:
    """Folder holding the dataset folders: $CIRCUITNN_MEASURED, else <repo>/../shared/measured."""
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise CircuitnnError(f"{ENV_VAR}={env} is not a folder; point it at the measured data")
        return root
    repo_root = Path(__file__).resolve().parent.parent
    root = repo_root.parent / "shared" / "measured"
    if not root.is_dir():
        raise CircuitnnError(
            f"measured data not found at {root}; set {ENV_VAR}=/path/to/measured "
            "(the folder holding knowm-wsdc-iv, bipolar-loop, ...)"
        )
    return root


def dataset_path(key: str) -> Path:
    """Local folder of the dataset `key`."""
    if key not in DATASETS:
        raise CircuitnnError(f"unknown dataset {key!r}; known: {', '.join(DATASETS)}")
    path = measured_root() / DATASETS[key].folder
    if not path.is_dir():
        ds = DATASETS[key]
        raise CircuitnnError(
            f"dataset {key!r} not found at {path}; get it from {ds.url} "
            f"or set {ENV_VAR}"
        )
    return path


def _toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid TOML basic string


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def knowm_manifest(
    device: str = "M1",
    resistor: str = "5k",
    amplitude: str = "0.8V",
    frequencies: Sequence[float] = (1, 10, 100, 1000),
    drive: str = "source",
) -> str:
    """Manifest TOML (absolute paths) for the Knowm W-SDC loops of one device and resistor.

    The board drives the sine through the series resistor, and the files' current is the
    resistor's voltage divided by its resistance. `drive="source"` (default) describes the
    measurement as it was: `resistor_plus_memristor.csv` (the source voltage) with
    ``series_resistance_ohm`` = the resistor, so the device voltage is simulated.
    `drive="memristor"` imposes the measured device voltage instead (`memristor.csv`,
    ``series_resistance_ohm = 0``). Each file holds one drive period (``frequency_hz``).
    """
    if drive not in ("source", "memristor"):
        raise CircuitnnError(f"knowm_manifest: drive must be 'source' or 'memristor', got "
                             f"{drive!r}")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)k", resistor)
    if not match:
        raise CircuitnnError(f"knowm_manifest: resistor must look like '5k', got {resistor!r}")
    r_ohm = float(match.group(1)) * 1e3 if drive == "source" else 0.0
    name = "resistor_plus_memristor.csv" if drive == "source" else "memristor.csv"
    root = dataset_path("knowm-wsdc-iv")
    ds = DATASETS["knowm-wsdc-iv"]
    parts = [
        f"# Knowm W-SDC {device}, {resistor} series resistor, {amplitude} drive "
        f"({'source voltage, resistor simulated' if drive == 'source' else 'device voltage'}).",
        f"# Data: {ds.attribution}, {ds.url} ({ds.licence}).",
    ]
    if not frequencies:
        raise CircuitnnError("knowm_manifest: no frequencies given")
    for f in frequencies:
        folder = f"{resistor}_{amplitude}_{_fmt_number(f)}Hz_{device}"
        file = root / folder / name
        if not file.is_file():
            have = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
            raise CircuitnnError(f"no Knowm loop {folder} under {root}; available: {have}")
        parts += [
            "",
            "[[sweep]]",
            f"file = {_toml_str(str(file))}",
            f"columns = {list(ds.columns)}",
            f"current_unit = {_toml_str(ds.current_unit)}",
            f"frequency_hz = {_fmt_number(f)}",
            f"device = {_toml_str(device)}",
            f"series_resistance_ohm = {_fmt_number(r_ohm)}",
        ]
    return "\n".join(parts) + "\n"


def bipolar_manifest() -> str:
    """Manifest TOML for the quasi-static bipolar loop.

    The file has neither a time column nor a sweep rate. Convention: the 150 points are one
    period of a slow periodic drive at a nominal 1 Hz (``frequency_hz = 1``), i.e. evenly
    spaced in time. The rate is not measured, so time constants fitted to this loop are in
    units of this nominal 1 s period. The loop was measured with a 100 uA current compliance
    (its flat top at 1.00001e-4 A): ``compliance_a = 100e-6``.
    """
    file = dataset_path("bipolar-loop") / "bipolar_loop.txt"
    ds = DATASETS["bipolar-loop"]
    return "\n".join(
        [
            f"# Bipolar loop, {ds.url} ({ds.licence}).",
            "# Quasi-static sweep without time axis: one period at a nominal 1 Hz (convention).",
            "",
            "[[sweep]]",
            f"file = {_toml_str(str(file))}",
            f"columns = {list(ds.columns)}",
            f"current_unit = {_toml_str(ds.current_unit)}",
            "frequency_hz = 1",
            'device = "bipolar"',
            "series_resistance_ohm = 0",
            "compliance_a = 100e-6",
        ]
    ) + "\n"

"""The package list in pyproject.toml covers the tree, and shipped data loads as package data."""

import tomllib
from pathlib import Path

from circuitnn.devices import DEVICE_MODELS_DIR, builtin_card

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in
             (ROOT / "circuitnn").rglob("__init__.py")} | {"circuitnn.device_models"}
    assert listed == found


def test_builtin_card_is_package_data():
    assert (DEVICE_MODELS_DIR / "stanford-pku-hfox.json").is_file()
    assert builtin_card().model == "stanford-pku"

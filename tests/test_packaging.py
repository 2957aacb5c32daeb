"""The package list in pyproject.toml covers the tree, and shipped data loads as package data."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_wheel_installs_and_works_from_any_folder(tmp_path):
    """`pip wheel .`, a non-editable install (here into a folder, dependencies from this
    environment), then from another folder: the built-in card, a nodal tile read, --help."""
    wheels, site, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "src"
    # build from a copy: setuptools writes build/ beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(src)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = wheels.glob("circuitnn-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    code = ("import numpy as np, circuitnn\n"
            "from circuitnn.devices import builtin_card\n"
            "from circuitnn.tile import TileSpec, read\n"
            f"assert circuitnn.__file__.startswith({str(site)!r}), circuitnn.__file__\n"
            "card = builtin_card()\n"
            "spec = TileSpec(np.full((4, 3), 1e-5), device=card)\n"
            "print(read(spec, np.full(4, 0.1), engine='nodal').shape)\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "(3,)", out.stderr[-800:]
    cli = subprocess.run([sys.executable, "-m", "circuitnn.cli", "--help"], cwd=tmp_path,
                         env=env, text=True, capture_output=True, timeout=120)
    assert cli.returncode == 0 and "circuitnn" in cli.stdout

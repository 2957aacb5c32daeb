"""Test-wide set-up: a private user cache, so no test reads or fills the real one; tests that
need ngspice or the shared measured data carry the markers `ngspice` / `measured` and skip, with
the reason, where that is absent (CI has both)."""

from __future__ import annotations

import os

import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.spice.runner import ngspice_available


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    old = os.environ.get("CIRCUITNN_CACHE")
    os.environ["CIRCUITNN_CACHE"] = str(tmp_path_factory.mktemp("circuitnn-cache"))
    yield
    if old is None:
        del os.environ["CIRCUITNN_CACHE"]
    else:
        os.environ["CIRCUITNN_CACHE"] = old


def _measured_missing() -> str | None:
    from circuitnn.datasets import measured_root

    try:
        measured_root()
    except CircuitnnError as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config, items):
    no_spice = None if ngspice_available() else "ngspice is not installed (apt-get install -y " \
        "ngspice libngspice0 libngspice0-dev)"
    no_data = _measured_missing()
    for item in items:
        if no_spice and item.get_closest_marker("ngspice"):
            item.add_marker(pytest.mark.skip(reason=no_spice))
        if no_data and item.get_closest_marker("measured"):
            item.add_marker(pytest.mark.skip(reason=no_data))

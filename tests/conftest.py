"""Test-wide set-up: a private user cache, so no test reads or fills the real one; tests that
need ngspice, the shared measured data or VACASK carry the markers `ngspice` / `measured` /
`vacask` and skip, with the reason, where that is absent (CI has all three)."""

from __future__ import annotations

import os

import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.spice import vacask
from circuitnn.spice.runner import ngspice_available


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    old = os.environ.get("CIRCUITNN_CACHE")
    cache = tmp_path_factory.mktemp("circuitnn-cache")
    os.environ["CIRCUITNN_CACHE"] = str(cache)
    # the compiled integrators (pure functions of their text, named by its hash) are shared by
    # the run's worker processes, so each is compiled once per run, not once per worker
    run = tmp_path_factory.getbasetemp()  # under xdist, each worker's folder in the run's one
    shared = (run.parent if os.environ.get("PYTEST_XDIST_WORKER") else run) / "circuitnn-compiled"
    shared.mkdir(mode=0o700, exist_ok=True)  # private: the cache refuses a folder others write
    (cache / "compiled").symlink_to(shared, target_is_directory=True)
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
    no_vacask = vacask.missing()
    for item in items:
        if no_spice and item.get_closest_marker("ngspice"):
            item.add_marker(pytest.mark.skip(reason=no_spice))
        if no_data and item.get_closest_marker("measured"):
            item.add_marker(pytest.mark.skip(reason=no_data))
        if no_vacask and item.get_closest_marker("vacask"):
            item.add_marker(pytest.mark.skip(reason=no_vacask))

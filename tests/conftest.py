"""Test-wide settings: a private user cache, so no test reads or fills the real one."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    old = os.environ.get("CIRCUITNN_CACHE")
    os.environ["CIRCUITNN_CACHE"] = str(tmp_path_factory.mktemp("circuitnn-cache"))
    yield
    if old is None:
        del os.environ["CIRCUITNN_CACHE"]
    else:
        os.environ["CIRCUITNN_CACHE"] = old

"""Automatic surrogate calibration for a fitted card: nodal data on Dask, validation against real
ngspice, the content-hash cache (reused without recalibration), nothing half-written."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import circuitnn.surrogate.auto as auto
from circuitnn.cache import cache_dir, locked
from circuitnn.cli import main
from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard, operating_point
from circuitnn.errors import CircuitnnError
from circuitnn.surrogate.card import find_card
from circuitnn.surrogate.read import read
from circuitnn.tile.spec import TileSpec

KNOWM = DEVICE_MODELS_DIR / "knowm-m1-vteam.json"  # fitted to the Knowm M1 loops
SMALL = dict(rows=16, cols=8, n_tiles=4, n_vectors=16, validate_tiles=2, progress=False)


def _cards() -> list:
    return sorted(cache_dir("surrogate").glob("surrogate-*.json"))


@pytest.fixture(scope="module")
def calibrated():
    """Interrupted, then failing, then passing calibration of the same request."""
    card = ModelCard.load(KNOWM)
    before = set(_cards())
    mp = pytest.MonkeyPatch()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    mp.setattr(auto, "validate", interrupt)  # stop after the nodal data and the fit
    with pytest.raises(KeyboardInterrupt):
        auto.surrogate_for(card, **SMALL)
    mp.undo()
    interrupted = set(_cards()) - before
    mp.setattr(auto, "MAX_RMS_ERROR", 1e-9)  # a bar no surrogate meets: refused, not cached
    with pytest.raises(CircuitnnError) as failed:
        auto.surrogate_for(card, **SMALL)
    mp.undo()
    refused = set(_cards()) - before
    sc, report = auto.surrogate_for(card, **SMALL)
    return card, sc, report, interrupted, refused, str(failed.value)


@pytest.mark.ngspice
def test_calibrated_card_is_validated_and_cached(calibrated):
    card, sc, report, interrupted, refused, failed = calibrated
    assert not interrupted and not refused  # no card from an interrupted or failed run
    assert "fails validation against ngspice" in failed and "\n" not in failed
    assert report["calibrated"] is True
    val = report["validation"]
    assert val["tiles"] == 2 and val["vectors"] == 32
    assert 0 < val["rms_error"] <= auto.MAX_RMS_ERROR and val["max_error"] >= val["rms_error"]
    assert sc.path.parent == cache_dir("surrogate")
    assert report["card_sha256"] == hashlib.sha256(sc.path.read_bytes()).hexdigest()
    assert sc.domain["conductance"] == list(operating_point(card).window)
    assert sc.domain["fixed"]["v_read"] == operating_point(card).v_read
    key = sc.provenance["automatic"]["cache_key"]
    assert key in sc.path.name and not (sc.path.parent / f"work-{key}").exists()
    assert not list(sc.path.parent.glob(f".{sc.path.name}.*"))  # no temporary file left


@pytest.mark.ngspice
def test_second_request_loads_the_cache(calibrated, monkeypatch):
    card, sc, report, *_ = calibrated
    mtime = sc.path.stat().st_mtime_ns

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated a second time")

    monkeypatch.setattr(auto, "build", no_calibration)
    again, rep = auto.surrogate_for(card, **SMALL)
    assert rep["calibrated"] is False and rep["card_sha256"] == report["card_sha256"]
    assert again.path == sc.path and sc.path.stat().st_mtime_ns == mtime
    # a narrower request (one wire value, a window inside) is covered by the same card
    g_min, g_max = operating_point(card).window
    narrow, rep = auto.surrogate_for(card, **SMALL, r_range=(1.0, 2.0),
                                     window=(1.2 * g_min, 0.9 * g_max))
    assert narrow.path == sc.path and rep["calibrated"] is False


@pytest.mark.ngspice
def test_read_finds_the_cached_card(calibrated):
    card, sc, *_ = calibrated
    g_min, g_max = operating_point(card).window
    g = np.random.default_rng(7).uniform(g_min, g_max, (16, 8))
    spec = TileSpec(g, device=card, r_row=1.5, r_col=2.5)
    assert find_card(spec).path == sc.path
    v = (np.random.default_rng(8).random((12, 16)) < 0.5) * spec.v_read
    i_sur = read(spec, v, engine="surrogate")
    i_nod = read(spec, v, engine="nodal")
    rms = np.sqrt(np.mean(i_nod ** 2))
    assert np.sqrt(np.mean((i_sur - i_nod) ** 2)) <= 0.01 * rms


def test_lock_is_exclusive_across_processes(tmp_path):
    lock = tmp_path / ".key.lock"
    probe = ("import fcntl, sys\nh = open(sys.argv[1], 'a')\ntry:\n"
             "    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n"
             "    sys.exit(3)\n")
    with locked(lock):
        held = subprocess.run([sys.executable, "-c", probe, str(lock)], check=False)
    free = subprocess.run([sys.executable, "-c", probe, str(lock)], check=False)
    assert held.returncode == 3 and free.returncode == 0


@pytest.mark.parametrize("kwargs, words", [
    (dict(rows=1, cols=8), "rows >= 2"),
    (dict(rows=16, cols=8, r_range=(3.0, 1.0)), "wire range"),
    (dict(rows=16, cols=8, window=(10e-6, 2e-3)), "outside what the device holds"),
    (dict(rows=16, cols=8, v_read=0.2), "switching threshold"),
    (dict(rows=16, cols=8, spec_kwargs={"sense": "bogus"}), "unknown sense"),
])
def test_bad_requests_fail_before_any_calibration(kwargs, words, monkeypatch):
    monkeypatch.setattr(auto, "build", None)  # calling it would be a TypeError, not our error
    with pytest.raises(CircuitnnError, match=words):
        auto.surrogate_for(ModelCard.load(KNOWM), **kwargs)
    with pytest.raises(CircuitnnError, match="pulse-update card"):
        auto.surrogate_for(ModelCard.load(DEVICE_MODELS_DIR / "taox-pulse.json"), 16, 8)


def test_surrogate_fit_writes_to_the_cache_not_the_repository(capsys):
    shipped = set(os.listdir(DEVICE_MODELS_DIR))
    code = 0
    try:
        main(["surrogate", "fit", "--rows", "8", "--cols", "4", "--tiles", "2",
              "--check-tiles", "0", "--vectors", "8", "--device", str(KNOWM)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, err
    path = cache_dir("surrogate") / "surrogate-knowm-m1-vteam-8x4.json"
    assert path.is_file() and f"wrote {path}" in out
    assert set(os.listdir(DEVICE_MODELS_DIR)) == shipped

"""I-V fitting on real measured loops: steady state, vectorised population, targets, failures."""

from __future__ import annotations

import numpy as np
import pytest

from circuitnn.datasets import bipolar_manifest, knowm_manifest
from circuitnn.devices import Device
from circuitnn.devices.models import get_model
from circuitnn.errors import CircuitnnError
from circuitnn.fitting.data import Sweep, load_manifest
from circuitnn.fitting.iv import (
    FitSettings,
    _Problem,
    check_sweeps,
    fit_iv,
    fit_summary,
    make_card,
    nrmse,
)

# Good starting points found by the full search (benchmarks/bench_fit_iv.py); the tests refine
# from them with a few lmfit steps instead of repeating the global search.
KNOWM_M1_YAKOPCIC = {
    "a1": 0.011397641182702598,
    "a2": 0.008176838851137892,
    "b": 0.07157879679140883,
    "Ap": 8323.838082493345,
    "An": 7046043.565027977,
    "Vp": 0.12549734232180995,
    "Vn": 0.22279046706691114,
    "xp": 0.2442651252125789,
    "xn": 0.5034783358140046,
    "alphap": 23.009465312681634,
    "alphan": 17.55815832725295,
    "eta": 1.0,
}
BIPOLAR_VTEAM = {
    "R_on": 7105.515215556435, "R_off": 134660511.53671044, "k_off": 8696.817052969578,
    "k_on": -998916802502.8112, "v_off": 0.08111508778944511, "v_on": -0.48091271163121585,
    "alpha_off": 4.263936825291874, "alpha_on": 4.487321591586262, "a_off": 1.4324655113040363,
    "a_on": -0.4684661412266119, "w_c": 0.34353643676255025,
}
BIPOLAR_VTEAM_POLARITY = -1.0


@pytest.fixture(scope="module")
def knowm_m1(tmp_path_factory) -> list[Sweep]:
    path = tmp_path_factory.mktemp("m") / "knowm.toml"
    path.write_text(knowm_manifest("M1"))
    return load_manifest(path)


@pytest.fixture(scope="module")
def bipolar(tmp_path_factory) -> list[Sweep]:
    path = tmp_path_factory.mktemp("b") / "bipolar.toml"
    path.write_text(bipolar_manifest())
    return load_manifest(path)


def _synthetic(phase: int, n: int = 120, freq: float = 50.0) -> tuple[Device, Sweep]:
    """One period of a switching Yakopcic device in periodic steady state, sampled from `phase`."""
    dev = Device("yakopcic", dict(a1=1e-4, a2=8e-5, b=2.0, Ap=4e3, An=4e3, Vp=0.4, Vn=0.4,
                                  xp=0.3, xn=0.5, alphap=1.0, alphan=3.0))
    k = np.arange(6 * n)
    t = k / (n * freq)
    v = 0.9 * np.sin(2 * np.pi * k / n)
    tr = dev.simulate(t, v, 0.5)
    sl = slice(5 * n + phase, 6 * n) if phase == 0 else slice(4 * n + phase, 5 * n + phase)
    vv, ii = tr.v[sl].copy(), tr.i[sl].copy()
    sweep = Sweep(f"syn{phase}", "syn", np.arange(n) / (n * freq), vv, ii, 0.0, True, freq,
                  "synthetic")
    return dev, sweep


def test_steady_state_does_not_depend_on_the_start_phase() -> None:
    """Sampling the same periodic loop from another phase gives the same (near zero) error."""
    errs = []
    for phase in (0, 37, 80):
        dev, sweep = _synthetic(phase)
        prob = _Problem(dev.model, [sweep], warmup=2)
        values = {k: float(v) for k, v in dev.params.items()}
        errs.append(float(prob.nrmse_matrix(prob.to_vector(values)[None], 1.0, 1e-4)[0, 0]))
    assert max(errs) < 0.01
    # a fixed starting state (no warm-up) would be wrong for most phases
    dev, sweep = _synthetic(37)
    direct = dev.simulate(sweep.t, sweep.v, dev.bounds()[0]).i
    assert float(nrmse(direct, sweep.i)) > 0.05


def test_population_is_simulated_at_once_and_matches_single_runs(knowm_m1) -> None:
    prob = _Problem(get_model("yakopcic"), knowm_m1, warmup=1)
    rng = np.random.default_rng(1)
    x = prob.lo + (prob.hi - prob.lo) * rng.random((5, len(prob.free)))
    x[0] = prob.to_vector(KNOWM_M1_YAKOPCIC)
    many = prob.nrmse_matrix(x, 1.0, 1e-3)
    assert many.shape == (5, 4)
    single = prob.nrmse_matrix(x[2:3], 1.0, 1e-3)
    np.testing.assert_allclose(many[2], single[0], rtol=1e-10)
    assert many[0].mean() < many[1:].mean(axis=1).min()


def test_vteam_k_on_is_searched_on_a_log_scale() -> None:
    prob = _Problem(get_model("vteam"), [_synthetic(0)[1]], warmup=1)
    j = [p.name for p in prob.free].index("k_on")
    assert prob.kind[j] == "neglog"
    assert prob.to_params(np.array([prob.lo]))["k_on"][0, 0] == pytest.approx(-1e-3)


def test_knowm_m1_one_parameter_set_reaches_target(knowm_m1) -> None:
    """Best model (Yakopcic), one parameter set for 1, 10, 100 and 1000 Hz: NRMSE <= 0.10."""
    st = FitSettings(start=KNOWM_M1_YAKOPCIC, start_polarity=1.0, max_nfev=4)
    fit = fit_iv(knowm_m1, "yakopcic", st)
    assert fit.nrmse <= 0.10
    assert len(fit.nrmse_per_sweep) == 4
    assert all(v < 0.2 for v in fit.nrmse_per_sweep.values())
    card = make_card(fit, "knowm.toml").to_json()
    assert card["fit"]["nrmse"] == pytest.approx(fit.nrmse)
    assert card["parameters"]["polarity"]["value"] == 1.0
    assert card["parameters"]["eta"].get("stderr") is None  # fixed
    assert "residuals_per_sweep" in card["variation"]
    src = card["provenance"]["data"][0]["public_source"]
    assert src["dataset"] == "knowm-wsdc-iv" and "knowm/memristor-discovery" in src["url"]
    summary = fit_summary(fit)
    assert set(summary["params"]["a1"]) == {"value", "stderr", "unit"}


def test_bipolar_loop_reaches_target(bipolar) -> None:
    st = FitSettings(start=BIPOLAR_VTEAM, start_polarity=BIPOLAR_VTEAM_POLARITY, max_nfev=4)
    fit = fit_iv(bipolar, "vteam", st)
    assert fit.nrmse <= 0.10
    # the other polarity is much worse: polarity matters
    st_other = FitSettings(start=BIPOLAR_VTEAM, start_polarity=-BIPOLAR_VTEAM_POLARITY,
                           max_nfev=1)
    assert fit_iv(bipolar, "vteam", st_other, check=False).nrmse > fit.nrmse + 0.05


def test_short_global_search_runs_both_polarities() -> None:
    _, sweep = _synthetic(10, n=60)
    calls = []
    st = FitSettings(popsize=2, maxiter=2, max_nfev=3)
    fit = fit_iv([sweep], "vteam", st, progress=lambda: calls.append(1), check=False)
    assert set(fit.search_nrmse) == {"+1", "-1"}
    assert len(calls) >= 2
    assert np.isfinite(fit.nrmse)


def test_noise_does_not_converge() -> None:
    rng = np.random.default_rng(0)
    n = 60
    v = 0.8 * np.sin(2 * np.pi * np.arange(n) / n)
    sweep = Sweep("noise", "noise", np.arange(n) / n, v, 1e-5 * rng.standard_normal(n), 0.0,
                  True, 1.0, "noise.csv")
    st = FitSettings(popsize=2, maxiter=2, max_nfev=3)
    with pytest.raises(CircuitnnError, match="did not converge.*noise.csv"):
        fit_iv([sweep], "yakopcic", st)


@pytest.mark.parametrize("scale,match", [(0.0, "flat"), (1e6, "implausible")])
def test_flat_or_absurd_current_is_refused(scale: float, match: str) -> None:
    n = 20
    v = np.sin(2 * np.pi * np.arange(n) / n)
    sweep = Sweep("s", "d", np.arange(n) / n, v, scale * v * 1e-4, 0.0, True, 1.0, "x.csv")
    with pytest.raises(CircuitnnError, match=match):
        check_sweeps([sweep])


def test_unknown_model_is_refused(bipolar) -> None:
    with pytest.raises(CircuitnnError, match="unknown model"):
        fit_iv(bipolar, "ohmic")

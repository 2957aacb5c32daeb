"""I-V fits of real measured loops: measures, compliance, uncertainty, ngspice check, failures."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from circuitnn.datasets import bipolar_manifest, knowm_manifest
from circuitnn.devices import DEVICE_MODELS_DIR, Device, ModelCard, load_device
from circuitnn.devices.models import get_model
from circuitnn.errors import CircuitnnError
from circuitnn.fitting import iv
from circuitnn.fitting.data import Sweep, load_manifest
from circuitnn.fitting.iv import (
    MAX_PERIOD_DRIFT,
    FitSettings,
    _Problem,
    _search_problem,
    _searches,
    check_fit,
    check_sweeps,
    fit_iv,
    fit_summary,
    log_error,
    log_mask,
    make_card,
    nrmse,
    periodic_drive,
    series_element,
)

# Optima found by the full search (benchmarks/bench_fit_iv.py); the tests refine from them,
# which converges in a few evaluations, instead of repeating the global search.
KNOWM_M1_MSS = {
    "R_on": 1099.87, "R_off": 77717.3, "tau": 1.35350e-4, "V_on": 0.326299, "V_off": 0.192681,
    "a_f": 1.01929e-8, "b_f": 30.4382, "a_r": 4.52315e-10, "b_r": 12.7066,
}
BIPOLAR_VTEAM = {
    "R_on": 6003.092953905292, "R_off": 44255638.861065716, "k_off": 0.0010004180598355656,
    "k_on": -106942659.40872514, "v_off": 0.021587290797941895, "v_on": -0.4280057804901134,
    "alpha_off": 7.477510127468661, "alpha_on": 7.106646561630634, "a_off": 1.4999999999973974,
    "a_on": -0.35383581065747044, "w_c": 0.11511304700013987,
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


@pytest.fixture(scope="module")
def knowm_fit(knowm_m1):
    """MSS refined from the benchmark's optimum on the four Knowm M1 sweeps."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_iv(knowm_m1, "mss", FitSettings(start=KNOWM_M1_MSS, start_polarity=1.0))
    return fit, caught


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


def _noise(n: int = 60) -> Sweep:
    """Gaussian noise (1e-5 A) on a 0.8 V sine sweep: no loop to fit."""
    rng = np.random.default_rng(0)
    v = 0.8 * np.sin(2 * np.pi * np.arange(n) / n)
    return Sweep("noise", "noise", np.arange(n) / n, v, 1e-5 * rng.standard_normal(n), 0.0,
                 True, 1.0, "noise.csv")


def test_steady_state_does_not_depend_on_the_start_phase() -> None:
    """Sampling the same periodic loop from another phase gives the same (near zero) error."""
    errs = []
    for phase in (0, 37, 80):
        dev, sweep = _synthetic(phase)
        prob = _Problem(dev.model, [sweep], warmup=2)
        values = {k: float(v) for k, v in dev.params.items()}
        pred = prob.predict(prob.to_vector(values)[None], 1.0, 1e-5)[0][0]
        errs.append(float(nrmse(pred, sweep.i)))
    assert max(errs) < 0.01
    # a fixed starting state (no warm-up) would be wrong for most phases
    dev, sweep = _synthetic(37)
    direct = dev.simulate(sweep.t, sweep.v, dev.bounds()[0]).i
    assert float(nrmse(direct, sweep.i)) > 0.05


@pytest.mark.measured
def test_population_and_polarities_are_simulated_at_once(knowm_m1) -> None:
    prob = _Problem(get_model("mss"), knowm_m1, warmup=1)
    rng = np.random.default_rng(1)
    x = prob.lo + (prob.hi - prob.lo) * rng.random((5, len(prob.free)))
    x[0] = prob.to_vector(KNOWM_M1_MSS)
    pol = np.array([1.0, 1.0, -1.0, 1.0, -1.0])
    many = prob.objective(x, pol, 1e-3)
    assert many.shape == (5,)
    np.testing.assert_allclose(many[2], prob.objective(x[2:3], -1.0, 1e-3)[0], rtol=1e-9)
    assert many[0] < many[1:].min()
    # a device of polarity -1 is the same as a flipped drive: the other polarity fits worse
    assert prob.objective(x[:1], -1.0, 1e-3)[0] > 10 * many[0]


@pytest.mark.measured
def test_the_search_view_keeps_at_least_100_samples_per_sweep(knowm_m1, bipolar) -> None:
    """Every second sample only when 100 remain: the bipolar loop's 150 samples would lose its
    one-sample RESET point."""
    st = FitSettings()
    knowm = _search_problem(_Problem(get_model("vteam"), knowm_m1, warmup=2), st)
    assert knowm.stride == 2 and knowm.meas[0].size == 100 and knowm.warmup == 1
    loop = _search_problem(_Problem(get_model("vteam"), bipolar, warmup=2), st)
    assert loop.stride == 1 and loop.meas[0].size == bipolar[0].n == 150


def test_vteam_k_on_is_searched_on_a_log_scale() -> None:
    prob = _Problem(get_model("vteam"), [_synthetic(0)[1]], warmup=1)
    j = [p.name for p in prob.free].index("k_on")
    assert prob.kind[j] == "neglog"
    assert prob.to_params(np.array([prob.lo]))["k_on"][0, 0] == pytest.approx(-1e-3)


def test_log_error_uses_points_above_the_floors() -> None:
    n = 40
    v = np.sin(2 * np.pi * np.arange(n) / n)
    i = 1e-4 * v
    i[5] = 1e-9  # below 1e-3 of the peak: excluded
    sweep = Sweep("s", "d", np.arange(n) / n, v, i, 0.0, True, 1.0, "x.csv",
                  noise_floor_a=2e-6)
    mask = log_mask(sweep)
    assert not mask[5] and not mask[0]  # zero crossing and the tiny point
    assert np.all(np.abs(i[mask]) > 2e-6)
    pred = i * 10.0  # one decade everywhere
    assert float(log_error(pred, sweep)) == pytest.approx(1.0)


@pytest.mark.ngspice
@pytest.mark.measured
@pytest.mark.slow
def test_knowm_m1_reaches_targets_and_agrees_with_ngspice(knowm_fit) -> None:
    """One MSS parameter set for 1, 10, 100 and 1000 Hz: NRMSE <= 0.05, log error <= 0.3."""
    fit, caught = knowm_fit
    assert fit.nrmse <= 0.05 and fit.log_error <= 0.3
    assert len(fit.per_sweep) == 4
    assert all(m.log_error_decades < 0.4 for m in fit.per_sweep.values())
    assert abs(fit.nrmse_ngspice - fit.nrmse) < 0.01
    assert fit.refinement["converged"]
    assert caught == []  # no library warning reaches the user
    # every free parameter: a standard error, or the reason why not
    free = {p.name for p in get_model("mss").params} - set(fit.fixed)
    assert set(fit.stderr) == free
    assert {k for k, v in fit.stderr.items() if v is None} == set(fit.stderr_reason)
    assert fit.stderr["tau"] is not None and 0 < fit.stderr["tau"] < fit.params["tau"]
    for reason in fit.stderr_reason.values():
        assert "not identifiable" in reason or "bound" in reason
    made = make_card(fit, "knowm.toml")
    # the fitted M1 device relaxes at 0 V (MSS: exp(-V_off / V_T) / tau ~ 4 /s): the card is
    # written, says why no array can use it, and every use refuses it with that reason
    assert made.operating["usable"] is False and "volatile" in made.operating["reason"]
    with pytest.raises(CircuitnnError, match="volatile device"):
        load_device(made)
    card = made.to_json()
    assert card["fit"]["nrmse"] == pytest.approx(fit.nrmse)
    assert card["fit"]["log_error_decades"] == pytest.approx(fit.log_error)
    assert "Molter" in card["provenance"]["model_citation"]
    assert card["parameters"]["phi"].get("stderr") is None  # fixed
    src = card["provenance"]["data"][0]["public_source"]
    assert src["dataset"] == "knowm-wsdc-iv" and "knowm/memristor-discovery" in src["url"]
    summary = fit_summary(fit)
    assert {"nrmse", "log_error_decades", "nrmse_ngspice", "params", "stderr", "stderr_reason",
            "seconds", "per_sweep"} <= set(summary)


@pytest.mark.ngspice
@pytest.mark.measured
def test_bipolar_loop_with_its_compliance(bipolar) -> None:
    """The loop's flat top is the 100 uA compliance: simulated as a current-limited source."""
    st = FitSettings(start=BIPOLAR_VTEAM, start_polarity=BIPOLAR_VTEAM_POLARITY)
    fit = fit_iv(bipolar, "vteam", st)
    assert fit.nrmse <= 0.05 and fit.log_error <= 0.3
    sweep = bipolar[0]
    assert sweep.compliance_a == pytest.approx(1e-4)
    m = fit.per_sweep[sweep.name]
    assert m.points_at_compliance > 10
    # the simulated instrument never lets the current exceed the compliance
    assert np.max(np.abs(fit.predicted[0])) <= 1.001e-4
    assert abs(m.nrmse_ngspice - m.nrmse) < 0.01


# run P's bipolar MSS card (BENCHMARKS.md): ngspice's Newton fails where its current limit lets
# go ("timestep too small" at 0.39 s) with 1 fF at the node between limit and device
BIPOLAR_MSS = {
    "R_on": 2968.1, "R_off": 9.984e8, "tau": 1.6951e-7, "V_on": 0.77946, "V_off": 0.38989,
    "phi": 0.5, "a_f": 1e-15, "b_f": 0.10112, "a_r": 1.216e-15, "b_r": 0.10023, "T": 298.5,
}


@pytest.mark.measured
@pytest.mark.ngspice
def test_ngspice_runs_a_card_that_needs_capacitance_at_the_current_limit(bipolar) -> None:
    from circuitnn.spice.runner import run_netlist
    from circuitnn.spice.subckt import TRAN_ATTEMPTS, simulate_ngspice, transient_netlist

    sweep = bipolar[0]
    dev, element = Device("mss", BIPOLAR_MSS), series_element(sweep)
    t, v = periodic_drive(sweep, 3)
    ten_pf = [cap for _, cap in TRAN_ATTEMPTS].index(1e-11)
    for options, cap in TRAN_ATTEMPTS[:ten_pf]:  # every attempt before the 10 pF one fails
        with pytest.raises(CircuitnnError, match="(?i)timestep too small"):
            run_netlist(transient_netlist(dev, t, v, 0.5, series=element, options=options,
                                          node_capacitance=cap), name="mss", retry=False)
    a = dev.simulate(t, v, 0.5, series=element)
    b = simulate_ngspice(dev, t, v, 0.5, series=element)
    assert np.sqrt(np.mean((a.i - b.i) ** 2)) / np.ptp(a.i) < 1e-3


def test_short_global_search_and_progress() -> None:
    _, sweep = _synthetic(10, n=60)
    stages = []
    st = FitSettings(popsize=2, maxiter=2, max_nfev=3, ngspice=False)
    fit = fit_iv([sweep], "vteam", st, progress=stages.append, check=False)
    assert stages.count("search") >= 2 and "refine" in stages
    assert fit.polarity in (1.0, -1.0) and fit.search_objective is not None
    assert np.isfinite(fit.nrmse)


def test_several_searches_keep_the_best_refinement() -> None:
    """Searches side by side give what each gives alone; the lowest refined objective wins
    (one start per search: both are refined coarse, then in full)."""
    _, sweep = _synthetic(10, n=60)
    st = FitSettings(popsize=2, maxiter=2, max_nfev=3, ngspice=False, polarities=(1.0,),
                     refine_starts=1)
    single = [fit_iv([sweep], "vteam", replace(st, seed=k), check=False) for k in (3, 4)]
    stages: list[str] = []
    both = fit_iv([sweep], "vteam", replace(st, seed=3, searches=2), progress=stages.append,
                  check=False)
    assert both.refinement["coarse_starts"] == 2 and both.refinement["full_starts"] == 2
    assert both.objective == pytest.approx(min(f.objective for f in single), rel=1e-3)
    assert stages.count("search") >= 2 * 2


def test_a_search_that_converges_early_restarts(monkeypatch) -> None:
    """A population that converges with >= 15 of its 45 generations left starts again (noise:
    MSS converges after 27), and the restart's population joins the candidates."""
    st = FitSettings(popsize=2, maxiter=45, polarities=(1.0,))
    prob = _Problem(get_model("mss"), [_noise()], st.warmup_periods)

    def generations() -> tuple[int, float]:
        ticks: list[int] = []
        found = _searches(prob, st, lambda: ticks.append(1))
        return len(ticks), found[0][2]

    with_restart, best = generations()
    early = st.maxiter - iv.RESTART_GENERATIONS
    monkeypatch.setattr(iv, "RESTART_GENERATIONS", st.maxiter + 1)  # no restart
    once, best_once = generations()
    assert once <= early < with_restart <= st.maxiter
    assert best <= best_once


def test_noise_does_not_converge() -> None:
    st = FitSettings(popsize=2, maxiter=2, max_nfev=3, ngspice=False)
    with pytest.raises(CircuitnnError, match="did not converge.*noise.csv"):
        fit_iv([_noise()], "yakopcic", st)


@pytest.mark.ngspice
@pytest.mark.measured
def test_a_card_still_drifting_after_its_warm_up_is_rejected(knowm_fit) -> None:
    """A device whose state creeps from period to period (slow, asymmetric switching), fitted
    on its own third period from mid-range, fits it closely yet is rejected: its measures depend
    on how long the waveform ran. A steady card (Knowm M1 MSS) does not drift."""
    n, freq = 120, 50.0
    dev = Device("yakopcic", dict(a1=1e-4, a2=8e-5, b=2.0, Ap=30.0, An=9.0, Vp=0.4, Vn=0.4,
                                  xp=0.5, xn=0.9, alphap=1.0, alphan=3.0))
    k = np.arange(3 * n)
    tr = dev.simulate(k / (n * freq), 0.9 * np.sin(2 * np.pi * k / n), 0.5)
    sweep = Sweep("creep", "creep", np.arange(n) / (n * freq), tr.v[2 * n:].copy(),
                  tr.i[2 * n:].copy(), 0.0, True, freq, "synthetic")
    values = {name: float(v) for name, v in dev.params.items()}
    st = FitSettings(start=values, start_polarity=1.0, ngspice=False)
    fit = fit_iv([sweep], "yakopcic", st, check=False)
    m = fit.per_sweep["creep"]
    assert m.nrmse < 1e-3 and m.period_drift > 2 * MAX_PERIOD_DRIFT
    with pytest.raises(CircuitnnError, match="not in periodic steady state on creep"):
        check_fit(fit)
    steady, _ = knowm_fit
    assert max(s.period_drift for s in steady.per_sweep.values()) < 1e-3


@pytest.mark.measured
def test_refinement_that_hits_its_cap_is_not_converged(bipolar) -> None:
    start = dict(BIPOLAR_VTEAM, R_on=2e4, v_off=0.3)
    st = FitSettings(start=start, start_polarity=BIPOLAR_VTEAM_POLARITY, max_nfev=2,
                     ngspice=False)
    fit = fit_iv(bipolar, "vteam", st, check=False)
    assert not fit.refinement["converged"]
    with pytest.raises(CircuitnnError, match="did not converge"):
        check_fit(fit)


@pytest.mark.parametrize("scale,match", [(0.0, "flat"), (1e6, "implausible")])
def test_flat_or_absurd_current_is_refused(scale: float, match: str) -> None:
    n = 20
    v = np.sin(2 * np.pi * np.arange(n) / n)
    sweep = Sweep("s", "d", np.arange(n) / n, v, scale * v * 1e-4, 0.0, True, 1.0, "x.csv")
    with pytest.raises(CircuitnnError, match=match):
        check_sweeps([sweep])


@pytest.mark.measured
def test_unknown_model_is_refused(bipolar) -> None:
    with pytest.raises(CircuitnnError, match="unknown model"):
        fit_iv(bipolar, "ohmic")


@pytest.mark.measured
def test_measures_are_finite_numbers(knowm_m1) -> None:
    prob = _Problem(get_model("mss"), knowm_m1[:1], warmup=1)
    pred = prob.predict(prob.to_vector(KNOWM_M1_MSS)[None], 1.0, 1e-4)[0][0]
    assert math.isfinite(float(log_error(pred, knowm_m1[0])))
    assert float(nrmse(pred, knowm_m1[0].i)) < 0.1


@pytest.mark.measured
@pytest.mark.parametrize("name", ["knowm-m1-mss", "knowm-m1-vteam", "knowm-m1-yakopcic",
                                  "bipolar-vteam", "bipolar-yakopcic", "bipolar-stanford-pku"])
def test_a_shipped_card_reproduces_its_recorded_fit(name, knowm_m1, bipolar) -> None:
    """Each shipped fitted card, simulated as a user would (`Device.simulate` on its measured
    waveforms from mid-range, after the fit's warm-up), gives the NRMSE its card records: a card
    the integrator cannot follow, or one left from a since-changed simulator, fails."""
    card = ModelCard.load(DEVICE_MODELS_DIR / f"{name}.json")
    dev = Device.from_card(card)
    warmup = FitSettings().warmup_periods
    lo, hi = dev.bounds()
    for sweep in knowm_m1 if name.startswith("knowm") else bipolar:
        t, v = periodic_drive(sweep, warmup + 1)
        trace = dev.simulate(t, v, 0.5 * (lo + hi), series=series_element(sweep))
        recorded = card.fit["per_sweep"][sweep.name]["nrmse"]
        assert float(nrmse(trace.i[-sweep.n:], sweep.i)) == pytest.approx(recorded, abs=1e-3)


@pytest.mark.slow
def test_bootstrap_over_sweeps() -> None:
    dev, a = _synthetic(0, n=40)
    _, b = _synthetic(20, n=40)
    b = Sweep("syn-b", "syn", b.t, b.v, b.i, 0.0, True, b.frequency_hz, "synthetic")
    start = {k: float(v) for k, v in dev.params.items()}
    st = FitSettings(start=start, start_polarity=1.0, bootstrap=2, ngspice=False)
    fit = fit_iv([a, b], "yakopcic", st, check=False)
    boot = fit.bootstrap
    assert boot["resamples"] == 2
    assert set(boot["stderr"]) == set(fit.stderr)
    assert all(v is None or (math.isfinite(v) and v >= 0) for v in boot["stderr"].values())
    assert "bootstrap" in make_card(fit).fit

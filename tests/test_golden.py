"""The numpy simulators against ngspice's stored results (`tests/golden/`, written by
`tests/golden/make_golden.py`): nodal reads, device transients, program pulses. No ngspice is
needed; the live comparisons stay in test_tile_read / test_devices / test_pulse_derive."""

from __future__ import annotations

import numpy as np
import pytest
from golden.make_golden import (
    EDGE,
    PULSES,
    READS,
    TRANSIENTS,
    cell,
    drive,
    load,
    pulse_times,
)

from circuitnn.fitting.derive import MAX_CHECK_ERROR, access_transistor
from circuitnn.tile import read
from circuitnn.tile.program import pulse_waveform


@pytest.mark.parametrize("name", sorted(READS))
def test_nodal_reads_match_ngspice(name):
    spec, v, rtol = READS[name]
    gold = load("nodal_reads")
    # the case is the one the file was made from (else rerun make_golden.py)
    np.testing.assert_array_equal(gold[f"{name}__G"], spec.conductance)
    np.testing.assert_array_equal(gold[f"{name}__V"], v)
    np.testing.assert_allclose(read(spec, v, engine="nodal"), gold[f"{name}__I"], rtol=rtol,
                               atol=0)


@pytest.mark.parametrize("name", sorted(TRANSIENTS))
@pytest.mark.parametrize("wave", ["sine", "pulses"])
def test_device_transients_match_ngspice(name, wave):
    dev, s0, _, _ = TRANSIENTS[name]
    t, v = drive(name, wave)
    a = dev.simulate(t, v, s0)
    b = load("transients")[f"{name}__{wave}"].astype(float)
    lo, hi = dev.bounds()
    assert np.ptp(a.state) > 0.3 * (hi - lo)  # the drive really switches the device
    assert np.sqrt(np.mean((a.i - b) ** 2)) / np.ptp(b) < 1e-3
    keep = np.abs(b) > 1e-3 * np.max(np.abs(b))  # log scale, where the OFF state lives
    log_err = np.sqrt(np.mean((np.log10(np.abs(a.i[keep])) - np.log10(np.abs(b[keep]))) ** 2))
    assert log_err < 0.01


def test_program_pulses_match_ngspice():
    spec = cell()
    dev = spec.device_model
    window = spec.device.operating["window_S"]
    span = abs(np.diff(dev.state_for_conductance(np.array(window), spec.v_read))[0])
    gold = load("program_pulses")
    s = float(spec.states[0, 0])
    moved = 0.0
    for kind, amp, gate, width in PULSES:
        corners, shape = pulse_waveform((1.0 if kind == "set" else -1.0) * amp, width, EDGE)
        t = np.union1d(corners, pulse_times(width))
        v_gs = gate if kind == "set" else gate - amp  # the transistor's source side (derive)
        tr = dev.simulate(t, np.interp(t, corners, shape), s0=s,
                          series=access_transistor(spec.transistor, v_gs))
        state = np.interp(pulse_times(width), t, tr.state)
        assert np.max(np.abs(state - gold[kind])) / span < MAX_CHECK_ERROR
        moved = max(moved, abs(state[-1] - s) / span)
        s = float(state[-1])
    assert moved > 0.05  # the pulses really program the cell

"""The one write-verify loop (cells in ngspice, arrays through a pulse law) and the verify read
through the cell (device, access transistor, wires)."""

import numpy as np
import pytest

from circuitnn.devices import builtin_card
from circuitnn.network.device import array_device
from circuitnn.tile.program import write_verify_cell
from circuitnn.tile.read import read
from circuitnn.tile.spec import TileSpec
from circuitnn.tile.verify import verify_reads
from circuitnn.training.transfer import ProgramConfig, write_verify


def test_verify_reads_match_the_nodal_solver_row_by_row():
    rng = np.random.default_rng(0)
    g = rng.uniform(6e-6, 24e-6, (32, 8))
    spec = TileSpec(conductance=g, device=builtin_card(), r_row=2.0, r_col=2.0)
    seen = verify_reads(spec)
    for i in (0, 17, 31):
        mask = np.zeros(32, bool)
        mask[i] = True
        v = np.zeros((1, 32))
        v[0, i] = spec.v_read
        cur = read(spec.with_(row_mask=mask), v, engine="nodal")[0]
        assert cur / spec.v_read == pytest.approx(seen[i], rel=1e-6)
    # the transistor and the wires take part of v_read: every cell reads below its device
    assert np.all(seen < g) and np.all(seen > 0.9 * g)
    rows = np.array([3, 17])  # rows are read one at a time: a few of them alone read the same
    assert verify_reads(spec, g[rows], rows) == pytest.approx(seen[rows], rel=1e-9)


@pytest.mark.ngspice
def test_one_loop_programs_a_cell_through_its_transistor_within_the_relative_tolerance():
    spacing = 18e-6 / 7  # the reference window's level spacing
    g = np.full((2, 2), 8e-6)
    spec = TileSpec(conductance=g, device=builtin_card(), r_row=2.0, r_col=2.0)
    target, tol = 14e-6, 0.2
    res = write_verify_cell(spec, 1, 0, target, tol=tol, spacing=spacing, max_pulses=30,
                            engine="nodal", measure="read", set_gate=0.9, set_gate_step=0.1)
    assert res.success and res.n_pulses > 0
    assert abs(res.g_trace[-1] - target) <= tol * spacing
    # the verify read is the cell's, below the device's own conductance
    assert res.g_device[-1] > res.g_trace[-1] * 1.005
    assert "set" in res.kinds and res.v_gates[res.kinds.index("set")] == pytest.approx(0.9)


def test_array_write_verify_reads_through_the_cell_and_ramps_with_an_incremental_scheme():
    dev = array_device()
    laws = dev.programming_laws()
    shape = (1, 16, 8)
    spec = TileSpec(conductance=np.full(shape[1:], dev.window.g_min), device=dev.tile_card,
                    v_read=dev.v_read)

    def cell_read(g, idx):
        return verify_reads(spec, np.clip(g.reshape(shape)[0], *dev.read_range)).reshape(-1)[idx]

    rng = np.random.default_rng(3)
    levels = rng.integers(0, dev.window.levels, shape)
    target = dev.window.g_min + levels * dev.window.unit
    cfg = ProgramConfig(dev.tolerance, 200, stuck_low=0.0, stuck_high=0.0)
    res = write_verify(target, laws, np.random.default_rng(4), cfg, verify_read=cell_read)
    ok = res.converged
    assert ok.mean() > 0.95
    assert np.all(np.abs(res.error[ok]) <= dev.tolerance * 1.5)  # level noise on the last read
    assert np.all(res.conductance[levels > 0] > res.read[levels > 0])  # devices above reads
    # a second law for later rungs: the same loop takes a list of laws
    fast = [laws[0], laws[0]]
    again = write_verify(target, fast, np.random.default_rng(4), cfg, verify_read=cell_read)
    assert again.converged.mean() > 0.95

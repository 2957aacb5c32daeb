"""Golden files: ngspice's results on fixed cases, so the pure-numpy tests need no ngspice.

    .venv/bin/python tests/golden/make_golden.py    # (re)writes tests/golden/*.npz; needs ngspice

- `nodal_reads.npz`: DC column currents of the small tiles of `READS` (one batched ngspice run
  each), against which the nodal solver is tested (`tests/test_golden.py`);
- `transients.npz`: the subcircuit of every compact model (`TRANSIENTS`) driven by a sine and a
  pulse train, ngspice's current, against which `Device.simulate` is tested;
- `program_pulses.npz`: a SET and a RESET pulse on a 1x1 1T1R cell of the built-in card
  (`PULSES`, `circuitnn.tile.program.program_pulse`), ngspice's state trajectories, against which
  the cell's numpy transient (`circuitnn.fitting.derive.access_transistor` in series) is tested.

The cases are defined here once; the tests import them. The live comparisons with ngspice stay
in the suite under the `ngspice` marker. Rerun this script when a netlist or a model changes
what ngspice returns (the golden tests then say which file is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from circuitnn.devices import DEVICE_MODELS_DIR, Device, ModelCard, builtin_card, load_device
from circuitnn.io import load_npz, write_npz
from circuitnn.tile.spec import TIA, TileSpec

HERE = Path(__file__).resolve().parent


# --- tile reads ---------------------------------------------------------------------------
def _g(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(5e-6, 20e-6, shape)


def _v(batch: int, rows: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 0.2, (batch, rows))


def _reads() -> dict[str, tuple[TileSpec, np.ndarray, float]]:
    """name -> (spec, inputs, rtol of the nodal solver against ngspice)."""
    card = builtin_card()
    vteam = ModelCard.load(DEVICE_MODELS_DIR / "knowm-m1-vteam.json")  # v_read 37 mV
    return {
        "ohmic-passive-4x4": (TileSpec(_g((4, 4)), cell="passive", r_row=2.5, r_col=1.5),
                              _v(3, 4), 1e-10),
        "ohmic-1t1r-16x16": (TileSpec(_g((16, 16)), r_row=2.5, r_col=1.5), _v(3, 16), 1e-10),
        "card-1t1r-16x16": (TileSpec(_g((16, 16), 2), device=card), _v(4, 16, 3), 1e-8),
        "driver-merged-wires-negative": (
            TileSpec(_g((5, 3), 6), device=card, r_driver=50.0, r_row=0.0, r_col=3.0,
                     r_wl=0.0), np.array([[0.2, -0.2, 0.1, 0.0, -0.05]]), 1e-8),
        "row-mask": (TileSpec(_g((6, 3), 8), device=card,
                              row_mask=np.array([True, False, True, True, False, True])),
                     np.full((1, 6), 0.2), 1e-8),
        "tia": (TileSpec(_g((4, 4), 9), device=card, sense="tia",
                         tia=TIA(gain=2e3, r_f=2e3, v_offset=2e-3)), _v(2, 4, 10), 1e-8),
        "vteam-1t1r-6x4": (TileSpec(np.random.default_rng(11).uniform(20e-6, 300e-6, (6, 4)),
                                    device=vteam), _v(3, 6, 12) * 0.18, 1e-8),
    }


READS = _reads()


# --- device transients --------------------------------------------------------------------
def pulse_train(v_set: float, v_reset: float, width: float, rise: float, n: int = 2,
                pts: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    t, v = [0.0], [0.0]
    for _ in range(n):
        for amp in (v_set, v_reset):
            t0 = t[-1]
            t += [t0 + rise, t0 + rise + width, t0 + 2 * rise + width, t0 + 2 * rise + 2 * width]
            v += [amp, amp, 0.0, 0.0]
    tt = np.linspace(0, t[-1], pts)
    return tt, np.interp(tt, t, v)


def sine(amp: float, freq: float, periods: float = 2, pts: int = 800
         ) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, periods / freq, pts)
    return t, amp * np.sin(2 * np.pi * freq * t)


YAKOPCIC = Device("yakopcic", dict(a1=1e-4, a2=1e-4, b=2.0, Ap=4e3, An=4e3, Vp=0.4, Vn=0.4,
                                   xp=0.3, xn=0.5, alphap=1.0, alphan=3.0))
VTEAM = Device("vteam", dict(R_on=1e3, R_off=5e4, k_off=2e4, k_on=-2e4, v_off=0.3, v_on=-0.3,
                             alpha_off=3.0, alpha_on=3.0, w_c=0.1))
YAKOPCIC_2020 = Device("yakopcic", dict(YAKOPCIC.params, a1_off=1e-6, a2_off=2e-6, b_off=3.0))
MSS = Device("mss", dict(R_on=2e3, R_off=1e5, tau=1e-3, V_on=0.2, V_off=0.2, phi=0.7, a_f=1e-7,
                         b_f=5.0, a_r=1e-7, b_r=5.0))
INTERFACE = Device("interface", dict(g_on_p=2e-5, b_on_p=3.0, g_on_n=2e-7, b_on_n=8.0,
                                     g_off_p=5e-9, b_off_p=8.0, g_off_n=5e-9, b_off_n=3.0,
                                     Ap=4e3, An=4e3, Vp=0.4, Vn=0.4, xp=0.3, xn=0.5,
                                     alphap=1.0, alphan=3.0))
#: name -> (device, initial state, sine drive, pulse-train drive)
TRANSIENTS = {
    "yakopcic": (YAKOPCIC, 0.2, sine(1.0, 100.0), pulse_train(1.0, -1.0, 2e-3, 2e-4)),
    "yakopcic-off-state": (YAKOPCIC_2020, 0.2, sine(1.0, 100.0),
                           pulse_train(1.0, -1.0, 2e-3, 2e-4)),
    "mss": (MSS, 0.5, sine(0.8, 10.0), pulse_train(0.6, -0.6, 5e-3, 5e-4)),
    "interface": (INTERFACE, 0.2, sine(1.0, 100.0), pulse_train(1.0, -1.0, 2e-3, 2e-4)),
    "vteam": (VTEAM, 0.5, sine(1.0, 100.0), pulse_train(-1.2, 1.2, 1e-3, 1e-4)),
    "stanford-pku": (load_device(), 1.5e-9, sine(1.6, 1e5),
                     pulse_train(1.6, -1.6, 50e-9, 5e-9)),
}


def drive(name: str, wave: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, v) of a transient case: wave "sine" or "pulses"."""
    _, _, sin_wave, pulse_wave = TRANSIENTS[name]
    return sin_wave if wave == "sine" else pulse_wave


# --- program pulses -----------------------------------------------------------------------
#: (program.py kind, |V| on the device, gate voltage, width): a SET then a RESET, chained, on a
#: 1x1 cell of the built-in card with ideal wires, from the state of G_START at v_read
PULSES = (("set", 1.6, 1.2, 50e-9), ("reset", 1.6, 3.5, 50e-9))
G_START = 8e-6
EDGE, DT = 5e-9, 0.1e-9  # rise/fall time, ngspice time step (derive.py's ngspice check)
SAMPLES = 200  # points of each pulse's state trajectory


def cell() -> TileSpec:
    """The 1x1 cell the program pulses are applied to."""
    return TileSpec(np.array([[G_START]]), device=builtin_card(), r_row=0.0, r_col=0.0,
                    r_wl=0.0)


def load(name: str) -> dict[str, np.ndarray]:
    """A golden file's arrays (name without .npz)."""
    return load_npz(HERE / f"{name}.npz")


# --- writing ------------------------------------------------------------------------------
def make_reads() -> None:
    from circuitnn.tile.read import read

    out = {}
    for name, (spec, v, _) in READS.items():
        out[f"{name}__G"], out[f"{name}__V"] = spec.conductance, v
        out[f"{name}__I"] = read(spec, v, engine="ngspice")
    write_npz(HERE / "nodal_reads.npz", **out)


def make_transients() -> None:
    from circuitnn.spice.subckt import simulate_ngspice

    out = {}
    for name, (dev, s0, _, _) in TRANSIENTS.items():
        for wave in ("sine", "pulses"):
            t, v = drive(name, wave)
            # float32: the tests compare to 1e-3 of the current's range (and 1% in log)
            out[f"{name}__{wave}"] = simulate_ngspice(dev, t, v, s0).i.astype(np.float32)
    write_npz(HERE / "transients.npz", **out)


def pulse_times(width: float) -> np.ndarray:
    """The times (from the pulse's start) at which the state trajectories are compared."""
    return np.linspace(0.0, 4 * EDGE + width, SAMPLES)


def make_pulses() -> None:
    from circuitnn.tile.program import program_pulse

    spec = cell()
    s = spec.states
    out = {}
    for kind, amp, gate, width in PULSES:
        res = program_pulse(spec, 0, 0, kind=kind, v_pulse=amp, v_gate=gate, width=width,
                            edge=EDGE, dt=DT, states=s)
        out[kind] = np.interp(pulse_times(width), res.t, res.states_t[0, 0])
        s = res.states_after
    write_npz(HERE / "program_pulses.npz", **out)


if __name__ == "__main__":
    from circuitnn.spice.runner import ngspice_available

    if not ngspice_available():
        sys.exit("make_golden: ngspice is needed (apt-get install -y ngspice)")
    make_reads()
    make_transients()
    make_pulses()
    print(f"golden files written to {HERE}")

"""Energy per inference and GOP/s/W of the chip, from simulated array currents plus periphery.

Array: every 1-bit read cycle of a PE block dissipates E = v_read * sum_j I_j * t_pulse, with the
column currents I_j from the engine's column read (the simulated currents) and t_pulse = 50 ns.

Periphery constants (Yao et al., Nature 577, 641 (2020), efficiency estimate; marked
*unconfirmed* in the reference preset `circuitnn/reference_yao2020.toml` because they come
from secondary summaries of the paper's Methods): per 1-bit cycle of a 128 x 128 macro 0.91 pJ
in the array, 1.72 pJ in drivers and multiplexers, 19.2 pJ in sample-and-hold; 2.55 pJ per 8-bit ADC
conversion. Read in this way (one conversion per differential output per cycle, 64 per cycle),
they give 2 x 128 x 64 ops / (8 x (0.91 + 1.72 + 19.2 + 64 x 2.55) pJ) = 11,069 GOP/s/W, close
to the paper's 11,014 GOP/s/W, which supports this reading. Our blocks are smaller than a
128 x 128 macro, so drivers scale with the driven rows / 128 and sample-and-hold with the sensed
columns / 128 of each read; one ADC conversion per differential output per cycle.

Shift-and-add: one 16-bit add per output per cycle, 0.05 pJ (between the 8-bit (0.03 pJ) and
32-bit (0.1 pJ) integer adds at 45 nm in M. Horowitz, "Computing's energy problem", ISSCC 2014).
Pooling, activation and data routing are excluded, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from circuitnn.network.engines import V_READ
from circuitnn.reference import REF

T_PULSE = REF.hardware.read_pulse_s  # s, read pulse width
MACRO = REF.energy.macro  # rows and columns of the reference macro of the constants
E_ARRAY_REF = REF.energy.array_j  # J per 1-bit cycle of the macro (reference, for comparison)
E_DRIVERS = REF.energy.drivers_j  # J per 1-bit cycle, 128 driven rows
E_SH = REF.energy.sample_hold_j  # J per 1-bit cycle, 128 sensed columns
E_ADC = REF.energy.adc_j  # J per 8-bit conversion
E_ADD = REF.energy.add_j  # J per 16-bit add (Horowitz, ISSCC 2014, 45 nm, interpolated)
REFERENCE_GOPS_PER_W = REF.published.gops_per_w
MACS_PER_INFERENCE = 26 * 26 * 9 * 8 + 11 * 11 * 72 * 12 + 192 * 10  # 155,136


def reference_reconstruction() -> float:
    """GOP/s/W of a 128 x 128 macro from the reference constants (see module text)."""
    ops = 2 * MACRO * (MACRO // 2)
    energy = 8 * (E_ARRAY_REF + E_DRIVERS + E_SH + (MACRO // 2) * E_ADC)
    return ops / energy / 1e9


@dataclass
class EnergyCounter:
    """Accumulates cycles and energy terms of every 1-bit block read.

    `wrap(read)` gives a column read that records each call; `ChipEngine(counter=...)` wraps the
    read of every weight block with it (for circuit engines, the block's currents from a read of
    the whole PE). Calling the counter itself is a recorded read through `inner` (default I = V G).
    """

    inner: object = None
    v_read: float = V_READ
    totals: dict = field(default_factory=lambda: {"cycles": 0, "array": 0.0, "drivers": 0.0,
                                                  "sample_hold": 0.0, "adc": 0.0,
                                                  "shift_add": 0.0, "conversions": 0})

    def record(self, v: np.ndarray, cur: np.ndarray) -> None:
        """Add the reads v (cycles, block rows) -> currents cur (cycles, block columns)."""
        n, cols = v.shape[0], cur.shape[1]
        rows = int(np.count_nonzero(np.any(v != 0, axis=0))) or v.shape[1]
        t = self.totals
        t["cycles"] += n
        t["array"] += float(self.v_read * np.abs(cur).sum() * T_PULSE)
        t["drivers"] += n * E_DRIVERS * rows / MACRO
        t["sample_hold"] += n * E_SH * cols / MACRO
        t["adc"] += n * (cols // 2) * E_ADC
        t["shift_add"] += n * (cols // 2) * E_ADD
        t["conversions"] += n * (cols // 2)

    def wrap(self, read=None):
        """A column read (v, g) -> currents through `read` (None: I = V G) that records."""
        def counted(v: np.ndarray, g: np.ndarray) -> np.ndarray:
            cur = v @ g if read is None else np.asarray(read(v, g), float)
            self.record(v, cur)
            return cur

        return counted

    def __call__(self, v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.wrap(self.inner)(v, g)


def summarise(counter: EnergyCounter, n_images: int) -> dict:
    """Energy per inference (J and breakdown), GOP/s/W and latency from a counter."""
    t = counter.totals
    parts = {k: t[k] / n_images for k in ("array", "drivers", "sample_hold", "adc", "shift_add")}
    total = sum(parts.values())
    ops = 2 * MACS_PER_INFERENCE
    cycles = t["cycles"] / n_images
    return {
        "images": n_images,
        "ops_per_inference": ops,
        "energy_per_inference_J": total,
        "breakdown_J": parts,
        "breakdown_fraction": {k: v / total for k, v in parts.items()},
        "gops_per_w": ops / total / 1e9,
        "gops_per_w_array_only": ops / parts["array"] / 1e9,
        "read_cycles_per_inference": cycles,
        "adc_conversions_per_inference": t["conversions"] / n_images,
        "latency_s_one_pe_at_a_time": cycles * T_PULSE,
        "throughput_gops_one_pe_at_a_time": ops / (cycles * T_PULSE) / 1e9,
        "reference_gops_per_w": REFERENCE_GOPS_PER_W,
        "reference_reconstruction_gops_per_w": reference_reconstruction(),
        "constants": {"t_pulse_s": T_PULSE, "v_read_V": counter.v_read,
                      "drivers_J_per_cycle_128_rows": E_DRIVERS,
                      "sample_hold_J_per_cycle_128_cols": E_SH, "adc_J_per_conversion": E_ADC,
                      "add_J": E_ADD, "array_reference_J_per_cycle": E_ARRAY_REF,
                      "status": "reference constants unconfirmed (secondary summaries)"},
    }

"""Energy and operation counts per inference, from the reads of the mapped network.

Array: every 1-bit read cycle of a block dissipates E = v_read * sum_j I_j * t_pulse, with the
column currents I_j from the engine's column read (the simulated currents) and t_pulse the read
pulse width. Periphery constants (REF.energy; Yao et al., Nature 577, 641 (2020), efficiency
estimate, unconfirmed: from secondary summaries): per 1-bit cycle of a 128 x 128 macro 0.91 pJ in
the array, 1.72 pJ in drivers and multiplexers, 19.2 pJ in sample-and-hold; 2.55 pJ per 8-bit ADC
conversion. Read as one conversion per differential output per cycle (64 per cycle) they give
2 x 128 x 64 ops / (8 x (0.91 + 1.72 + 19.2 + 64 x 2.55) pJ) = 11,069 GOP/s/W, close to the
paper's 11,014 GOP/s/W, which supports this reading. Blocks smaller than the macro scale drivers
with their driven rows / 128 and sample-and-hold with their sensed columns / 128; one ADC
conversion and one 16-bit shift-and-add (REF.energy.add_j, Horowitz ISSCC 2014) per differential
output per cycle. Pooling, activation and data routing are excluded, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from circuitnn.reference import REF

T_PULSE = REF.hardware.read_pulse_s
E = REF.energy
PARTS = ("array", "drivers", "sample_hold", "adc", "shift_add")


def reference_reconstruction() -> float:
    """GOP/s/W of a 128 x 128 macro from the reference constants (see module text)."""
    ops = 2 * E.macro * (E.macro // 2)
    return ops / (8 * (E.array_j + E.drivers_j + E.sample_hold_j + (E.macro // 2) * E.adc_j)) / 1e9


@dataclass
class EnergyCounter:
    """Accumulates cycles, ADC conversions and energy terms of every 1-bit block read, per
    layer. `wrap(read, layer)` gives a column read that records each call (None: I = V G)."""

    v_read: float = REF.hardware.v_read
    layers: dict = field(default_factory=dict)

    def record(self, layer: str, v: np.ndarray, cur: np.ndarray) -> None:
        """Add the reads v (cycles, block rows) -> currents cur (cycles, block columns)."""
        n, cols = v.shape[0], cur.shape[1]
        rows = v.shape[1]
        t = self.layers.setdefault(layer, {"cycles": 0, "conversions": 0,
                                           **{k: 0.0 for k in PARTS}})
        t["cycles"] += n
        t["array"] += float(self.v_read * np.abs(cur).sum() * T_PULSE)
        t["drivers"] += n * E.drivers_j * rows / E.macro
        t["sample_hold"] += n * E.sample_hold_j * cols / E.macro
        t["adc"] += n * (cols // 2) * E.adc_j
        t["shift_add"] += n * (cols // 2) * E.add_j
        t["conversions"] += n * (cols // 2)

    def wrap(self, read, layer: str):
        """A column read (v, g) -> currents through `read` (None: I = V G) that records."""
        def counted(v: np.ndarray, g: np.ndarray) -> np.ndarray:
            cur = v @ g if read is None else np.asarray(read(v, g), float)
            self.record(layer, v, cur)
            return cur

        return counted


def summarise(counter: EnergyCounter, n_images: int, macs: dict[str, int]) -> dict:
    """Energy per inference (J, breakdown, per layer), GOP/s/W, reads and conversions."""
    per_layer = {k: {"macs": int(macs.get(k, 0)),
                     "read_cycles": v["cycles"] / n_images,
                     "adc_conversions": v["conversions"] / n_images,
                     "energy_J": sum(v[p] for p in PARTS) / n_images}
                 for k, v in counter.layers.items()}
    parts = {p: sum(v[p] for v in counter.layers.values()) / n_images for p in PARTS}
    total = sum(parts.values())
    ops = 2 * sum(macs.values())
    cycles = sum(v["cycles"] for v in counter.layers.values()) / n_images
    return {
        "images": n_images,
        "macs_per_inference": int(sum(macs.values())),
        "ops_per_inference": ops,
        "energy_per_inference_J": total,
        "breakdown_J": parts,
        "breakdown_fraction": {k: v / total for k, v in parts.items()} if total else {},
        "gops_per_w": ops / total / 1e9 if total else None,
        "gops_per_w_array_only": ops / parts["array"] / 1e9 if parts["array"] else None,
        "read_cycles_per_inference": cycles,
        "adc_conversions_per_inference": sum(v["conversions"] for v in counter.layers.values())
        / n_images,
        "latency_s_one_block_at_a_time": cycles * T_PULSE,
        "per_layer": per_layer,
        "reference_gops_per_w": REF.published.gops_per_w,
        "reference_reconstruction_gops_per_w": reference_reconstruction(),
        "constants": {"t_pulse_s": T_PULSE, "v_read_V": counter.v_read,
                      "drivers_J_per_cycle_128_rows": E.drivers_j,
                      "sample_hold_J_per_cycle_128_cols": E.sample_hold_j,
                      "adc_J_per_conversion": E.adc_j, "add_J": E.add_j,
                      "array_reference_J_per_cycle": E.array_j,
                      "status": "reference constants unconfirmed (secondary summaries)"},
    }

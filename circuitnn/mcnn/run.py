"""`circuitnn mcnn run`: the reference system (Yao et al. 2020) through the network pipeline.

The cnn5 preset on the reference's eight PEs (`reference_map`: C1/C3 in three convolver groups,
FC on two PEs), evaluated and hybrid-trained in two modes: "single" (convolver group 0 processes
whole images) and "three" (the three groups each compute a third of the output rows). The stages
of `circuitnn.training.pipeline`, then:

    crosscheck (ngspice vs surrogate on whole-PE reads) -> report (report.json, report.md, chip)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_json
from circuitnn.network import graph
from circuitnn.network.engines import ChipEngine, build_engine
from circuitnn.reference import REF
from circuitnn.surrogate.read import read
from circuitnn.training.pipeline import NETWORK_STAGES, Context, RunConfig, run_pipeline
from circuitnn.training.stages import Stage

MODES = {"single": 0, "three": None}


@dataclass
class McnnConfig(RunConfig):
    """The reference system's run: cnn5, reference placement, three convolver groups."""

    network: str = "cnn5"
    mapping: str = "reference"
    replicate_first: int = REF.hardware.convolver_groups
    modes: dict[str, int | None] = field(default_factory=lambda: dict(MODES))
    n_energy: int = 100
    calibrate_columns: bool = False  # the reference system has no column calibration
    pair_compensation: bool = False  # nor a partner re-targeted for a failed cell
    n_check: int = 20
    n_check_patches: int = 2  # convolution patches per image in the ngspice cross-check

    def check(self, device: bool = True) -> None:
        super().check(device)
        if self.network != "cnn5" or self.mapping != "reference" or self.modes != MODES:
            raise CircuitnnError("mcnn run is the reference system (cnn5, reference placement)")
        if self.n_check < 0 or self.n_check_patches < 1:
            raise CircuitnnError("--n-check must be >= 0 and n_check_patches >= 1")

    @classmethod
    def quick(cls, **kw: Any) -> McnnConfig:
        """Small settings for tests: 1,000 train / 200 test images, 4 epochs, 30 hybrid batches."""
        base = {"train_images": 1000, "test_images": 200, "epochs": 4, "hybrid_batches": 30,
                "hybrid_batch_size": 50, "n_energy": 10, "n_check": 0, "max_pulses": 300}
        base.update(kw)
        return cls(**base)


@dataclass
class CrossCheck:
    result: dict


@dataclass
class Report:
    report: dict


def stage_crosscheck(ctx: Context) -> CrossCheck:
    """ngspice vs surrogate reads of the whole 128 x 16 PEs, on `n_check` test images.

    Layer outputs are compared before the ADC (analog shift-and-add of the per-slot column
    currents): the 8-bit ADC is the same digital function in both paths, and its step is larger
    than the read differences, so rounding flips would dominate a comparison after it. Class
    decisions are compared through the full hardware path, ADC included. FC: every block of both
    FC PEs for all images. C1, C3: a random sample of `n_check_patches` patches per image
    (ngspice reads of every patch would take hours).
    """
    cfg, d = ctx.cfg, ctx.data
    n = min(cfg.n_check, len(d.x_test))
    if n == 0:
        return CrossCheck({"status": "skipped", "reason": "--n-check 0"})
    h = ctx["hybrid"]
    chip = ctx.chip(h.conductances["single"])
    net, params = ctx.net(), dict(ctx["exsitu"].params, b_FC=h.bias["single"])
    feats = ctx["eval_transfer"].feats["single/test"][:n]
    opts = cfg.tile_options or None
    try:
        ref_eng, sp_eng = (build_engine(chip, e, group=0, tile_options=opts)
                           for e in ("surrogate", "ngspice"))
        ref_raw, sp_raw = (build_engine(chip, e, group=0, adc_bits=None, tile_options=opts)
                           for e in ("surrogate", "ngspice"))
    except CircuitnnError as exc:
        return CrossCheck({"status": "unavailable", "reason": str(exc)})

    def deviation(ref: np.ndarray, other: np.ndarray) -> float:
        return float(np.max(np.abs(other - ref)) / max(np.max(np.abs(ref)), 1e-30))

    t0 = time.perf_counter()
    y_ref = ref_eng("FC", feats) + params["b_FC"]
    y_sp = sp_eng("FC", feats) + params["b_FC"]
    dev = deviation(ref_raw("FC", feats), sp_raw("FC", feats))
    out: dict[str, Any] = {
        "status": "done", "images": n, "layer": "FC (both FC PEs, all blocks)",
        "compared": "layer outputs before the ADC; class decisions with the ADC",
        "max_rel_deviation": dev, "within_1_percent": dev <= 0.01,
        "max_rel_deviation_after_adc": deviation(y_ref, y_sp),
        "class_decisions_agree": bool(np.all(y_sp.argmax(1) == y_ref.argmax(1))),
        "seconds_fc": time.perf_counter() - t0}
    inputs: dict[str, np.ndarray] = {}

    def capture(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if layer != "FC":
            inputs[layer] = x.reshape(x.shape[0], -1, x.shape[-1])
            return ref_eng(layer, x, w)
        return np.zeros((x.shape[0], 10))

    graph.forward(net, params, graph.preprocess(net, d.x_test[:n]), capture)
    rng = np.random.default_rng([cfg.seed, 99])
    conv = {}
    for layer in ("C1", "C3"):
        t1 = time.perf_counter()
        x = inputs[layer]
        pick = rng.integers(0, x.shape[1], (n, cfg.n_check_patches))
        patches = x[np.arange(n)[:, None], pick].reshape(-1, x.shape[-1])
        dv = deviation(ref_raw(layer, patches), sp_raw(layer, patches))
        conv[layer] = {"patches": int(len(patches)), "max_rel_deviation": dv,
                       "within_1_percent": dv <= 0.01, "seconds": time.perf_counter() - t1}
    out["conv_sample"] = conv
    out["column_currents"] = _crosscheck_currents(ref_eng, feats)
    out["all_within_1_percent"] = bool(dev <= 0.01 and all(
        c["within_1_percent"] for c in conv.values()))
    out["seconds"] = time.perf_counter() - t0
    out["scope"] = (f"FC layer of {n} test images through ngspice (full PE reads); C1 and C3 "
                    f"on {cfg.n_check_patches} random patches per image (full-layer ngspice "
                    "reads of every patch are too slow)")
    return CrossCheck(out)


def _crosscheck_currents(eng: ChipEngine, feats: np.ndarray) -> dict:
    """Raw column currents of one full-PE read batch (the first FC block's bit slots of up to
    10 images): surrogate vs ngspice, max deviation / largest current."""
    p = eng.mapping.of("FC", 0)[0]
    codes = eng.quantise_input("FC", feats[:10]).astype(np.uint8)
    bits = np.unpackbits(codes[None, :, p.w_rows], axis=0, bitorder="little")
    g_pe = eng.tile_conductances(p.tile)
    v = np.zeros((bits.shape[0] * bits.shape[1], g_pe.shape[0]))
    v[:, p.rows] = bits.reshape(-1, bits.shape[-1]) * eng.v_read
    spec = eng.circuit.spec(g_pe)
    i_sur, i_sp = read(spec, v, engine="surrogate"), read(spec, v, engine="ngspice")
    diff_sp = i_sp[:, 0::2] - i_sp[:, 1::2]
    diff_sur = i_sur[:, 0::2] - i_sur[:, 1::2]
    return {"pe": p.tile, "reads": int(len(v)),
            "max_rel_deviation": float(np.max(np.abs(i_sur - i_sp)) / np.abs(i_sp).max()),
            "differential_max_rel_deviation": float(
                np.max(np.abs(diff_sur - diff_sp)) / max(np.abs(diff_sp).max(), 1e-30))}


def stage_report(ctx: Context) -> Report:
    from circuitnn.mcnn.chip import Chip
    from circuitnn.mcnn.report import build_report, write_report_md

    report = build_report(ctx)
    write_json(ctx.out / "report.json", report)
    write_report_md(report, ctx.out / "report.md")
    Chip.from_context(ctx).save(ctx.out)  # the exsitu stage wrote weights.npz (--weights)
    return Report(report)


MCNN_STAGES = NETWORK_STAGES + [
    Stage("crosscheck", CrossCheck, stage_crosscheck,
          lambda ctx: {"n_check": ctx.cfg.n_check, "patches": ctx.cfg.n_check_patches}),
    Stage("report", Report, stage_report),
]


MCNN_SALT = "circuitnn-mcnn-2"


def run_chain(cfg: McnnConfig, out: str | os.PathLike, progress: bool = True,
              until: str | None = None) -> Context:
    """Run (resuming) the reference chain into `out`; returns the context (`ctx.log`)."""
    return run_pipeline(cfg, out, MCNN_STAGES, MCNN_SALT, progress, until)

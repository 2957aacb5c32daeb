"""The staged, checkpointed memristor-CNN chain behind `circuitnn mcnn run`.

Stages (each writes its checkpoint files into DIR atomically; on a rerun a stage whose
`stages/<name>.json` exists with the same key is loaded, not recomputed; a stage's key is a
hash of its own settings and the previous stage's key, so a changed option recomputes that stage
and everything after it, and a deleted checkpoint recomputes only that stage):

    data -> exsitu -> quantise -> mapping -> transfer -> eval_transfer -> hybrid
         -> eval_hybrid -> energy -> crosscheck -> report
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from circuitnn.devices.pulse import scale_model
from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_json, write_npz, write_text
from circuitnn.mcnn.chip import Chip, conv_features
from circuitnn.mcnn.energy import EnergyCounter, summarise
from circuitnn.network import cnn, quantise
from circuitnn.network.data import load_dataset
from circuitnn.network.engines import ChipEngine, calibrate_activation_scales, check_engine
from circuitnn.network.mapping import (
    conductance_unit,
    describe_mapping,
    map_weights,
    pe_conductances,
    plot_mapping,
)
from circuitnn.reference import REF
from circuitnn.tile import CIRCUIT_ENGINES
from circuitnn.training import exsitu
from circuitnn.training.hybrid import HybridConfig, plot_hybrid, train_fc
from circuitnn.training.transfer import (
    ProgramConfig,
    load_pulse_model,
    plot_transfer,
    write_verify,
)

STAGES = ("data", "exsitu", "quantise", "mapping", "transfer", "eval_transfer", "hybrid",
          "eval_hybrid", "energy", "crosscheck", "report")


@dataclass
class RunConfig:
    """Every option of the chain (defaults: the full run on the embedded 5k MNIST split)."""

    seed: int = 0
    mnist_dir: str | None = None
    n_test: int = 1000
    n_train_limit: int | None = None  # use only the first N training images (quick runs)
    n_test_limit: int | None = None
    epochs: int = 30
    device: str | None = None  # pulse-update card; None = device_models/taox-pulse.json
    g_min: float = REF.choices.g_min  # S, project choice: inside the built-in card's range
    g_max: float = REF.choices.g_max
    device_levels: int = REF.hardware.device_levels
    tolerance: float = REF.choices.write_tolerance
    max_pulses: int = REF.choices.max_pulses
    cell_yield: float = REF.choices.cell_yield
    variation_scale: float = 1.0
    engine: str = "surrogate"
    adc_bits: int = REF.hardware.adc_bits
    adc_fraction: float = REF.choices.adc_fraction
    hybrid_batches: int = REF.hybrid.batches
    hybrid_batch_size: int = REF.hybrid.batch_size
    hybrid_lr: float = REF.choices.hybrid_lr
    hybrid_threshold: float = REF.choices.hybrid_threshold
    n_energy: int = 100
    n_check: int = 20
    n_check_patches: int = 2  # convolution patches per image in the ngspice cross-check
    tile_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise CircuitnnError for options that cannot work."""
        check_engine(self.engine)
        if self.engine == "ngspice":
            raise CircuitnnError("engine 'ngspice' is too slow for the whole chain; use it "
                                 "through the cross-check (--n-check) or Chip.predict")
        if self.epochs < 1:
            raise CircuitnnError(f"--epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.g_min < self.g_max:
            raise CircuitnnError(f"need 0 <= g_min < g_max (got {self.g_min}, {self.g_max})")
        if not 1 <= self.adc_bits <= 16:
            raise CircuitnnError(f"--adc-bits must be 1..16, got {self.adc_bits}")
        if self.n_check < 0 or self.n_energy < 1:
            raise CircuitnnError("--n-check must be >= 0 and n_energy >= 1")
        for name in ("n_train_limit", "n_test_limit"):
            v = getattr(self, name)
            if v is not None and v < 10:
                raise CircuitnnError(f"{name} must be >= 10, got {v}")
        ProgramConfig(self.tolerance, self.max_pulses, self.cell_yield,
                      self.variation_scale).check()
        self.hybrid().check()

    def hybrid(self) -> HybridConfig:
        return HybridConfig(batches=self.hybrid_batches, batch_size=self.hybrid_batch_size,
                            lr=self.hybrid_lr, threshold=self.hybrid_threshold,
                            eval_every=max(1, self.hybrid_batches // 30))

    @classmethod
    def quick(cls, **kw: Any) -> RunConfig:
        """Small settings for tests: 800 train / 200 test images, 2 epochs, 30 hybrid batches."""
        base = {"n_train_limit": 800, "n_test_limit": 200, "epochs": 2, "hybrid_batches": 30,
                "hybrid_batch_size": 50, "n_energy": 10, "n_check": 0, "max_pulses": 300}
        base.update(kw)
        return cls(**base)


# which options each stage depends on (besides the previous stage)
_STAGE_KEYS = {
    "data": ("seed", "mnist_dir", "n_test", "n_train_limit", "n_test_limit"),
    "exsitu": ("epochs",),
    "quantise": ("adc_bits", "adc_fraction", "g_min", "g_max", "device_levels"),
    "mapping": (),
    "transfer": ("device", "tolerance", "max_pulses", "cell_yield", "variation_scale"),
    "eval_transfer": ("engine", "tile_options"),
    "hybrid": ("hybrid_batches", "hybrid_batch_size", "hybrid_lr", "hybrid_threshold"),
    "eval_hybrid": (),
    "energy": ("n_energy",),
    "crosscheck": ("n_check", "n_check_patches"),
    "report": (),
}


class Chain:
    """Runs the stages of one output folder."""

    def __init__(self, cfg: RunConfig, out: str | os.PathLike, progress: bool = True) -> None:
        cfg.check()
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.stage_dir = self.out / "stages"
        self.results: dict[str, dict] = {}
        self.timings: dict[str, float] = {}
        self.computed: list[str] = []
        self._data = None
        self._model = None

    # ------------------------------------------------------------------ plumbing
    def _key(self, stage: str, prev: str) -> str:
        opts = {k: getattr(self.cfg, k) for k in _STAGE_KEYS[stage]}
        if stage == "transfer" and self.cfg.device is not None:
            p = Path(self.cfg.device)
            opts["device_sha"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        text = json.dumps([prev, stage, opts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

    def run(self, until: str | None = None) -> dict:
        """Run (or load) every stage up to `until` (default all); returns the report dict."""
        prev = "circuitnn-mcnn-1"
        stages = STAGES if until is None else STAGES[:STAGES.index(until) + 1]
        with self.bar(len(stages), "mcnn run") as top:
            for stage in stages:
                key = self._key(stage, prev)
                ck = self.stage_dir / f"{stage}.json"
                saved = self._read_checkpoint(ck)
                if saved is not None and saved.get("key") == key:
                    self.results[stage] = saved["result"]
                    self.timings[stage] = saved.get("seconds", 0.0)
                else:
                    top.set_description(f"mcnn run: {stage}")
                    t0 = time.perf_counter()
                    result = getattr(self, f"stage_{stage}")()
                    self.timings[stage] = time.perf_counter() - t0
                    self.results[stage] = result
                    self.computed.append(stage)
                    write_json(ck, {"key": key, "seconds": self.timings[stage],
                                    "result": result})
                prev = key
                top.update(1)
        return self.results.get("report", {})

    @staticmethod
    def _read_checkpoint(path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged checkpoint is recomputed

    def npz(self, name: str) -> dict[str, np.ndarray]:
        path = self.out / name
        if not path.is_file():
            raise CircuitnnError(f"{path}: checkpoint missing; delete {self.stage_dir} to "
                                 "restart the run")
        return load_npz(path)

    def data(self):
        if self._data is None:
            d = load_dataset(self.cfg.mnist_dir, self.cfg.n_test, self.cfg.seed)
            if self.cfg.n_train_limit:
                d.x_train, d.y_train = (d.x_train[:self.cfg.n_train_limit],
                                        d.y_train[:self.cfg.n_train_limit])
            if self.cfg.n_test_limit:
                d.x_test, d.y_test = (d.x_test[:self.cfg.n_test_limit],
                                      d.y_test[:self.cfg.n_test_limit])
            self._data = d
        return self._data

    def rng(self, stage: str) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, STAGES.index(stage)])

    def pulse_model(self):
        if self._model is None:
            model, source = load_pulse_model(self.cfg.device)
            scaled = scale_model(model, self.cfg.g_min, self.cfg.g_max, self.cfg.variation_scale)
            self._model = (model, scaled, source)
        return self._model

    def chip(self, conductances: np.ndarray | None = None, hybrid: bool = False) -> Chip:
        q = self.npz("quantised.npz")
        ex = self.npz("exsitu.npz")
        res = self.results["quantise"]
        levels = {k: q[f"level_{k}"] for k in cnn.LAYERS}
        if conductances is None:
            conductances = self.npz("transfer.npz")["conductance"]
        g1 = g3 = conductances
        b1 = b3 = ex["b_FC"]
        if hybrid:
            h = self.npz("hybrid.npz")
            g1, g3, b1, b3 = h["g_single"], h["g_three"], h["bias_single"], h["bias_three"]
        c = self.cfg
        settings = {"g_min": c.g_min, "g_max": c.g_max, "device_levels": c.device_levels,
                    "adc_bits": c.adc_bits, "adc_fraction": c.adc_fraction, "n_groups": 3,
                    "tile_options": c.tile_options, "default_engine": c.engine}
        return Chip({k: ex[k] for k in cnn.SHAPES}, levels, res["weight_scales"],
                    res["act_scales"], g1, g3, b1, b3, settings)

    def accuracy(self, engine: ChipEngine, feats: np.ndarray, bias: np.ndarray,
                 labels: np.ndarray) -> float:
        return float(np.mean((engine("FC", feats) + bias).argmax(1) == labels))

    # ------------------------------------------------------------------ stages
    def stage_data(self) -> dict:
        d = self.data()
        info = dict(d.info)
        info.update({"n_train_used": int(len(d.y_train)), "n_test_used": int(len(d.y_test)),
                     "labels_sha256": hashlib.sha256(np.r_[d.y_train, d.y_test].tobytes()
                                                     ).hexdigest()[:16]})
        return info

    def stage_exsitu(self) -> dict:
        d = self.data()
        res = exsitu.train(d.x_train, d.y_train, exsitu.TrainConfig(epochs=self.cfg.epochs,
                                                                    seed=self.cfg.seed),
                           progress=self.progress)
        write_npz(self.out / "exsitu.npz", **res.params)
        acc = cnn.accuracy(res.params, d.x_test, d.y_test)
        return {"software_test_accuracy": acc,
                "software_train_accuracy": cnn.accuracy(res.params, d.x_train, d.y_train),
                "history": res.history}

    def stage_quantise(self) -> dict:
        d = self.data()
        params = self.npz("exsitu.npz")
        q, scales = quantise.quantise_params(params)
        act = calibrate_activation_scales(params, d.x_train[:500])
        write_npz(self.out / "quantised.npz", **{f"level_{k}": v for k, v in q.items()})
        self.results["quantise"] = {"weight_scales": scales, "act_scales": act}
        mapping = map_weights(q, 3)
        c = self.cfg
        target = pe_conductances(mapping, c.device_levels, c.g_min, c.g_max)
        chip = self.chip(conductances=target)
        eng = chip.engine("quantised", 1)
        weights_only = cnn.accuracy(quantise.dequantise(params, q, scales), d.x_test, d.y_test)
        acc = cnn.accuracy(chip.params, d.x_test, d.y_test, eng)
        return {"weight_scales": scales, "act_scales": act,
                "quantized_weights_only_test_accuracy": weights_only,
                "quantized_test_accuracy": acc}

    def stage_mapping(self) -> dict:
        q = self.npz("quantised.npz")
        mapping = map_weights({k: q[f"level_{k}"] for k in cnn.LAYERS}, 3)
        c = self.cfg
        target = pe_conductances(mapping, c.device_levels, c.g_min, c.g_max)
        write_npz(self.out / "mapping.npz", target=target)
        plot_mapping(mapping, self.out / "pe_mapping.png")
        text = describe_mapping(mapping)
        write_text(self.out / "mapping.txt", text + "\n")
        return {"pes_used": mapping.pes_used, "n_groups": 3,
                "g_unit_S": conductance_unit(c.device_levels, c.g_min, c.g_max)}

    def _used_mask(self) -> np.ndarray:
        q = self.npz("quantised.npz")
        mapping = map_weights({k: q[f"level_{k}"] for k in cnn.LAYERS}, 3)
        used = np.zeros((8, 128, 16), bool)
        for p in mapping.placements:
            used[p.pe, p.rows, p.cols] = True
        return used

    def stage_transfer(self) -> dict:
        c = self.cfg
        target = self.npz("mapping.npz")["target"]
        card_model, model, source = self.pulse_model()
        pcfg = ProgramConfig(c.tolerance, c.max_pulses, c.cell_yield, c.variation_scale)
        with self.bar(c.max_pulses, "write-verify (pulse rounds)") as bar:
            res = write_verify(target, model, self.rng("transfer"), pcfg,
                               progress=lambda n: bar.update(1))
        write_npz(self.out / "transfer.npz", conductance=res.conductance, pulses=res.pulses,
                  stuck=res.stuck, converged=res.converged,
                  **{f"dev_{k}": v for k, v in res.devices.items()})
        used = self._used_mask()
        plot_transfer(res, used, self.out / "transfer_error_hist.png",
                      self.out / "transfer_pulse_hist.png", c.tolerance)
        per_group = {}
        for g in range(3):
            m = np.zeros_like(used)
            m[2 * g:2 * g + 2] = used[2 * g:2 * g + 2]
            per_group[f"G{g + 1}"] = res.summary(m)
        fc = np.zeros_like(used)
        fc[6:] = used[6:]
        return {"device_card": source, "card_window_S": [card_model.g_min, card_model.g_max],
                "tile_window_S": [c.g_min, c.g_max],
                "scaling": "card states mapped linearly by relative position onto the tile "
                           "window; conductance noise terms scaled by the same factor",
                "scale_factor": (c.g_max - c.g_min) / (card_model.g_max - card_model.g_min),
                "pulse_model_scaled": {k: getattr(model, k) for k in (
                    "pmax_p", "nu_p", "pmax_d", "nu_d", "sigma_add_p", "sigma_add_d",
                    "sigma_level")} | {"d2d": model.d2d},
                "program": asdict(pcfg), "all_used_cells": res.summary(used),
                "per_group": per_group, "fc": res.summary(fc)}

    def stage_eval_transfer(self) -> dict:
        d = self.data()
        chip = self.chip()
        feats = {}
        n_img = 2 * len(d.x_train) + 5 * len(d.x_test)
        with self.bar(n_img, f"hardware convolutions ({self.cfg.engine})") as bar:
            up = bar.update
            e1 = chip.engine(self.cfg.engine, 1, 0)
            e3 = chip.engine(self.cfg.engine, 3)
            feats["train_single"] = conv_features(e1, d.x_train, chip.params, progress=up)
            feats["test_single"] = conv_features(e1, d.x_test, chip.params, progress=up)
            feats["train_three"] = conv_features(e3, d.x_train, chip.params, progress=up)
            feats["test_three"] = conv_features(e3, d.x_test, chip.params, progress=up)
            for g in range(3):
                eg = chip.engine(self.cfg.engine, 1, g)
                feats[f"test_group{g}"] = conv_features(eg, d.x_test, chip.params, progress=up)
        write_npz(self.out / "features.npz", **feats)
        return self._evaluate(chip, feats, chip.bias, chip.bias_three)

    def _evaluate(self, chip: Chip, feats: dict, b1: np.ndarray, b3: np.ndarray) -> dict:
        d = self.data()
        e1 = chip.engine(self.cfg.engine, 1, 0)
        e3 = chip.engine(self.cfg.engine, 3)
        out = {"test_accuracy_single": self.accuracy(e1, feats["test_single"], b1, d.y_test),
               "train_error_single": 1 - self.accuracy(e1, feats["train_single"], b1,
                                                       d.y_train),
               "test_accuracy_three": self.accuracy(e3, feats["test_three"], b3, d.y_test),
               "train_error_three": 1 - self.accuracy(e3, feats["train_three"], b3, d.y_train)}
        out["per_group_test_error"] = {
            f"G{g + 1}": 1 - self.accuracy(e3, feats[f"test_group{g}"], b3, d.y_test)
            for g in range(3)}
        return out

    def stage_hybrid(self) -> dict:
        d = self.data()
        chip = self.chip()
        feats = self.npz("features.npz")
        tr = self.npz("transfer.npz")
        devices = {k[4:]: tr[k] for k in tr if k.startswith("dev_")}
        _, model, _ = self.pulse_model()
        hcfg = self.cfg.hybrid()
        out, hist = {}, {}
        for name, groups in (("single", 1), ("three", 3)):
            eng = chip.engine(self.cfg.engine, groups, conductances=tr["conductance"].copy())
            with self.bar(hcfg.batches, f"hybrid training ({name} group)") as bar:
                bias, h = train_fc(eng, chip.bias, feats[f"train_{name}"], d.y_train, model,
                                   devices, tr["stuck"], self.rng("hybrid"), hcfg,
                                   feats[f"test_{name}"], d.y_test, progress=bar.update)
            out[f"g_{name}"], out[f"bias_{name}"] = eng.conductances, bias
            hist[name] = h
        write_npz(self.out / "hybrid.npz", **out)
        plot_hybrid({"one group": hist["single"], "three groups": hist["three"]},
                    self.out / "hybrid_accuracy.png")
        self.chip(hybrid=True).save(self.out)
        return {"config": asdict(hcfg), "history": hist,
                "fc_pulses_total": {k: int(np.sum(v["pulses"])) for k, v in hist.items()}}

    def stage_eval_hybrid(self) -> dict:
        chip = self.chip(hybrid=True)
        chip.save(self.out)  # the programmed chip state after hybrid training
        return self._evaluate(chip, self.npz("features.npz"), chip.bias, chip.bias_three)

    def stage_energy(self) -> dict:
        d = self.data()
        chip = self.chip(hybrid=True)
        counter = EnergyCounter()
        name = "quantised" if self.cfg.engine == "ideal" else self.cfg.engine  # bit-serial reads
        eng = chip.engine(name, 1, counter=counter)
        n = min(self.cfg.n_energy, len(d.x_test))
        cnn.predict(dict(chip.params, b_FC=chip.bias), d.x_test[:n], eng)
        out = summarise(counter, n)
        out["currents_from"] = (
            f"{self.cfg.engine} reads of the whole 128 x 16 PE of each weight block (block rows "
            "driven, other rows at 0 V); the block's columns counted"
            if self.cfg.engine in CIRCUIT_ENGINES else "ideal crossbar reads (I = V G)")
        return out

    def stage_crosscheck(self) -> dict:
        """ngspice vs surrogate reads of the whole 128 x 16 PEs, on `n_check` test images.

        Layer outputs are compared before the ADC (analog shift-and-add of the per-slot column
        currents): the 8-bit ADC is the same digital function in both paths, and its step
        (~1 uA on a 128-row block) is larger than the read differences, so rounding flips would
        dominate a comparison after it. Class decisions are compared through the full hardware
        path, ADC included. FC: every block of both FC PEs for all images. C1, C3: ngspice reads
        of every patch would take hours (~25 ms per read vector, 8 per patch, 676 + 121
        patches per image), so a random sample of `n_check_patches` patches per image and layer.
        """
        n = min(self.cfg.n_check, len(self.data().x_test))
        if n == 0:
            return {"status": "skipped", "reason": "--n-check 0"}
        chip = self.chip(hybrid=True)
        feats = self.npz("features.npz")["test_single"][:n]
        try:
            ref_eng, sp_eng = chip.engine("surrogate", 1), chip.engine("ngspice", 1)
            ref_raw = chip.engine("surrogate", 1, adc_bits=None)
            sp_raw = chip.engine("ngspice", 1, adc_bits=None)
        except CircuitnnError as exc:
            return {"status": "unavailable", "reason": str(exc)}

        def deviation(ref: np.ndarray, other: np.ndarray) -> float:
            return float(np.max(np.abs(other - ref)) / max(np.max(np.abs(ref)), 1e-30))

        t0 = time.perf_counter()
        y_ref, y_sp = ref_eng("FC", feats) + chip.bias, sp_eng("FC", feats) + chip.bias
        dev = deviation(ref_raw("FC", feats), sp_raw("FC", feats))
        agree = bool(np.all(y_sp.argmax(1) == y_ref.argmax(1)))
        out = {"status": "done", "images": n, "layer": "FC (both FC PEs, all blocks)",
               "compared": "layer outputs before the ADC; class decisions with the ADC",
               "max_rel_deviation": dev, "within_1_percent": dev <= 0.01,
               "max_rel_deviation_after_adc": deviation(y_ref, y_sp),
               "class_decisions_agree": agree, "seconds_fc": time.perf_counter() - t0}
        # sampled convolution patches: the layer inputs of the surrogate forward pass
        inputs: dict[str, np.ndarray] = {}

        def capture(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
            if layer != "FC":
                inputs[layer] = x.reshape(x.shape[0], -1, x.shape[-1])
            return ref_eng(layer, x, w) if layer != "FC" else np.zeros((x.shape[0], 10))

        cnn.forward(chip.params, cnn.preprocess(self.data().x_test[:n]), capture)
        rng = self.rng("crosscheck")
        conv = {}
        for layer in ("C1", "C3"):
            t1 = time.perf_counter()
            x = inputs[layer]
            pick = rng.integers(0, x.shape[1], (n, self.cfg.n_check_patches))
            patches = x[np.arange(n)[:, None], pick].reshape(-1, x.shape[-1])
            d = deviation(ref_raw(layer, patches), sp_raw(layer, patches))
            conv[layer] = {"patches": int(len(patches)), "max_rel_deviation": d,
                           "within_1_percent": d <= 0.01,
                           "seconds": time.perf_counter() - t1}
        out["conv_sample"] = conv
        out["column_currents"] = self._crosscheck_currents(ref_eng, feats)
        out["all_within_1_percent"] = bool(dev <= 0.01 and all(
            c["within_1_percent"] for c in conv.values()))
        out["seconds"] = time.perf_counter() - t0
        out["scope"] = (f"FC layer of {n} test images through ngspice (full PE reads); C1 and C3 "
                        f"on {self.cfg.n_check_patches} random patches per image (full-layer "
                        "ngspice reads of every patch are too slow)")
        return out

    @staticmethod
    def _crosscheck_currents(eng: ChipEngine, feats: np.ndarray) -> dict:
        """Raw column currents of one full-PE read batch (the first FC block's bit slots of
        up to 10 images): surrogate vs ngspice, max deviation / largest current."""
        from circuitnn.tile import read

        p = eng.mapping.of("FC", 0)[0]
        codes = np.clip(np.rint(feats[:10] / eng.act_scales["FC"]), 0, 255).astype(np.uint8)
        bits = np.unpackbits(codes[None, :, p.w_rows], axis=0, bitorder="little")
        g_pe = eng._pe_conductances(p.pe)
        v = np.zeros((bits.shape[0] * bits.shape[1], g_pe.shape[0]))
        v[:, p.rows] = bits.reshape(-1, bits.shape[-1]) * eng.v_read
        spec = eng.column_read.spec(g_pe)
        i_sur, i_sp = read(spec, v, engine="surrogate"), read(spec, v, engine="ngspice")
        diff_sp = i_sp[:, 0::2] - i_sp[:, 1::2]
        diff_sur = i_sur[:, 0::2] - i_sur[:, 1::2]
        return {"pe": p.pe, "reads": int(len(v)),
                "max_rel_deviation": float(np.max(np.abs(i_sur - i_sp)) / np.abs(i_sp).max()),
                "differential_max_rel_deviation": float(
                    np.max(np.abs(diff_sur - diff_sp)) / max(np.abs(diff_sp).max(), 1e-30))}

    def stage_report(self) -> dict:
        from circuitnn.mcnn.report import build_report, write_report_md

        report = build_report(self)
        write_json(self.out / "report.json", report)
        write_report_md(report, self.out / "report.md")
        return report


def run_chain(cfg: RunConfig, out: str | os.PathLike, progress: bool = True,
              until: str | None = None) -> Chain:
    """Run (resuming) the chain into `out`; returns the Chain (results, timings, computed)."""
    chain = Chain(cfg, out, progress)
    chain.run(until)
    return chain


"""The programmed reference chip after `mcnn run`: eight PEs of conductances plus the digital
side, saved as chip.npz / chip.json and loaded for inference (`Chip.load(DIR).predict`).

`conductances["single"]` holds the chip after single-group hybrid training and
`conductances["three"]` after three-group hybrid training (same convolution PEs, its own FC
update). Inference goes through `circuitnn.network.engines.build_engine`, the one engine
constructor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices.choice import OperatingChoice
from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_json, write_npz
from circuitnn.network import graph
from circuitnn.network.device import array_device
from circuitnn.network.engines import ChipState, build_engine
from circuitnn.network.graph import Network
from circuitnn.network.mapping import Mapping
from circuitnn.surrogate.read import check_engine

MODES = {1: "single", 3: "three"}


@dataclass
class Chip:
    """The network, its parameters, the mapping, per-mode conductances and biases, settings."""

    net: Network
    params: dict[str, np.ndarray]
    mapping: Mapping
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    conductances: dict[str, np.ndarray]
    bias: dict[str, np.ndarray]
    settings: dict[str, Any]

    @classmethod
    def from_context(cls, ctx) -> Chip:
        """The chip of a finished pipeline run (after hybrid training)."""
        c, q, h = ctx.cfg, ctx["quantise"], ctx["hybrid"]
        return cls(ctx.net(), ctx["exsitu"].params, Mapping.from_dict(ctx["mapping"].mapping),
                   q.weight_scales, q.act_scales, dict(h.conductances), dict(h.bias),
                   {"iv_card": c.iv_card, "pulse_card": c.pulse_card,
                    "accept_read_error": c.accept_read_error,
                    "g_min": ctx.device.window.g_min, "g_max": ctx.device.window.g_max,
                    "v_read": ctx.device.v_read, "device_levels": c.device_levels,
                    "operating_point": ctx.device.choice.to_json(),
                    "adc_bits": c.adc_bits,
                    "adc_fraction": c.adc_fraction, "tile_options": c.tile_options,
                    "default_engine": c.engine})

    def state(self, groups: int = 1, conductances: np.ndarray | None = None) -> ChipState:
        """The ChipState of one mode (1 = single group, 3 = three groups)."""
        if groups not in MODES:
            raise CircuitnnError(f"groups must be 1 or 3, got {groups}")
        s = self.settings
        op = s.get("operating_point")  # chips saved before it: the window and read voltage
        device = array_device(s["iv_card"], s["pulse_card"], (s["g_min"], s["g_max"]),
                              s.get("v_read"), s["device_levels"],
                              choice=None if op is None or s["iv_card"] == "ohmic"
                              else OperatingChoice.from_json(op),
                              accept_read_error=s.get("accept_read_error", False))
        g = self.conductances[MODES[groups]] if conductances is None else conductances
        return ChipState(self.net, self.mapping, g, self.weight_scales, self.act_scales, device,
                         s["adc_bits"], s["adc_fraction"])

    def predict(self, images: np.ndarray, engine: str = "surrogate", groups: int = 1,
                batch_size: int = 500) -> np.ndarray:
        """Predicted labels (N,) for uint8 images (N, 28, 28) through the hardware."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise CircuitnnError(f"images must have shape (N, 28, 28), got {images.shape}")
        if images.dtype != np.uint8:
            raise CircuitnnError(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
        check_engine(engine)
        eng = build_engine(self.state(groups), engine, group=0 if groups == 1 else None,
                           tile_options=self.settings.get("tile_options") or None)
        last = self.net.last_layer
        p = dict(self.params, **{f"b_{last}": self.bias[MODES[groups]]})
        return graph.predict(self.net, p, images, eng, batch_size)

    # --------------------------------------------------------------- persistence
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write DIR/chip.npz and DIR/chip.json (atomically)."""
        out = Path(out_dir)
        arrays = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update({f"g/{k}": v for k, v in self.conductances.items()})
        arrays.update({f"bias/{k}": v for k, v in self.bias.items()})
        write_npz(out / "chip.npz", **arrays)
        write_json(out / "chip.json", {"network": self.net.to_dict(),
                                       "mapping": self.mapping.to_dict(),
                                       "weight_scales": self.weight_scales,
                                       "act_scales": self.act_scales,
                                       "settings": self.settings})
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> Chip:
        """Load a chip written by `mcnn run --out DIR` (or `Chip.save`)."""
        out = Path(out_dir)
        npz, meta = out / "chip.npz", out / "chip.json"
        if not npz.is_file() or not meta.is_file():
            raise CircuitnnError(f"{out}: no programmed chip (chip.npz / chip.json missing; run "
                                 "`circuitnn mcnn run --out DIR` first)")
        try:
            arr = load_npz(npz)
            info = json.loads(meta.read_text())

            def part(prefix: str) -> dict[str, np.ndarray]:
                return {k.split("/", 1)[1]: v for k, v in arr.items()
                        if k.startswith(prefix + "/")}

            net = Network.from_dict(info["network"])
            params = part("param")
            net.check_params(params)
            return cls(net, params, Mapping.from_dict(info["mapping"]),
                       {k: float(v) for k, v in info["weight_scales"].items()},
                       {k: float(v) for k, v in info["act_scales"].items()},
                       part("g"), part("bias"), info["settings"])
        except (OSError, ValueError, KeyError) as exc:
            raise CircuitnnError(f"{out}: cannot read the chip state: {exc}") from exc

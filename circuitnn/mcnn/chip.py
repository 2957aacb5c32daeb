"""The programmed chip: eight PEs of conductances plus the digital side, and its inference engines.

Engines (how an array read is simulated):
- "ideal": float product of the layer input with the chip's *effective* weights
  (G+ - G-) / g_unit x layer scale (programming errors included; no input or ADC quantisation);
- "quantised": 8-bit inputs applied bit-serially, ideal crossbar (I = V G), 8-bit ADC;
- "surrogate", "nodal", "ngspice": as "quantised", but every 1-bit read of a PE is a circuit
  read of the whole 128 x 16 PE (the block's rows driven, all other rows at 0 V, every cell's
  programmed conductance present) by `circuitnn.tile.read(TileSpec(...), V, engine=...)`.
All run through `circuitnn.network.engines.ChipEngine`; this module supplies the circuit reads
(`circuit_column_read`, `surrogate_block_read`) and the chip's stored state.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from circuitnn.devices import BUILTIN_CARD, DEVICE_MODELS_DIR, load_device
from circuitnn.devices.card import ModelCard
from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_json, write_npz
from circuitnn.network import cnn
from circuitnn.network.engines import V_READ, ChipEngine, ColumnRead, check_engine
from circuitnn.network.mapping import Mapping, Placement, map_weights
from circuitnn.tile import CIRCUIT_ENGINES, read
from circuitnn.tile.spec import TileSpec

DEFAULT_TILE_CARD = DEVICE_MODELS_DIR / BUILTIN_CARD


class CircuitRead:
    """`column_read(V, G)` that runs a circuit read of the tile holding G (a whole PE).

    Tile specs are cached by conductances. For the surrogate engine, `tile(G)` gives the
    programmed `SurrogateTile` (checked once against the card and the read voltage), which
    `surrogate_block_read` reads directly in the engine's bit-serial slots.
    """

    def __init__(self, engine: str, tile_options: dict[str, Any] | None = None) -> None:
        check_engine(engine)
        self.engine, self._tile_spec, self._read = engine, TileSpec, read
        opts = dict(tile_options or {})
        device = opts.pop("device", str(DEFAULT_TILE_CARD))
        if device not in (None, "ohmic"):
            if not Path(device).is_file():
                raise CircuitnnError(f"tile device card not found: {device}")
            opts["device"] = ModelCard.load(device)
        self.lo, self.hi = 0.0, np.inf
        if opts.get("device") is not None:
            self.lo, self.hi = load_device(opts["device"]).g_range
        self.opts = opts
        self._specs: dict[bytes, Any] = {}
        self._tiles: dict[bytes, Any] = {}

    def spec(self, g: np.ndarray):
        """The TileSpec of conductances g (cached)."""
        key = np.ascontiguousarray(g).tobytes()
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) > 64:
                self._specs.clear()
            try:
                # the rare cells programmed outside the card's range (stuck, device-to-device
                # bounds) are read at the nearest state the card can hold
                spec = self._specs[key] = self._tile_spec(
                    conductance=np.clip(g, self.lo * 1.001, self.hi * 0.999), **self.opts)
            except TypeError as exc:
                raise CircuitnnError(f"bad tile option: {exc}") from None
        return spec

    def tile(self, g: np.ndarray, v_read: float):
        """The programmed SurrogateTile of g, validated once: the card must cover the tile and
        a read with every row at v_read must pass `circuitnn.tile.read`'s input checks."""
        if self.engine != "surrogate":
            raise CircuitnnError(f"engine '{self.engine}' has no programmed surrogate tile")
        key = np.ascontiguousarray(g).tobytes()
        tile = self._tiles.get(key)
        if tile is None:
            from circuitnn.surrogate.engine import programmed

            spec = self.spec(g)
            self._read(spec, np.full((1, spec.rows), v_read), engine="surrogate")
            tile = programmed(spec)[0]
            if len(self._tiles) > 32:
                self._tiles.clear()
            self._tiles[key] = tile
        return tile

    def __call__(self, v: np.ndarray, g: np.ndarray) -> np.ndarray:
        out = self._read(self.spec(g), v, engine=self.engine)
        return np.asarray(getattr(out, "currents", out), dtype=float)


def circuit_column_read(engine: str, tile_options: dict[str, Any] | None = None) -> CircuitRead:
    """A `column_read(V, G)` that runs a circuit read of the tile holding G.

    tile_options: extra TileSpec fields (e.g. r_row, r_col); "device" may name a card file or
    "ohmic" (default: the built-in card device_models/stanford-pku-hfox.json).
    """
    return CircuitRead(engine, tile_options)


def surrogate_block_read(engine: ChipEngine, p: Placement) -> ColumnRead | None:
    """`ChipEngine.block_read` hook: with a surrogate `CircuitRead`, the fast bit-serial path
    (the programmed tile of the whole PE, read with only block p's rows driven); else None."""
    read = engine.column_read
    if not (isinstance(read, CircuitRead) and read.engine == "surrogate"):
        return None
    from circuitnn.surrogate.engine import read_driven_rows

    tile = read.tile(engine._pe_conductances(p.pe), engine.v_read)  # inputs are 0 / v_read
    return lambda v, g: read_driven_rows(tile, v, p.rows, p.cols)


def conv_features(engine: ChipEngine, images: np.ndarray, params: dict[str, np.ndarray],
                  batch_size: int = 250, progress=None) -> np.ndarray:
    """FC inputs (N, 192) of uint8 images after the hardware convolution layers."""
    feats = []

    def matmul(layer: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if layer == "FC":
            feats.append(x.copy())
            return np.zeros((x.shape[0], 10))
        return engine(layer, x, w)

    for i in range(0, len(images), batch_size):
        cnn.forward(params, cnn.preprocess(images[i:i + batch_size]), matmul)
        if progress is not None:
            progress(min(batch_size, len(images) - i))
    return np.concatenate(feats) if feats else np.zeros((0, 192))


# ----------------------------------------------------------------------------- the chip
@dataclass
class Chip:
    """A programmed chip after the `mcnn run` chain (conductances of all 8 PEs, digital side).

    `conductances` holds the chip after single-group hybrid training; `conductances_three`
    after three-group hybrid training (same convolution PEs, its own FC update).
    """

    params: dict[str, np.ndarray]  # ex-situ float parameters (C1, C3, FC, b_FC)
    levels: dict[str, np.ndarray]  # quantised weight levels
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    conductances: np.ndarray
    conductances_three: np.ndarray
    bias: np.ndarray
    bias_three: np.ndarray
    settings: dict[str, Any]
    mapping: Mapping = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mapping = map_weights({k: self.levels[k] for k in cnn.LAYERS},
                                   int(self.settings.get("n_groups", 3)))

    @property
    def g_unit(self) -> float:
        s = self.settings
        return (s["g_max"] - s["g_min"]) / (s["device_levels"] - 1)

    def engine(self, engine: str = "surrogate", groups: int = 1, group: int = 0,
               conductances: np.ndarray | None = None, column_read: ColumnRead | None = None,
               tile_options: dict[str, Any] | None = None, **kw: Any) -> ChipEngine:
        """A ChipEngine on this chip's (or the given) conductances."""
        check_engine(engine)
        if groups not in (1, 3) or not 0 <= group < 3:
            raise CircuitnnError(f"groups must be 1 or 3 and group 0..2 (got {groups}, {group})")
        if conductances is None:
            conductances = self.conductances if groups == 1 else self.conductances_three
        if column_read is None and engine in CIRCUIT_ENGINES:
            opts = dict(self.settings.get("tile_options", {}))
            opts.update(tile_options or {})
            column_read = circuit_column_read(engine, opts)
        s, circuit = self.settings, engine in CIRCUIT_ENGINES
        return ChipEngine(self.mapping, conductances, self.weight_scales, self.act_scales,
                          self.g_unit, s["g_max"], engine=engine, groups=groups, group=group,
                          adc_bits=kw.pop("adc_bits", s.get("adc_bits", 8)),
                          adc_fraction=s.get("adc_fraction", 0.5), v_read=s.get("v_read",
                                                                               V_READ),
                          column_read=column_read, full_pe=circuit,
                          block_read=surrogate_block_read if circuit else None,
                          chunk=4096 if engine in ("nodal", "ngspice") else 8192, **kw)

    def predict(self, images: np.ndarray, engine: str = "surrogate", groups: int = 1,
                batch_size: int = 500) -> np.ndarray:
        """Predicted labels (N,) for uint8 images (N, 28, 28) through the hardware."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise CircuitnnError(f"images must have shape (N, 28, 28), got {images.shape}")
        if images.dtype != np.uint8:
            raise CircuitnnError(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
        eng = self.engine(engine, groups)
        bias = self.bias if groups == 1 else self.bias_three
        p = dict(self.params, b_FC=bias)
        return cnn.predict(p, images, eng, batch_size)

    # --------------------------------------------------------------- persistence
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write DIR/chip.npz and DIR/chip.json (atomically)."""
        out = Path(out_dir)
        arrays = {f"param_{k}": v for k, v in self.params.items()}
        arrays.update({f"level_{k}": v for k, v in self.levels.items()})
        write_npz(out / "chip.npz", conductances=self.conductances,
                  conductances_three=self.conductances_three, bias=self.bias,
                  bias_three=self.bias_three, **arrays)
        write_json(out / "chip.json", {"weight_scales": self.weight_scales,
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
            params = {k[6:]: arr[k] for k in arr if k.startswith("param_")}
            levels = {k[6:]: arr[k] for k in arr if k.startswith("level_")}
            cnn.check_params(params)
            return cls(params, levels, {k: float(v) for k, v in info["weight_scales"].items()},
                       {k: float(v) for k, v in info["act_scales"].items()},
                       arr["conductances"], arr["conductances_three"], arr["bias"],
                       arr["bias_three"], info["settings"])
        except (OSError, ValueError, KeyError) as exc:
            raise CircuitnnError(f"{out}: cannot read the chip state: {exc}") from exc

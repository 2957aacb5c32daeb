"""Placing the weight layers of any network onto tiles (the reference's PEs), as data.

A layer's weight matrix (K inputs, outputs) lives on tiles of `rows` x `cols` 1T1R cells
(default 128 x 16, from the reference preset) as differential pairs: output j of a block takes
two neighbouring columns, G+ then G-. A layer larger than a tile is split into row blocks (their
partial sums are added digitally after the ADC) and column blocks. A layer may be replicated into
K groups (replicas), each computing the outputs of one band of output rows, top to bottom (the
reference replicated C1/C3 into three convolver groups; ResNet-56 its first conv into four).

A `Mapping` is plain data (JSON): which block of which layer and replica sits where on which tile.
`auto_map` packs blocks first-fit onto as many tiles as needed (tile t is PE t % tiles_per_chip of
chip t // tiles_per_chip); `reference_map` is the hand placement of the reference system (cnn5 on
eight PEs; `REFERENCE_PLAN`). Blocks may share a tile's columns (C1 sits below C3 in the
reference): each block is read with only its own rows driven.

Conductances: a device has `levels` states evenly spaced from g_min to g_max; weight level k in
-(levels-1)..(levels-1) becomes G+ = state k, G- = g_min for k >= 0 and the mirror for k < 0.
Unused cells stay at g_min.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from circuitnn.devices.choice import Window
from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure
from circuitnn.reference import REF

TILE_ROWS, TILE_COLS = REF.hardware.pe_rows, REF.hardware.pe_cols
TILES_PER_CHIP = REF.hardware.n_pes
DEVICE_LEVELS = REF.hardware.device_levels
REFERENCE_WINDOW = Window()  # the reference's 6-24 uS, 8 levels (the preset's choice)

#: the reference's hand placement of cnn5 (Yao et al. 2020: C1 + C3 of one convolver group on two
#: PEs, FC on two PEs): (layer, group, pe, row0, col0, input rows, outputs) per block; "{a}" and
#: "{b}" are the group's two PEs 2g and 2g + 1, "{f}" the first FC PE 2 * groups.
REFERENCE_PLAN = (
    ("C3", "group", "a", 0, 0, (0, 72), (0, 8)),
    ("C1", "group", "a", 72, 0, (0, 9), (0, 8)),
    ("C3", "group", "b", 0, 0, (0, 72), (8, 12)),
    ("FC", 0, "f", 0, 0, (0, 128), (0, 8)),
    ("FC", 0, "f+1", 0, 0, (128, 192), (0, 8)),
    ("FC", 0, "f+1", 64, 0, (0, 64), (8, 10)),
    ("FC", 0, "f+1", 64, 4, (64, 128), (8, 10)),
    ("FC", 0, "f+1", 64, 8, (128, 192), (8, 10)),
)


@dataclass(frozen=True)
class Placement:
    """One weight block on one tile: cells [rows, cols] of `tile` hold weights[w_rows, w_cols]
    of `layer`'s replica `group`; `cols` spans 2 columns per output (G+ then G-)."""

    layer: str
    group: int
    tile: int
    rows: slice
    cols: slice
    w_rows: slice
    w_cols: slice

    def to_list(self) -> list:
        return [self.layer, self.group, self.tile, self.rows.start, self.cols.start,
                [self.w_rows.start, self.w_rows.stop], [self.w_cols.start, self.w_cols.stop]]


def _block(layer: str, group: int, tile: int, r0: int, c0: int, w_rows: tuple, w_cols: tuple
           ) -> Placement:
    nr, nc = w_rows[1] - w_rows[0], w_cols[1] - w_cols[0]
    return Placement(layer, int(group), int(tile), slice(r0, r0 + nr), slice(c0, c0 + 2 * nc),
                     slice(*w_rows), slice(*w_cols))


@dataclass
class Mapping:
    """Every placement, the layers' matrix shapes and replica counts, and the tile geometry."""

    placements: list[Placement]
    shapes: dict[str, tuple[int, int]]
    groups: dict[str, int]
    n_tiles: int
    rows: int = TILE_ROWS
    cols: int = TILE_COLS
    tiles_per_chip: int = TILES_PER_CHIP
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def of(self, layer: str, group: int = 0) -> list[Placement]:
        """Placements of one replica of a layer."""
        key = (layer, group)
        if key not in self._index:
            self._index[key] = [p for p in self.placements
                                if p.layer == layer and p.group == group]
        return self._index[key]

    @property
    def tiles_used(self) -> int:
        return len({p.tile for p in self.placements})

    @property
    def chips(self) -> int:
        return -(-self.n_tiles // self.tiles_per_chip)

    @property
    def max_groups(self) -> int:
        return max(self.groups.values(), default=1)

    def used_cells(self) -> np.ndarray:
        """Boolean (n_tiles, rows, cols): cells that hold a weight."""
        used = np.zeros((self.n_tiles, self.rows, self.cols), bool)
        for p in self.placements:
            used[p.tile, p.rows, p.cols] = True
        return used

    def partners(self) -> np.ndarray:
        """(n_tiles, rows, cols): the flat index of each used cell's differential partner (the
        other column of its G+ / G- pair), -1 for unused cells."""
        out = np.full((self.n_tiles, self.rows, self.cols), -1, np.int64)
        flat = np.arange(out.size).reshape(out.shape)
        for p in self.placements:
            block = flat[p.tile, p.rows, p.cols]
            out[p.tile, p.rows, p.cols] = block.reshape(len(block), -1, 2)[:, :, ::-1].reshape(
                block.shape)
        return out

    def layer_tiles(self, layer: str) -> list[int]:
        return sorted({p.tile for p in self.placements if p.layer == layer})

    def summary(self) -> dict[str, dict]:
        """Per layer: replicas, blocks, tiles touched, weights and cells used."""
        out = {}
        for layer, (k, n) in self.shapes.items():
            blocks = [p for p in self.placements if p.layer == layer]
            cells = sum((p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start)
                        for p in blocks)
            out[layer] = {"shape": [k, n], "groups": self.groups[layer], "blocks": len(blocks),
                          "tiles": len(self.layer_tiles(layer)), "cells": cells}
        return out

    def utilisation(self) -> float:
        """Fraction of the cells of the used tiles that hold a weight."""
        return float(self.used_cells().sum() / max(self.tiles_used * self.rows * self.cols, 1))

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "n_tiles": self.n_tiles,
                "tiles_per_chip": self.tiles_per_chip,
                "shapes": {k: list(v) for k, v in self.shapes.items()}, "groups": self.groups,
                "placements": [p.to_list() for p in self.placements]}

    @classmethod
    def from_dict(cls, d: dict) -> Mapping:
        try:
            m = cls([_block(p[0], p[1], p[2], p[3], p[4], tuple(p[5]), tuple(p[6]))
                     for p in d["placements"]],
                    {k: tuple(v) for k, v in d["shapes"].items()},
                    {k: int(v) for k, v in d["groups"].items()}, int(d["n_tiles"]),
                    int(d["rows"]), int(d["cols"]), int(d.get("tiles_per_chip", TILES_PER_CHIP)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CircuitnnError(f"bad mapping description: {exc}") from None
        check_mapping(m)
        return m

    def save(self, path: str | os.PathLike) -> None:
        from circuitnn.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mapping:
        try:
            return cls.from_dict(json.loads(open(path).read()))
        except (OSError, ValueError) as exc:
            raise CircuitnnError(f"cannot read mapping {path}: {exc}") from None


def check_mapping(m: Mapping) -> None:
    """Raise CircuitnnError if a block leaves its tile, two blocks share a cell, or a replica's
    weights are not covered exactly once."""
    used = np.zeros((m.n_tiles, m.rows, m.cols), dtype=np.int16)
    for p in m.placements:
        if (p.cols.stop - p.cols.start) != 2 * (p.w_cols.stop - p.w_cols.start) or (
                p.rows.stop - p.rows.start) != (p.w_rows.stop - p.w_rows.start):
            raise CircuitnnError(f"{p.layer} block on tile {p.tile}: cell and weight ranges differ")
        if not (0 <= p.tile < m.n_tiles and 0 <= p.rows.start and p.rows.stop <= m.rows
                and 0 <= p.cols.start and p.cols.stop <= m.cols):
            raise CircuitnnError(f"{p.layer} block on tile {p.tile} lies outside the "
                                 f"{m.n_tiles} tiles of {m.rows} x {m.cols}")
        used[p.tile, p.rows, p.cols] += 1
    if used.max(initial=0) > 1:
        raise CircuitnnError("two weight blocks overlap on the same tile cells")
    for layer, shape in m.shapes.items():
        for g in range(m.groups.get(layer, 1)):
            cover = np.zeros(shape, dtype=np.int16)
            for p in m.of(layer, g):
                cover[p.w_rows, p.w_cols] += 1
            if not np.all(cover == 1):
                raise CircuitnnError(f"{layer} group {g}: weights not placed exactly once")


def _check_geometry(rows: int, cols: int) -> None:
    if rows < 1 or cols < 2 or cols % 2:
        raise CircuitnnError(f"tiles need >= 1 row and an even number >= 2 of columns, got "
                             f"{rows} x {cols}")


def auto_map(shapes: dict[str, tuple[int, int]], replicate: dict[str, int] | None = None,
             rows: int = TILE_ROWS, cols: int = TILE_COLS, max_tiles: int | None = None,
             tiles_per_chip: int = TILES_PER_CHIP) -> Mapping:
    """Place every layer (matrix shapes (K, outputs), in order) on tiles, first fit.

    Each replica of a layer is cut into blocks of at most `rows` inputs x `cols // 2` outputs;
    each block goes to the first tile with a free rectangle for it (tiles are opened as
    needed, up to `max_tiles`)."""
    _check_geometry(rows, cols)
    replicate = dict(replicate or {})
    unknown = set(replicate) - set(shapes)
    if unknown:
        raise CircuitnnError(f"cannot replicate unknown layer(s) {sorted(unknown)}")
    if any(int(k) < 1 for k in replicate.values()):
        raise CircuitnnError("replication factors must be >= 1")
    per_col = cols // 2
    free: list[np.ndarray] = []  # per tile: free cells (rows, cols) bool
    placements = []
    for layer, (k, n) in shapes.items():
        for g in range(int(replicate.get(layer, 1))):
            for r0 in range(0, k, rows):
                for c0 in range(0, n, per_col):
                    wr, wc = (r0, min(k, r0 + rows)), (c0, min(n, c0 + per_col))
                    h, w = wr[1] - wr[0], 2 * (wc[1] - wc[0])
                    spot = None
                    for t, f in enumerate(free):
                        if f.sum() < h * w:
                            continue
                        spot = _first_fit(f, h, w)
                        if spot is not None:
                            spot = (t,) + spot
                            break
                    if spot is None:
                        if max_tiles is not None and len(free) >= max_tiles:
                            raise CircuitnnError(f"the network needs more than {max_tiles} "
                                                 f"tiles of {rows} x {cols}")
                        free.append(np.ones((rows, cols), bool))
                        spot = (len(free) - 1, 0, 0)
                    t, y, x = spot
                    free[t][y:y + h, x:x + w] = False
                    placements.append(_block(layer, g, t, y, x, wr, wc))
    m = Mapping(placements, {k: tuple(v) for k, v in shapes.items()},
                {k: int(replicate.get(k, 1)) for k in shapes}, len(free), rows, cols,
                tiles_per_chip)
    check_mapping(m)
    return m


def _first_fit(free: np.ndarray, h: int, w: int) -> tuple[int, int] | None:
    """Top-left corner of the first free h x w rectangle (row-major over even columns)."""
    rows, cols = free.shape
    # integral image for O(1) rectangle sums
    s = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    s[1:, 1:] = free.cumsum(0).cumsum(1)
    ys = np.arange(rows - h + 1)[:, None]
    xs = np.arange(0, cols - w + 1, 2)[None, :]
    if ys.size == 0 or xs.size == 0:
        return None
    area = s[ys + h, xs + w] - s[ys, xs + w] - s[ys + h, xs] + s[ys, xs]
    hit = np.argwhere(area == h * w)
    if hit.size == 0:
        return None
    y, xi = hit[0]
    return int(y), int(xs[0, xi])


def reference_map(n_groups: int = REF.hardware.convolver_groups) -> Mapping:
    """The reference's hand placement of cnn5 (`REFERENCE_PLAN`) with C1/C3 in `n_groups`
    convolver groups (1..3, two PEs each) and FC on the next two PEs of the 8-PE chip."""
    if n_groups not in (1, 2, 3):
        raise CircuitnnError(f"n_groups must be 1, 2 or 3 to fit {TILES_PER_CHIP} PEs, got "
                             f"{n_groups}")
    placements = []
    for layer, group, pe, r0, c0, wr, wc in REFERENCE_PLAN:
        for g in (range(n_groups) if group == "group" else [group]):
            tile = {"a": 2 * g, "b": 2 * g + 1, "f": 2 * n_groups,
                    "f+1": 2 * n_groups + 1}[pe]
            placements.append(_block(layer, g, tile, r0, c0, wr, wc))
    m = Mapping(placements, {"C1": (9, 8), "C3": (72, 12), "FC": (192, 10)},
                {"C1": n_groups, "C3": n_groups, "FC": 1}, TILES_PER_CHIP)
    check_mapping(m)
    return m


# ----------------------------------------------------------------------------- conductances
def weights_to_conductance(w_q: np.ndarray, window: Window = REFERENCE_WINDOW
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Integer weight levels in -(levels-1)..(levels-1) -> (G_plus, G_minus) in siemens."""
    w = np.asarray(w_q)
    top = window.levels - 1
    if w.size and (not np.all(np.equal(np.mod(w, 1), 0)) or np.abs(w).max() > top):
        raise CircuitnnError(f"weight levels must be integers in -{top}..{top}")
    g_plus = window.g_min + window.unit * np.clip(w, 0, None)
    g_minus = window.g_min + window.unit * np.clip(-w, 0, None)
    return g_plus.astype(float), g_minus.astype(float)


def conductance_to_weights(g_plus: np.ndarray, g_minus: np.ndarray,
                           window: Window = REFERENCE_WINDOW, rounded: bool = False) -> np.ndarray:
    """Weight levels (G+ - G-) / unit; float (e.g. for programmed, noisy cells) or rounded."""
    w = (np.asarray(g_plus, float) - np.asarray(g_minus, float)) / window.unit
    return np.rint(w).astype(int) if rounded else w


def target_conductances(m: Mapping, levels: dict[str, np.ndarray], window: Window = REFERENCE_WINDOW
                        ) -> np.ndarray:
    """Conductance of every cell (n_tiles, rows, cols) for integer weight levels per layer.
    Columns alternate G+ / G-; unused cells are g_min."""
    g = np.full((m.n_tiles, m.rows, m.cols), float(window.g_min))
    for layer, shape in m.shapes.items():
        if tuple(np.shape(levels.get(layer))) != tuple(shape):
            raise CircuitnnError(f"mapping needs weight levels '{layer}' of shape {shape}, got "
                                 f"{np.shape(levels[layer]) if layer in levels else 'none'}")
    for p in m.placements:
        gp, gm = weights_to_conductance(levels[p.layer][p.w_rows, p.w_cols], window)
        g[p.tile, p.rows, p.cols.start:p.cols.stop:2] = gp
        g[p.tile, p.rows, p.cols.start + 1:p.cols.stop:2] = gm
    return g


def effective_levels(m: Mapping, conductances: np.ndarray, layer: str, group: int,
                     unit: float) -> np.ndarray:
    """(G+ - G-) / unit of one replica of a layer: its weight levels as programmed (floats)."""
    w = np.zeros(m.shapes[layer])
    for p in m.of(layer, group):
        g = conductances[p.tile, p.rows, p.cols]
        w[p.w_rows, p.w_cols] = (g[:, 0::2] - g[:, 1::2]) / unit
    return w


# ----------------------------------------------------------------------------- reports
def describe_mapping(m: Mapping) -> str:
    """A text summary: tiles per layer and utilisation, then every block of every tile (up to
    64 tiles listed)."""
    lines = [f"{m.tiles_used} tiles of {m.rows} x {m.cols} 1T1R cells used ({m.chips} chip(s) "
             f"of {m.tiles_per_chip}); cell utilisation {100 * m.utilisation():.1f}%",
             "layer      shape (K x out)  groups  blocks  tiles  cells"]
    for layer, s in m.summary().items():
        lines.append(f"{layer:10s} {s['shape'][0]:5d} x {s['shape'][1]:<5d}    {s['groups']:5d}"
                     f"  {s['blocks']:6d}  {s['tiles']:5d}  {s['cells']:6d}")
    for t in range(min(m.n_tiles, 64)):
        blocks = [p for p in m.placements if p.tile == t]
        cells = sum((p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start) for p in blocks)
        lines.append(f"tile {t}: {cells:5d} / {m.rows * m.cols} cells used"
                     + ("" if blocks else " (free)"))
        for p in blocks:
            grp = f" group {p.group}" if m.groups[p.layer] > 1 else ""
            lines.append(f"  {p.layer}{grp}: rows {p.rows.start:3d}:{p.rows.stop:<3d} cols "
                         f"{p.cols.start:2d}:{p.cols.stop:<2d} <- inputs {p.w_rows.start}:"
                         f"{p.w_rows.stop}, outputs {p.w_cols.start}:{p.w_cols.stop}")
    if m.n_tiles > 64:
        lines.append(f"... {m.n_tiles - 64} more tiles")
    return "\n".join(lines)


def plot_mapping(m: Mapping, path: str | os.PathLike, max_tiles: int = 16) -> str:
    """PNG: the first `max_tiles` tiles cell by cell (layer colour, G- columns darker) and, for
    larger mappings, a bar chart of tiles and utilisation per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    layers = list(m.shapes)
    cmap = plt.get_cmap("tab20")
    colour = {k: np.array(cmap(i % 20)[:3]) for i, k in enumerate(layers)}
    shown = min(m.n_tiles, max_tiles)
    big = m.n_tiles > max_tiles
    fig = plt.figure(figsize=(max(1.2 * shown + 1, 7), 9 if big else 6))
    grid = fig.add_gridspec(2 if big else 1, shown, height_ratios=[3, 2] if big else [1])
    for t in range(shown):
        ax = fig.add_subplot(grid[0, t])
        img = np.ones((m.rows, m.cols, 3))
        for p in (q for q in m.placements if q.tile == t):
            img[p.rows, p.cols.start:p.cols.stop:2] = colour[p.layer]
            img[p.rows, p.cols.start + 1:p.cols.stop:2] = colour[p.layer] * 0.7
            ax.add_patch(Rectangle((p.cols.start - 0.5, p.rows.start - 0.5),
                                   p.cols.stop - p.cols.start, p.rows.stop - p.rows.start,
                                   fill=False, lw=0.6, ec="k"))
            ax.text((p.cols.start + p.cols.stop) / 2 - 0.5, (p.rows.start + p.rows.stop) / 2,
                    p.layer + (f"\ng{p.group}" if m.groups[p.layer] > 1 else ""),
                    ha="center", va="center", fontsize=5)
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_title(f"tile {t}", fontsize=7)
        ax.set_xticks([])
        if t:
            ax.set_yticks([])
        else:
            ax.set_ylabel("input (bit) line")
    if big:
        ax = fig.add_subplot(grid[1, :])
        s = m.summary()
        x = np.arange(len(layers))
        ax.bar(x, [s[k]["tiles"] for k in layers], color=[colour[k] for k in layers])
        ax.set_xticks(x, layers, rotation=90, fontsize=6)
        ax.set_ylabel("tiles touched")
        ax2 = ax.twinx()
        ax2.plot(x, [100 * s[k]["cells"] / max(s[k]["tiles"] * m.rows * m.cols, 1)
                     for k in layers], "k.", ms=4)
        ax2.set_ylabel("cells used / cells of its tiles (%)")
        ax2.set_ylim(0, 105)
    fig.suptitle(f"{len(layers)} weight layers on {m.tiles_used} tiles of {m.rows} x {m.cols} "
                 f"(G+ light / G- dark), utilisation {100 * m.utilisation():.1f}%"
                 + (f"; first {shown} tiles shown" if big else ""), fontsize=9)
    save_figure(fig, path)
    return str(path)

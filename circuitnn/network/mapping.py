"""Placement of the CNN weights onto eight 128 x 16 1T1R processing elements (PEs).

Each signed weight is a differential pair of cells on one input (bit) line: column 2j holds G+
and column 2j+1 holds G- of output channel j of a block, so a 16-column PE holds 8 kernels. The
input vector of a layer (an unrolled 3x3xC patch, or the 192 FC inputs) goes on the input lines.
Blocks that share columns of one PE are read in different time steps (the other rows held at
0 V); blocks of one layer that split its inputs are read separately and their partial sums are
added digitally.

Map used here (Yao et al. 2020 had three replicated C1/C3 convolver groups, each taking a third
of the image, plus the FC layer, on eight PEs):

    convolver group g (g = 0..n_groups-1) on PEs 2g and 2g+1
      PE 2g   rows  0:72, cols 0:16   C3 kernels 0-7  (72 inputs x 8 pairs)
              rows 72:81, cols 0:16   C1 kernels 0-7  ( 9 inputs x 8 pairs)
      PE 2g+1 rows  0:72, cols 0:8    C3 kernels 8-11 (72 inputs x 4 pairs)
    FC on PEs f = 2*n_groups and f+1 (192 inputs x 10 outputs = 3,840 of 4,096 cells)
      PE f    rows  0:128, cols 0:16  FC inputs   0:128, outputs 0-7
      PE f+1  rows  0:64,  cols 0:16  FC inputs 128:192, outputs 0-7
              rows 64:128, cols 0:4 / 4:8 / 8:12   FC inputs 0:64 / 64:128 / 128:192, outputs 8-9

With three groups this uses all eight PEs; with one group, four.

Conductances: a device has `levels` (8) states evenly spaced from g_min to g_max; weight level
k in -(levels-1)..(levels-1) becomes G+ = state k, G- = g_min for k >= 0 and G+ = g_min,
G- = state |k| for k < 0. Unused cells are left at g_min. g_min / g_max are open in the paper;
DEFAULT_G_MIN / DEFAULT_G_MAX are this project's choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import save_figure
from circuitnn.reference import REF

N_PES, PE_ROWS, PE_COLS = REF.hardware.n_pes, REF.hardware.pe_rows, REF.hardware.pe_cols
DEVICE_LEVELS = REF.hardware.device_levels
DEFAULT_G_MIN = REF.choices.g_min  # S (open: project choice, inside the built-in card's range)
DEFAULT_G_MAX = REF.choices.g_max  # S (open parameter: project choice)
LAYER_SHAPES = {"C1": (9, 8), "C3": (72, 12), "FC": (192, 10)}


@dataclass(frozen=True)
class Placement:
    """One weight block on one PE: PE cells [rows, cols] hold weights[w_rows, w_cols].

    `cols` spans 2 columns per output channel (G+ then G-). `group` is the convolver replica
    (0 for the FC layer, which is not replicated). `block` is the weight sub-matrix.
    """

    layer: str
    group: int
    pe: int
    rows: slice
    cols: slice
    w_rows: slice
    w_cols: slice
    block: np.ndarray = field(repr=False, compare=False)


@dataclass
class Mapping:
    """All placements, the number of convolver groups, and the PE geometry."""

    placements: list[Placement]
    n_groups: int
    n_pes: int = N_PES
    pe_rows: int = PE_ROWS
    pe_cols: int = PE_COLS

    def of(self, layer: str, group: int = 0) -> list[Placement]:
        """Placements of one layer in one convolver group (FC: group 0)."""
        return [p for p in self.placements if p.layer == layer and p.group == group]

    @property
    def pes_used(self) -> int:
        return len({p.pe for p in self.placements})


def _plan(n_groups: int) -> list[tuple]:
    """(layer, group, pe, pe_row0, pe_col0, w_rows, w_cols) for every block."""
    plan = []
    for g in range(n_groups):
        a, b = 2 * g, 2 * g + 1
        plan += [("C3", g, a, 0, 0, slice(0, 72), slice(0, 8)),
                 ("C1", g, a, 72, 0, slice(0, 9), slice(0, 8)),
                 ("C3", g, b, 0, 0, slice(0, 72), slice(8, 12))]
    f = 2 * n_groups
    plan += [("FC", 0, f, 0, 0, slice(0, 128), slice(0, 8)),
             ("FC", 0, f + 1, 0, 0, slice(128, 192), slice(0, 8)),
             ("FC", 0, f + 1, 64, 0, slice(0, 64), slice(8, 10)),
             ("FC", 0, f + 1, 64, 4, slice(64, 128), slice(8, 10)),
             ("FC", 0, f + 1, 64, 8, slice(128, 192), slice(8, 10))]
    return plan


def map_weights(weights: dict[str, np.ndarray], n_groups: int = 3) -> Mapping:
    """Place C1 (9,8), C3 (72,12), FC (192,10) weight matrices (levels or floats) on the PEs,
    with the convolution layers replicated in `n_groups` (1..3) convolver groups."""
    if n_groups not in (1, 2, 3):
        raise CircuitnnError(f"n_groups must be 1, 2 or 3 to fit {N_PES} PEs, got {n_groups}")
    for layer, shape in LAYER_SHAPES.items():
        if layer not in weights or tuple(np.shape(weights[layer])) != shape:
            raise CircuitnnError(f"mapping needs weight matrix '{layer}' of shape {shape}, got "
                                 f"{np.shape(weights[layer]) if layer in weights else 'none'}")
    placements = []
    for layer, group, pe, r0, c0, w_rows, w_cols in _plan(n_groups):
        nr, nc = w_rows.stop - w_rows.start, w_cols.stop - w_cols.start
        block = np.array(weights[layer][w_rows, w_cols])
        placements.append(Placement(layer, group, pe, slice(r0, r0 + nr),
                                    slice(c0, c0 + 2 * nc), w_rows, w_cols, block))
    mapping = Mapping(placements, n_groups)
    check_mapping(mapping)
    return mapping


def check_mapping(mapping: Mapping) -> None:
    """Raise CircuitnnError if a block leaves its PE, two blocks share a cell, or a layer's
    weights are not covered exactly once per group."""
    used = np.zeros((mapping.n_pes, mapping.pe_rows, mapping.pe_cols), dtype=int)
    for p in mapping.placements:
        if not (0 <= p.pe < mapping.n_pes and p.rows.stop <= mapping.pe_rows
                and p.cols.stop <= mapping.pe_cols):
            raise CircuitnnError(f"{p.layer} block on PE {p.pe} lies outside the "
                                 f"{mapping.n_pes} x {mapping.pe_rows} x {mapping.pe_cols} PEs")
        used[p.pe, p.rows, p.cols] += 1
    if used.max() > 1:
        raise CircuitnnError("two weight blocks overlap on the same PE cells")
    for layer, shape in LAYER_SHAPES.items():
        for g in range(mapping.n_groups if layer != "FC" else 1):
            cover = np.zeros(shape, dtype=int)
            for p in mapping.of(layer, g):
                cover[p.w_rows, p.w_cols] += 1
            if not np.all(cover == 1):
                raise CircuitnnError(f"{layer} group {g}: weights not placed exactly once")


def reconstruct(mapping: Mapping, layer: str, group: int = 0) -> np.ndarray:
    """Rebuild a layer's weight matrix from its placed blocks."""
    blocks = mapping.of(layer, group)
    if not blocks:
        raise CircuitnnError(f"no placements for layer {layer} group {group}")
    out = np.full(LAYER_SHAPES[layer], np.nan, dtype=np.result_type(blocks[0].block, float))
    for p in blocks:
        out[p.w_rows, p.w_cols] = p.block
    return out


# ----------------------------------------------------------------------------- conductances
def _check_window(levels: int, g_min: float, g_max: float) -> None:
    if levels < 2 or not 0 <= g_min < g_max:
        raise CircuitnnError(f"need levels >= 2 and 0 <= g_min < g_max (got {levels}, {g_min}, "
                             f"{g_max})")


def conductance_unit(levels: int = DEVICE_LEVELS, g_min: float = DEFAULT_G_MIN,
                     g_max: float = DEFAULT_G_MAX) -> float:
    """Conductance step between adjacent device states = conductance of one weight level."""
    _check_window(levels, g_min, g_max)
    return (g_max - g_min) / (levels - 1)


def weights_to_conductance(w_q: np.ndarray, levels: int = DEVICE_LEVELS,
                           g_min: float = DEFAULT_G_MIN, g_max: float = DEFAULT_G_MAX
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Integer weight levels in -(levels-1)..(levels-1) -> (G_plus, G_minus) in siemens."""
    _check_window(levels, g_min, g_max)
    w = np.asarray(w_q)
    if w.size and (not np.all(np.equal(np.mod(w, 1), 0)) or np.abs(w).max() > levels - 1):
        raise CircuitnnError(f"weight levels must be integers in -{levels - 1}..{levels - 1}")
    unit = (g_max - g_min) / (levels - 1)
    g_plus = g_min + unit * np.clip(w, 0, None)
    g_minus = g_min + unit * np.clip(-w, 0, None)
    return g_plus.astype(float), g_minus.astype(float)


def conductance_to_weights(g_plus: np.ndarray, g_minus: np.ndarray,
                           levels: int = DEVICE_LEVELS, g_min: float = DEFAULT_G_MIN,
                           g_max: float = DEFAULT_G_MAX, rounded: bool = False) -> np.ndarray:
    """Weight levels (G+ - G-) / unit; float (e.g. for programmed, noisy cells) or rounded."""
    w = (np.asarray(g_plus, float) - np.asarray(g_minus, float)) / conductance_unit(
        levels, g_min, g_max)
    return np.rint(w).astype(int) if rounded else w


def pe_conductances(mapping: Mapping, levels: int = DEVICE_LEVELS, g_min: float = DEFAULT_G_MIN,
                    g_max: float = DEFAULT_G_MAX) -> np.ndarray:
    """Conductance of every cell, shape (n_pes, rows, cols); blocks must hold integer levels.
    Columns alternate G+ / G-; unused cells are g_min."""
    g = np.full((mapping.n_pes, mapping.pe_rows, mapping.pe_cols), float(g_min))
    for p in mapping.placements:
        gp, gm = weights_to_conductance(p.block, levels, g_min, g_max)
        g[p.pe, p.rows, p.cols.start:p.cols.stop:2] = gp
        g[p.pe, p.rows, p.cols.start + 1:p.cols.stop:2] = gm
    return g


# ----------------------------------------------------------------------------- reports
def describe_mapping(mapping: Mapping) -> str:
    """A text table: every block of every PE and the cell utilisation."""
    lines = [f"{mapping.n_pes} PEs of {mapping.pe_rows} x {mapping.pe_cols} 1T1R cells; "
             f"{mapping.n_groups} convolver group(s); {mapping.pes_used} PEs used"]
    total = 0
    for pe in range(mapping.n_pes):
        blocks = [p for p in mapping.placements if p.pe == pe]
        cells = sum((p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start) for p in blocks)
        total += cells
        lines.append(f"PE {pe}: {cells:5d} / {mapping.pe_rows * mapping.pe_cols} cells used"
                     + ("" if blocks else " (free)"))
        for p in blocks:
            grp = f" group {p.group}" if p.layer != "FC" else ""
            lines.append(
                f"  {p.layer}{grp}: rows {p.rows.start:3d}:{p.rows.stop:<3d} "
                f"cols {p.cols.start:2d}:{p.cols.stop:<2d} <- inputs "
                f"{p.w_rows.start}:{p.w_rows.stop}, outputs {p.w_cols.start}:{p.w_cols.stop}")
    lines.append(f"total {total} cells = {total // 2} weights "
                 f"(C1 72 + C3 864 per group, FC 1920)")
    return "\n".join(lines)


_LAYER_COLOURS = {"C1": (0.12, 0.47, 0.71), "C3": (1.0, 0.50, 0.05), "FC": (0.17, 0.63, 0.17)}


def mapping_image(mapping: Mapping) -> np.ndarray:
    """RGB image (n_pes, rows, cols, 3): white = unused; layer colour, alternating shade per
    output channel; G- columns darker than G+."""
    img = np.ones((mapping.n_pes, mapping.pe_rows, mapping.pe_cols, 3))
    for p in mapping.placements:
        base = np.array(_LAYER_COLOURS[p.layer])
        for j in range(p.w_cols.stop - p.w_cols.start):
            kernel = p.w_cols.start + j
            shade = 1.0 if kernel % 2 == 0 else 0.75
            for sign, c in ((0, 1.0), (1, 0.8)):
                col = p.cols.start + 2 * j + sign
                img[p.pe, p.rows, col] = np.clip(base * shade * c + 0.15 * (sign == 0), 0, 1)
    return img


def plot_mapping(mapping: Mapping, path: str | os.PathLike) -> str:
    """Save an 8-panel PNG of which layer/kernel occupies each cell of each PE."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    img = mapping_image(mapping)
    fig, axes = plt.subplots(1, mapping.n_pes, figsize=(1.3 * mapping.n_pes + 1, 6),
                             sharey=True)
    for pe, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(img[pe], aspect="auto", interpolation="nearest")
        ax.set_title(f"PE {pe}", fontsize=9)
        ax.set_xticks([0, 8, 15])
        ax.set_xlabel("source line", fontsize=8)
        for p in (q for q in mapping.placements if q.pe == pe):
            ax.add_patch(Rectangle(
                (p.cols.start - 0.5, p.rows.start - 0.5), p.cols.stop - p.cols.start,
                p.rows.stop - p.rows.start, fill=False, lw=0.8, ec="k"))
            label = f"{p.layer}\nk{p.w_cols.start}-{p.w_cols.stop - 1}"
            ax.text((p.cols.start + p.cols.stop) / 2 - 0.5, (p.rows.start + p.rows.stop) / 2,
                    label, ha="center", va="center", fontsize=6)
    np.atleast_1d(axes)[0].set_ylabel("input (bit) line")
    fig.legend(handles=[Patch(color=c, label=n) for n, c in _LAYER_COLOURS.items()],
               loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8,
               frameon=False)
    fig.suptitle(f"CNN weights on {mapping.n_pes} PEs (128 x 16 1T1R, differential pairs: "
                 f"G+ light / G- dark), {mapping.n_groups} convolver group(s)", fontsize=9)
    save_figure(fig, path)
    return str(path)

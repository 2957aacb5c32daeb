"""Tile figures: the wire convention and the IR-drop pattern of a 128 x 16 tile (nodal solver).

`circuitnn demo` draws them into its output folder (`make figures` refreshes figures/).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from circuitnn.devices import builtin_card  # noqa: E402
from circuitnn.io import save_figure  # noqa: E402
from circuitnn.tile import TileSpec  # noqa: E402
from circuitnn.tile.nodal import NodalSolver  # noqa: E402


def wire_convention(path: str | Path) -> Path:
    """Draw the row/column wire convention of a tile."""
    rows, cols = 3, 3
    fig, ax = plt.subplots(figsize=(7.5, 6))
    ax.set_axis_off()
    x = lambda j: 2.0 + 2.0 * j  # noqa: E731
    y = lambda i: 8.0 - 2.2 * i  # noqa: E731
    for i in range(rows):
        ax.plot([0.6, x(cols - 1)], [y(i)] * 2, color="tab:blue", lw=1.5)
        ax.annotate(f"V{i}", (0.1, y(i)), va="center", fontsize=10)
        ax.plot([0.5], [y(i)], "o", color="tab:blue")
        for j in range(cols):
            xs = (x(j - 1) if j else 0.6) + 0.0
            ax.add_patch(plt.Rectangle(((xs + x(j)) / 2 - 0.25, y(i) - 0.1), 0.5, 0.2,
                                       color="tab:blue", alpha=0.4))
            ax.text((xs + x(j)) / 2, y(i) + 0.2, "r_row", ha="center", fontsize=7)
            # cell: memristor + transistor drawn as a diagonal from row to column line
            cx = x(j) + 0.6
            ax.plot([x(j), x(j), cx], [y(i), y(i) - 0.5, y(i) - 0.5], color="k", lw=1)
            ax.add_patch(plt.Rectangle((x(j) - 0.12, y(i) - 0.45), 0.24, 0.35, color="tab:red"))
            ax.plot([cx, cx], [y(i) - 0.5, y(i) - 1.0], color="k", lw=1)
            ax.text(cx + 0.08, y(i) - 0.8, "T", fontsize=8, color="tab:green")
            ax.plot([cx, x(j) + 0.9], [y(i) - 1.0, y(i) - 1.0], color="k", lw=1)
    for j in range(cols):
        xc = x(j) + 0.9
        ax.plot([xc, xc], [y(0) - 1.0, y(rows - 1) - 2.2], color="tab:orange", lw=1.5)
        for i in range(rows):
            ym = y(i) - 1.6  # between this cell's tap and the next row line
            ax.add_patch(plt.Rectangle((xc - 0.1, ym - 0.25), 0.2, 0.5,
                                       color="tab:orange", alpha=0.4))
            ax.text(xc + 0.15, ym, "r_col", fontsize=7)
        ax.plot([xc], [y(rows - 1) - 2.3], "v", color="tab:orange", ms=9)
        ax.text(xc, y(rows - 1) - 2.8, f"I{j}\n(0 V)", ha="center", fontsize=9)
    ax.text(0.1, 9.3, "Input (row/bit) line i: driver at the column-0 end, one r_row segment "
            "before each cell.\nOutput (column/source) line j: one r_col segment after each "
            "cell, sensed\nat a virtual ground past the last row. Red: memristor (+ at row "
            "line); T: access NMOS\n(gate on word line i, driven like the input line with "
            "r_wl per segment).", fontsize=8.5, va="bottom")
    ax.set_xlim(0, 8.5)
    ax.set_ylim(0.5, 10.6)
    return save_figure(fig, path)


def ir_drop(path: str | Path) -> dict[str, float]:
    """Draw the IR-drop pattern of the default 128 x 16 tile; returns its summary numbers."""
    g = np.random.default_rng(2020).uniform(5e-6, 20e-6, (128, 16))
    spec = TileSpec(g, device=builtin_card())
    sol = NodalSolver(spec)
    v = np.full((1, 128), spec.v_read)
    x = sol.node_voltages(v)
    i = sol.column_currents(x)[0]
    ideal = (v @ g)[0]
    net = sol.net
    v_cell = (x[0, net.top] - x[0, net.mid]).reshape(128, 16)  # across the memristor
    v_col = x[0, net.bot].reshape(128, 16)
    fig, axs = plt.subplots(1, 3, figsize=(13, 4.2))
    axs[0].bar(np.arange(16), 100 * (i - ideal) / ideal, color="tab:red")
    axs[0].set_xlabel("column j")
    axs[0].set_ylabel("(I - V.G) / V.G  (%)")
    axs[0].set_title("column current error (all rows 0.2 V)", fontsize=9)
    im = axs[1].imshow(1e3 * (spec.v_read - v_cell), aspect="auto", cmap="viridis")
    axs[1].set_xlabel("column j")
    axs[1].set_ylabel("row i")
    axs[1].set_title("memristor voltage deficit, 0.2 V - V_cell (mV)", fontsize=9)
    fig.colorbar(im, ax=axs[1])
    im2 = axs[2].imshow(1e3 * v_col, aspect="auto", cmap="magma")
    axs[2].set_xlabel("column j")
    axs[2].set_title("column-line voltage (mV)", fontsize=9)
    fig.colorbar(im2, ax=axs[2])
    fig.suptitle("128 x 16 1T1R tile, built-in HfOx card, G ~ U(5, 20) uS, r_row = r_col = "
                 "2 ohm, W/L = 0.5/0.13 um, V_gate = 1.2 V (nodal solver)", fontsize=9)
    save_figure(fig, path)
    err = (i - ideal) / ideal
    deficit = spec.v_read - v_cell
    return {"column_error_min_pct": 100 * float(err.min()),
            "column_error_max_pct": 100 * float(err.max()),
            "cell_deficit_min_mV": 1e3 * float(deficit.min()),
            "cell_deficit_max_mV": 1e3 * float(deficit.max())}

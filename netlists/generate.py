"""Write the example read netlists of this folder (deterministic: fixed seeds, default parameters).

Run: .venv/bin/python netlists/generate.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from circuitnn.devices import builtin_card
from circuitnn.io import write_text
from circuitnn.tile import TileSpec
from circuitnn.tile.netlist import read_netlist

HERE = Path(__file__).resolve().parent
G_WINDOW = (5e-6, 20e-6)  # S: programmed conductances, inside the built-in card's range


def examples() -> dict[str, tuple[TileSpec, np.ndarray]]:
    """name -> (spec, inputs) of each example netlist."""
    rng = np.random.default_rng(2020)
    g = rng.uniform(*G_WINDOW, (128, 16))
    v = np.stack([np.full(128, 0.2), np.zeros(128), 0.2 * rng.integers(0, 2, 128),
                  rng.uniform(0, 0.2, 128)])
    g4 = np.random.default_rng(4).uniform(*G_WINDOW, (4, 4))
    v4 = np.array([[0.2, 0.2, 0.2, 0.2], [0.2, 0.0, 0.1, 0.05]])
    return {
        "tile_128x16_1t1r": (TileSpec(g, device=builtin_card()), v),
        "tile_4x4_passive_ohmic": (TileSpec(g4, cell="passive", device=None), v4),
    }


def main() -> None:
    for name, (spec, v) in examples().items():
        path = write_text(HERE / f"{name}.cir", read_netlist(spec, v, title=name))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""`read(spec, V, engine="surrogate")`: the surrogate as a tile-read engine, with a tile cache.

Programming a tile (computing its matrices) takes about a second for 128 x 16; reads of the same
spec reuse it (cache keyed by the conductances and every spec setting, up to `CACHE_SIZE`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.surrogate.card import SurrogateCard, find_card, fit_hint
from circuitnn.surrogate.model import SurrogateTile
from circuitnn.surrogate.physics import settings_key
from circuitnn.tile.spec import TileSpec

CACHE_SIZE = 16
_CACHE: OrderedDict[tuple, tuple[SurrogateTile, SurrogateCard]] = OrderedDict()


def _key(spec: TileSpec, card: str | Path | None) -> tuple:
    h = hashlib.blake2b(np.ascontiguousarray(spec.conductance).tobytes(), digest_size=16)
    return (h.hexdigest(), settings_key(spec), str(card))


def programmed(spec: TileSpec, card: str | Path | SurrogateCard | None = None
               ) -> tuple[SurrogateTile, SurrogateCard]:
    """The programmed surrogate tile for `spec` and the card used (refuses uncovered specs)."""
    if isinstance(card, SurrogateCard):
        why = card.why_not(spec)
        if why is not None:
            raise CircuitnnError(f"surrogate {card.name} does not cover this tile ({why}); "
                                 f"{fit_hint(spec)}")
        return SurrogateTile(spec, card.theta), card
    key = _key(spec, card)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    if card is None:
        c = find_card(spec)
    else:
        c = SurrogateCard.load(card)
        why = c.why_not(spec)
        if why is not None:
            raise CircuitnnError(f"surrogate {c.name} does not cover this tile ({why}); "
                                 f"{fit_hint(spec)}")
    tile = SurrogateTile(spec, c.theta)
    _CACHE[key] = (tile, c)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return tile, c


def read_surrogate(spec: TileSpec, v: np.ndarray, card: str | Path | None = None,
                   binary: bool | None = None) -> np.ndarray:
    """Engine function: column currents (batch, cols) for validated inputs v (batch, rows)."""
    tile, c = programmed(spec, card)
    c.check_inputs(v)
    return tile.read(v, binary=binary)


"""The surrogate as a tile-read engine (`read_surrogate`), with a cache of programmed tiles.

A spec's way into the surrogate is one pass (`programmed`): its key (the conductances' digest,
`physics.settings_key`, the card asked for), then the card found and checked against the spec,
the tile's physics computed (`physics.tile_parts`: cell curves, network, wire kernels) and the
tile assembled with the card's theta, each once. Programming a 128 x 16 tile takes about a
second; reads of the same spec reuse it (up to `CACHE_SIZE` tiles).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.surrogate.card import SurrogateCard, find_card, fit_hint
from circuitnn.surrogate.model import SurrogateTile
from circuitnn.surrogate.physics import settings_key, tile_parts
from circuitnn.tile.spec import TileSpec

CACHE_SIZE = 16
_CACHE: OrderedDict[tuple, tuple[SurrogateTile, SurrogateCard]] = OrderedDict()
_TILE_KEYS: WeakKeyDictionary[TileSpec, tuple] = WeakKeyDictionary()  # (G digest, settings)


def _card_for(spec: TileSpec, card: str | Path | None) -> SurrogateCard:
    """The card at `card` (it must cover the spec), else the first shipped or cached one that
    covers it."""
    if card is None:
        return find_card(spec)
    c = SurrogateCard.load(card)
    why = c.why_not(spec)
    if why is not None:
        raise CircuitnnError(f"surrogate {c.name} does not cover this tile ({why}); "
                             f"{fit_hint(spec)}")
    return c


def programmed(spec: TileSpec, card: str | Path | None = None
               ) -> tuple[SurrogateTile, SurrogateCard]:
    """The programmed surrogate tile for `spec` and the card used (refuses uncovered specs)."""
    tile_key = _TILE_KEYS.get(spec)
    if tile_key is None:  # once per spec object (a spec is immutable)
        digest = hashlib.blake2b(np.ascontiguousarray(spec.conductance).tobytes(), digest_size=16)
        tile_key = _TILE_KEYS[spec] = (digest.hexdigest(), settings_key(spec))
    settings = tile_key[1]
    key = (*tile_key, None if card is None else str(card))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    c = _card_for(spec, card)
    tile = SurrogateTile(spec, c.theta, tile_parts(spec, settings))
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

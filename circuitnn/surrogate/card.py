"""Surrogate cards: calibrated global factors plus the validity domain, as plain JSON.

A card answers for one device card (identified by a hash of its model and parameter values),
one cell kind and tile geometry, ranges of wire and driver resistance, conductance and input
voltage, and exact transistor, gate, sense and gmin settings. `check_domain` refuses every spec
outside it with one line saying how to calibrate a card that covers it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from circuitnn.cache import cache_dir
from circuitnn.devices import DEVICE_MODELS_DIR, ModelCard
from circuitnn.devices.card import parameters_hash
from circuitnn.errors import CircuitnnError
from circuitnn.io import write_json
from circuitnn.surrogate.model import THETA_NAMES
from circuitnn.tile.spec import TileSpec

SCHEMA = "circuitnn.surrogate/2"  # 2: theta gains "kink" (asymmetric I-V at 0 V)
_OLD_SCHEMAS = ("circuitnn.surrogate/1",)
CARD_GLOB = "surrogate-*.json"
CACHE_SUB = "surrogate"  # sub-folder of the user cache holding calibrated cards
_REL = 1e-9


def device_hash(card: ModelCard) -> str:
    """A surrogate card's record of its device card: the first 16 digits of `parameters_hash`."""
    return parameters_hash(card)[:16]


def fixed_settings(spec: TileSpec) -> dict[str, Any]:
    """The spec settings a card must match exactly."""
    out: dict[str, Any] = {
        "cell": spec.cell,
        "v_gate": spec.v_gate,
        "transistor": asdict(spec.transistor),
        "sense": spec.sense,
        "gmin": spec.gmin,
        "v_read": float(spec.v_read),
    }
    if spec.sense == "tia":
        out["tia"] = asdict(spec.tia)
    return out


@dataclass
class SurrogateCard:
    """Calibrated factors theta, the validity domain, provenance and fit errors."""

    theta: dict[str, list[float]]
    domain: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path else "surrogate card"

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "theta": self.theta, "domain": self.domain,
                "provenance": self.provenance, "fit": self.fit}

    def save(self, path: str | Path) -> Path:
        self.path = Path(path)
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> SurrogateCard:
        """Read and check a card file."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise CircuitnnError(f"{path}: surrogate card not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CircuitnnError(f"{path}: cannot read surrogate card ({exc})") from None
        if isinstance(obj, dict) and obj.get("schema") in _OLD_SCHEMAS:
            raise CircuitnnError(f"{path}: surrogate card of an older format "
                                 f"({obj['schema']}, without the kink term); calibrate it "
                                 "again with `circuitnn surrogate fit`")
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            raise CircuitnnError(f"{path}: not a surrogate card (schema must be {SCHEMA!r})")
        theta = obj.get("theta")
        if not isinstance(theta, dict) or set(theta) != set(THETA_NAMES) or not all(
                _theta_ok(v) for v in theta.values()):
            raise CircuitnnError(f"{path}: 'theta' must give, for each of "
                                 f"{', '.join(THETA_NAMES)}, [a, b_row, b_col] finite numbers")
        dom = obj.get("domain")
        need = ("device_hash", "shape", "r_row", "r_col", "r_driver", "conductance", "inputs",
                "fixed")
        if not isinstance(dom, dict) or any(k not in dom for k in need):
            raise CircuitnnError(f"{path}: 'domain' must have {', '.join(need)}")
        return cls(theta, dom,
                   dict(obj.get("provenance", {})), dict(obj.get("fit", {})), path)

    # --- validity ----------------------------------------------------------------------------
    def why_not(self, spec: TileSpec) -> str | None:
        """None when the card covers `spec`, else the first reason it does not."""
        d = self.domain
        if spec.device is None:
            return "the tile has ohmic cells (no device card)"
        if device_hash(spec.device) != d["device_hash"]:
            return f"device card differs (hash {device_hash(spec.device)} != {d['device_hash']})"
        if list(spec.shape) != list(d["shape"]):
            return f"geometry {spec.rows}x{spec.cols} != calibrated {d['shape'][0]}x{d['shape'][1]}"
        for name in ("r_row", "r_col", "r_driver"):
            lo, hi = d[name]
            val = getattr(spec, name)
            if not lo * (1 - _REL) <= val <= hi * (1 + _REL) + 1e-15:
                return f"{name} = {val:g} ohm outside calibrated [{lo:g}, {hi:g}]"
        if spec.row_mask is not None and not spec.mask.all():
            return "rows are masked off (row_mask); calibrate with all rows selected"
        g = spec.conductance
        lo, hi = d["conductance"]
        if g.min() < lo * (1 - 1e-6) or g.max() > hi * (1 + 1e-6):
            return (f"conductances [{g.min():.3g}, {g.max():.3g}] S outside calibrated "
                    f"[{lo:.3g}, {hi:.3g}] S")
        fixed = fixed_settings(spec)
        for key, want in d["fixed"].items():
            if not _same(fixed.get(key), want):
                return f"{key} = {fixed.get(key)} differs from calibrated {want}"
        if set(fixed) - set(d["fixed"]):
            return f"{sorted(set(fixed) - set(d['fixed']))[0]} is not calibrated"
        return None

    def check_inputs(self, v) -> None:
        """Refuse input voltages outside the calibrated range."""
        lo, hi = self.domain["inputs"]
        vmin, vmax = float(v.min()), float(v.max())
        if vmin < lo - 1e-12 or vmax > hi * (1 + 1e-9) + 1e-12:
            raise CircuitnnError(
                f"surrogate {self.name}: inputs [{vmin:g}, {vmax:g}] V outside calibrated "
                f"[{lo:g}, {hi:g}] V; use engine='nodal' or 'ngspice' for them")


def _theta_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=_REL, abs_tol=1e-15)
    return a == b


def fit_hint(spec: TileSpec) -> str:
    """The command that calibrates a card for this spec's geometry and wires."""
    return (f"calibrate one with `circuitnn surrogate fit --rows {spec.rows} --cols {spec.cols} "
            f"--r-max {max(spec.r_row, spec.r_col, 0.5):g}` (see --help for the other settings)")


def card_folders() -> list[Path]:
    """Where surrogate cards are looked for: the shipped folder, then the user cache."""
    return [DEVICE_MODELS_DIR, cache_dir(CACHE_SUB, create=False)]


def find_card(spec: TileSpec, cards_dir: str | Path | None = None) -> SurrogateCard:
    """The first card covering `spec` under `cards_dir`, by default in the shipped folder
    (device_models/) and then the user cache (where `circuitnn.surrogate.auto` puts cards)."""
    folders = [Path(cards_dir)] if cards_dir is not None else card_folders()
    reasons = []
    for folder in folders:
        for path in sorted(folder.glob(CARD_GLOB)) if folder.is_dir() else []:
            try:
                card = SurrogateCard.load(path)
            except CircuitnnError as exc:  # e.g. a cached card of an older format
                reasons.append(f"{path.name}: {exc}")
                continue
            why = card.why_not(spec)
            if why is None:
                return card
            reasons.append(f"{path.name}: {why}")
    where = " or ".join(str(f) for f in folders)
    detail = "; ".join(reasons[:2]) if reasons else f"no {CARD_GLOB} in {where}"
    raise CircuitnnError(f"no calibrated surrogate covers this tile ({detail}); {fit_hint(spec)}")

"""Model cards: a device model's name and parameters as plain JSON, with a schema check on load.

A card is data, never code: the equations live in `circuitnn.devices.models` (one definition per
model); the numbers of one device (fitted or published) live in a card.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_json

SCHEMA = "circuitnn.card/1"
_TOP_KEYS = {"schema", "model", "parameters", "provenance", "fit", "variation", "operating",
             "notes"}


@dataclass
class Parameter:
    """One parameter value with its unit and, when fitted, its standard error."""

    value: float
    unit: str = ""
    stderr: float | None = None
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit}
        if self.stderr is not None:
            out["stderr"] = self.stderr
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class ModelCard:
    """A compact model's parameters plus provenance, fit quality and variation statistics."""

    model: str
    parameters: dict[str, Parameter]
    provenance: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    variation: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    #: how the read voltage and window were chosen (`circuitnn.devices.operating`); I-V cards
    operating: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """Parameter name -> value (SI units as given on the card)."""
        return {k: p.value for k, p in self.parameters.items()}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "model": self.model,
            "parameters": {k: p.to_json() for k, p in self.parameters.items()},
            "provenance": self.provenance,
            "fit": self.fit,
            "variation": self.variation,
        }
        if self.operating:
            out["operating"] = self.operating
        if self.notes:
            out["notes"] = self.notes
        return out

    def save(self, path: str | Path) -> Path:
        """Write the card as JSON (atomically)."""
        return write_json(path, self.to_json())

    @classmethod
    def from_json(cls, obj: Any, where: str = "card") -> ModelCard:
        """Build a card from parsed JSON, checking the schema; errors name `where`."""
        if not isinstance(obj, dict):
            raise CircuitnnError(f"{where}: a model card must be a JSON object")
        if obj.get("schema") != SCHEMA:
            raise CircuitnnError(f"{where}: schema must be {SCHEMA!r}, got {obj.get('schema')!r}")
        unknown = set(obj) - _TOP_KEYS
        if unknown:
            raise CircuitnnError(f"{where}: unknown keys {sorted(unknown)}")
        model = obj.get("model")
        if not isinstance(model, str) or not model:
            raise CircuitnnError(f"{where}: 'model' must be a non-empty string")
        raw = obj.get("parameters")
        if not isinstance(raw, dict) or not raw:
            raise CircuitnnError(f"{where}: 'parameters' must be a non-empty object")
        params: dict[str, Parameter] = {}
        for name, p in raw.items():
            if not isinstance(p, dict) or "value" not in p:
                raise CircuitnnError(f"{where}: parameter {name!r} needs a 'value'")
            value = p["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value
            ):
                raise CircuitnnError(f"{where}: parameter {name!r} must be a finite number")
            stderr = p.get("stderr")
            bad = isinstance(stderr, bool) or not isinstance(stderr, (int, float))
            if stderr is not None and bad:
                raise CircuitnnError(f"{where}: stderr of {name!r} must be a number or null")
            params[name] = Parameter(float(value), str(p.get("unit", "")),
                                     None if stderr is None else float(stderr),
                                     str(p.get("description", "")))
        for key in ("provenance", "fit", "variation", "operating"):
            if not isinstance(obj.get(key, {}), dict):
                raise CircuitnnError(f"{where}: '{key}' must be an object")
        return cls(model, params, dict(obj.get("provenance", {})), dict(obj.get("fit", {})),
                   dict(obj.get("variation", {})), str(obj.get("notes", "")),
                   dict(obj.get("operating", {})))

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read and check a card file."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise CircuitnnError(f"{path}: model card not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CircuitnnError(f"{path}: cannot read model card ({exc})") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})"
            raise CircuitnnError(msg) from None
        return cls.from_json(obj, where=str(path))


def parameters_hash(card: ModelCard) -> str:
    """The identity of a card's device: sha256 (hex) of its model name and parameter values
    (what its operating point, derived pulse law and surrogate cards depend on)."""
    blob = json.dumps({"model": card.model, "values": card.values()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()

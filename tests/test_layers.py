"""Layers point one way: no module imports a higher layer (imports inside functions included)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "circuitnn"

# lowest first; a module may import its own layer and any lower one
LAYERS = [
    {"errors", "io", "reference", "datasets", "cache"},
    {"devices"},
    {"spice"},
    {"tile"},
    {"fitting"},
    {"surrogate"},
    {"periphery"},
    {"network"},
    {"training"},
    {"mcnn"},
    {"demo", "cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else RANK["cli"]


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("circuitnn.")}


def test_every_layer_is_known():
    top = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"}
    assert top <= set(RANK), f"add {sorted(top - set(RANK))} to LAYERS"


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = "circuitnn." + ".".join(path.relative_to(PKG).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        # each layer's command-line module sits on top of its layer
        own = layer_of(module) if not module.endswith(".cli") else RANK["cli"]
        for imp in imports(path):
            if imp == "circuitnn.device_models":
                continue
            if layer_of(imp) > own:
                bad.append(f"{module} -> {imp}")
    assert not bad, "imports of higher layers: " + ", ".join(bad)

"""Layers point one way: no module imports a higher layer (imports inside functions included) or
names one in a string ("module:attr" targets, dotted module names: what a lazy registry would
import), none is exempt, and no two modules import each other."""

import ast
import re
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
    {"search"},
    {"mcnn"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else RANK["cli"]


def imports(path: Path, runtime: bool = False) -> set[str]:
    """circuitnn modules that `path` imports (`from package import module` as the module);
    `runtime`: without the imports under `if TYPE_CHECKING:` (annotations only)."""
    tree = ast.parse(path.read_text())
    if runtime:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names
                       if is_module(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("circuitnn.")}


DOTTED = re.compile(r"circuitnn(?:\.\w+)+")


def named_in_strings(source: str) -> set[str]:
    """circuitnn modules named in the strings of `source` (docstrings excepted): the longest
    dotted prefix of each "circuitnn.x.y[:attr]" that is a module."""
    tree = ast.parse(source)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)}
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            for match in DOTTED.finditer(node.value):
                parts = match.group(0).split(".")
                out.update(next(([".".join(parts[:k])] for k in range(len(parts), 1, -1)
                                 if is_module(".".join(parts[:k]))), []))
    return out


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


def module_name(path: Path) -> str:
    module = "circuitnn." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    return module.removesuffix(".__init__")


def test_every_layer_is_known():
    top = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"}
    assert top <= set(RANK), f"add {sorted(top - set(RANK))} to LAYERS"


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = module_name(path)
        for imp in imports(path) | named_in_strings(path.read_text()):
            if imp == "circuitnn.device_models":
                continue
            if layer_of(imp) > layer_of(module):
                bad.append(f"{module} -> {imp}")
    assert not bad, "imports of higher layers: " + ", ".join(bad)


def test_strings_naming_modules_are_seen():
    # a registry naming its engines as "module:attr" strings hides imports from the AST
    code = '''"""Docstrings may mention circuitnn.network.engines."""
ENGINES = {"surrogate": "circuitnn.surrogate.engine:read_surrogate"}
HINT = f"see circuitnn.mcnn.run.RunConfig or {1}"
'''
    assert named_in_strings(code) == {"circuitnn.surrogate.engine", "circuitnn.mcnn.run"}


def test_no_import_cycle_between_modules():
    # a package's __init__ re-exporting its own modules is not an edge of the graph
    graph = {module_name(p): {i for i in imports(p, runtime=True)
                              if not (i == module_name(p) or (p.name == "__init__.py"
                                                              and i.startswith(module_name(p))))}
             for p in PKG.rglob("*.py")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)

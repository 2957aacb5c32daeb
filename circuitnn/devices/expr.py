"""A small expression language in which each compact model's equations are written once.

An expression is a string of Python syntax restricted to arithmetic, comparisons and a fixed set
of functions. The same parsed expression is compiled to a vectorised numpy function and rendered
as an ngspice behavioural-source expression, so the Python and SPICE versions of a model cannot
drift apart. `where(c, a, b)` is the only conditional (ngspice: `c ? a : b`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from functools import cache

import numpy as np

from circuitnn.errors import CircuitnnError

# name -> (numpy implementation, ngspice spelling)
FUNCTIONS: dict[str, tuple[Callable, str]] = {
    "exp": (np.exp, "exp"),
    "log": (np.log, "ln"),
    "sqrt": (np.sqrt, "sqrt"),
    "sinh": (np.sinh, "sinh"),
    "cosh": (np.cosh, "cosh"),
    "tanh": (np.tanh, "tanh"),
    "abs": (np.abs, "abs"),
    "min": (np.minimum, "min"),
    "max": (np.maximum, "max"),
    "pow": (np.power, "pow"),
    "where": (np.where, ""),
}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<="}
_LOGIC = {ast.And: "&&", ast.Or: "||"}


@cache
def parse(text: str) -> ast.expr:
    """Parse and check an expression; only the allowed syntax passes."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise CircuitnnError(f"bad model expression {text!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            (ast.BinOp, ast.UnaryOp, ast.USub, ast.UAdd, ast.Compare, ast.BoolOp, ast.Call,
             ast.Name, ast.Constant, ast.Load, *_BINOPS, *_CMPOPS, *_LOGIC),
        )
        if not ok:
            kind = type(node).__name__
            raise CircuitnnError(f"bad model expression {text!r}: {kind} not allowed")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords
        ):
            raise CircuitnnError(f"bad model expression {text!r}: unknown function")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise CircuitnnError(f"bad model expression {text!r}: only numeric constants")
        if isinstance(node, ast.Compare) and len(node.ops) != 1:
            raise CircuitnnError(f"bad model expression {text!r}: chained comparison")
    return tree


def names(text: str) -> set[str]:
    """The free names an expression uses."""
    return {n.id for n in ast.walk(parse(text)) if isinstance(n, ast.Name)} - set(FUNCTIONS)


def substitute(text: str, definitions: Mapping[str, str]) -> ast.expr:
    """Parse `text` and inline named sub-expressions (recursively, in definition order)."""

    class Inline(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.expr:
            if node.id in definitions:
                return substitute(definitions[node.id], definitions)
            return node

    import copy

    return Inline().visit(copy.deepcopy(parse(text)))


def evaluate(text: str, env: Mapping[str, object]) -> np.ndarray:
    """Evaluate an expression with numpy; `env` maps names to scalars or arrays."""
    return _compile(text)(env)


@cache
def _compile(text: str) -> Callable[[Mapping[str, object]], np.ndarray]:
    code = compile(ast.Expression(_to_numpy(parse(text))), f"<model:{text[:40]}>", "eval")
    namespace = {f"_f_{k}": f for k, (f, _) in FUNCTIONS.items()}

    def run(env: Mapping[str, object]) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return eval(code, {"__builtins__": {}, **namespace}, dict(env))  # noqa: S307

    return run


def _to_numpy(node: ast.expr) -> ast.expr:
    """Rewrite function names to the numpy namespace and boolean ops to element-wise ones."""

    class Rewrite(ast.NodeTransformer):
        def visit_Call(self, n: ast.Call) -> ast.expr:
            self.generic_visit(n)
            n.func = ast.Name(id=f"_f_{n.func.id}", ctx=ast.Load())
            return n

        def visit_BoolOp(self, n: ast.BoolOp) -> ast.expr:
            self.generic_visit(n)
            op = ast.BitAnd() if isinstance(n.op, ast.And) else ast.BitOr()
            out = n.values[0]
            for v in n.values[1:]:
                out = ast.BinOp(left=out, op=op, right=v)
            return out

    import copy

    return ast.fix_missing_locations(Rewrite().visit(copy.deepcopy(node)))


def to_spice(node: ast.expr | str, rename: Mapping[str, str]) -> str:
    """Render an expression in ngspice B-source syntax; `rename` maps every free name to SPICE."""
    if isinstance(node, str):
        node = parse(node)
    r = lambda n: to_spice(n, rename)  # noqa: E731
    if isinstance(node, ast.Constant):
        return format(float(node.value), ".15g")
    if isinstance(node, ast.Name):
        if node.id not in rename:
            raise CircuitnnError(f"model expression uses undefined name {node.id!r}")
        return rename[node.id]
    if isinstance(node, ast.UnaryOp):
        return f"({'-' if isinstance(node.op, ast.USub) else '+'}{r(node.operand)})"
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            return f"pow({r(node.left)},{r(node.right)})"
        return f"({r(node.left)}{_BINOPS[type(node.op)]}{r(node.right)})"
    if isinstance(node, ast.Compare):
        return f"({r(node.left)}{_CMPOPS[type(node.ops[0])]}{r(node.comparators[0])})"
    if isinstance(node, ast.BoolOp):
        return "(" + _LOGIC[type(node.op)].join(r(v) for v in node.values) + ")"
    if isinstance(node, ast.Call):
        name = node.func.id
        args = [r(a) for a in node.args]
        if name == "where":
            return f"({args[0]} ? {args[1]} : {args[2]})"
        return f"{FUNCTIONS[name][1]}({','.join(args)})"
    raise CircuitnnError(f"cannot render {type(node).__name__} for ngspice")

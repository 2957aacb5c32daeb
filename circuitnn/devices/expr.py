"""A small expression language in which each compact model's equations are written once.

An expression is a string of Python syntax restricted to arithmetic, comparisons and a fixed set
of functions. The same parsed expression is compiled to a vectorised numpy function (and, through
`Kernel`, with numba for the transient integrator) and rendered as an ngspice behavioural-source
expression or a Verilog-A expression, so the Python, SPICE and Verilog-A versions of a model
cannot drift apart. `where(c, a, b)` is the only conditional (ngspice and Verilog-A:
`c ? a : b`).

`derivative` differentiates an expression symbolically (for the Jacobians of the implicit
integrator and of series-element solves) and `Kernel` compiles several expressions into one
function that computes every common sub-expression once.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from circuitnn.errors import CircuitnnError

# name -> (numpy implementation, ngspice and Verilog-A spelling: both write the natural log `ln`)
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

    return ast.fix_missing_locations(Rewrite().visit(copy.deepcopy(node)))


def to_spice(node: ast.expr | str, rename: Mapping[str, str]) -> str:
    """Render an expression in ngspice B-source syntax; `rename` maps every free name to SPICE."""
    return _render(node, rename, lambda x: format(x, ".15g"), "ngspice")


def to_verilog_a(node: ast.expr | str, rename: Mapping[str, str]) -> str:
    """Render an expression in Verilog-A syntax; `rename` maps every free name to Verilog-A.
    Constants are written as real literals (``2.0``, never the integer ``2``: integer division
    in Verilog-A truncates)."""
    return _render(node, rename, repr, "Verilog-A")


def _render(node: ast.expr | str, rename: Mapping[str, str], number: Callable[[float], str],
            target: str) -> str:
    """The expression in the infix syntax that ngspice and Verilog-A share (function names of
    FUNCTIONS, `where` as `c ? a : b`, `**` as pow), constants written by `number`."""
    if isinstance(node, str):
        node = parse(node)
    r = lambda n: _render(n, rename, number, target)  # noqa: E731
    if isinstance(node, ast.Constant):
        value = float(node.value)
        if not np.isfinite(value):
            raise CircuitnnError(f"cannot render the constant {node.value!r} for {target}")
        return number(value)
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
    raise CircuitnnError(f"cannot render {type(node).__name__} for {target}")


# ----------------------------------------------------------------------------- derivatives


def _const(value: float) -> ast.Constant:
    return ast.Constant(value=float(value))


def _is(node: ast.expr, value: float) -> bool:
    return isinstance(node, ast.Constant) and float(node.value) == value


def _bin(left: ast.expr, op: ast.operator, right: ast.expr) -> ast.expr:
    """A binary operation with the constant folds that keep derivatives short."""
    if isinstance(op, ast.Add):
        if _is(left, 0):
            return right
        if _is(right, 0):
            return left
    elif isinstance(op, ast.Sub):
        if _is(right, 0):
            return left
        if _is(left, 0):
            return ast.UnaryOp(op=ast.USub(), operand=right)
    elif isinstance(op, ast.Mult):
        if _is(left, 0) or _is(right, 0):
            return _const(0)
        if _is(left, 1):
            return right
        if _is(right, 1):
            return left
    elif isinstance(op, ast.Div):
        if _is(left, 0):
            return _const(0)
        if _is(right, 1):
            return left
    return ast.BinOp(left=left, op=op, right=right)


def _call(name: str, *args: ast.expr) -> ast.expr:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def derivative(node: ast.expr | str, var: str) -> ast.expr:
    """d node / d var as an expression (conditions of `where` are treated as constant, so the
    result is the derivative almost everywhere; `abs`, `min`, `max` take one side at a tie)."""
    if isinstance(node, str):
        node = parse(node)
    d = lambda n: derivative(n, var)  # noqa: E731
    add, sub, mul, div = ast.Add(), ast.Sub(), ast.Mult(), ast.Div()
    if isinstance(node, ast.Constant):
        return _const(0)
    if isinstance(node, ast.Name):
        return _const(1 if node.id == var else 0)
    if isinstance(node, ast.UnaryOp):
        inner = d(node.operand)
        if isinstance(node.op, ast.UAdd) or _is(inner, 0):
            return inner
        return ast.UnaryOp(op=ast.USub(), operand=inner)
    if isinstance(node, ast.BinOp):
        a, b = node.left, node.right
        da, db = d(a), d(b)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return _bin(da, node.op, db)
        if isinstance(node.op, ast.Mult):
            return _bin(_bin(da, mul, b), add, _bin(a, mul, db))
        if isinstance(node.op, ast.Div):
            return _bin(_bin(da, sub, _bin(_bin(a, div, b), mul, db)), div, b)
        return _pow_derivative(a, b, da, db)
    if isinstance(node, ast.Call):
        name, args = node.func.id, node.args
        if name == "where":
            da, db = d(args[1]), d(args[2])
            if _is(da, 0) and _is(db, 0):
                return _const(0)
            return _call("where", args[0], da, db)
        if name in ("min", "max"):
            da, db = d(args[0]), d(args[1])
            if _is(da, 0) and _is(db, 0):
                return _const(0)
            cmp = ast.LtE() if name == "min" else ast.GtE()
            test = ast.Compare(left=args[0], ops=[cmp], comparators=[args[1]])
            return _call("where", test, da, db)
        if name == "pow":
            return _pow_derivative(args[0], args[1], d(args[0]), d(args[1]))
        a = args[0]
        da = d(a)
        if _is(da, 0):
            return _const(0)
        outer = {
            "exp": lambda: _call("exp", a),
            "log": lambda: _bin(_const(1), div, a),
            "sqrt": lambda: _bin(_const(0.5), div, _call("sqrt", a)),
            "sinh": lambda: _call("cosh", a),
            "cosh": lambda: _call("sinh", a),
            "tanh": lambda: _bin(_const(1), sub, _call("pow", _call("tanh", a), _const(2))),
        }
        if name == "abs":
            test = ast.Compare(left=a, ops=[ast.GtE()], comparators=[_const(0)])
            return _call("where", test, da, ast.UnaryOp(op=ast.USub(), operand=da))
        return _bin(outer[name](), mul, da)
    raise CircuitnnError(f"cannot differentiate {type(node).__name__}")


def _pow_derivative(a: ast.expr, b: ast.expr, da: ast.expr, db: ast.expr) -> ast.expr:
    mul, sub, add, div = ast.Mult(), ast.Sub(), ast.Add(), ast.Div()
    if _is(db, 0):  # constant exponent: b a^(b-1) a'
        if _is(da, 0):
            return _const(0)
        return _bin(_bin(b, mul, _call("pow", a, _bin(b, sub, _const(1)))), mul, da)
    # general: a^b (b' ln a + b a' / a)
    inner = _bin(_bin(db, mul, _call("log", a)), add, _bin(_bin(b, mul, da), div, a))
    return _bin(_call("pow", a, b), mul, inner)


# ----------------------------------------------------------------------------- kernels


class Kernel:
    """Several expressions compiled into one function with shared sub-expressions.

    Sub-expressions that use none of the `varying` names (functions of the parameters only) are
    hoisted into `prepare(params)`, evaluated once per parameter set; `run(prepared, values)`
    then evaluates the expressions at the varying names' values and returns one result each.
    The same lines (`lines`, reading `inputs`, giving `outputs`) are compiled with numba for the
    transient integrator (`circuitnn.devices.transient`).
    """

    def __init__(self, nodes: Sequence[ast.expr | str], varying: Sequence[str],
                 name: str = "kernel") -> None:
        pre: list[str] = []
        main: list[str] = []
        memo: dict[str, tuple[str, bool]] = {}
        free_pre: set[str] = set()
        free_main: set[str] = set()
        hoisted: list[str] = []
        varying = set(varying)

        def emit(node: ast.expr) -> tuple[str, bool]:
            """(name or literal, whether it depends on a varying name)."""
            if isinstance(node, ast.Name):
                return node.id, node.id in varying
            if isinstance(node, ast.Constant):
                return repr(float(node.value)), False
            key = ast.dump(node)
            if key in memo:
                return memo[key]
            if isinstance(node, ast.BinOp):
                (a, va), (b, vb) = emit(node.left), emit(node.right)
                text = (f"_f_pow({a}, {b})" if isinstance(node.op, ast.Pow)
                        else f"{a} {_BINOPS[type(node.op)]} {b}")
                dep = va or vb
            elif isinstance(node, ast.UnaryOp):
                a, dep = emit(node.operand)
                text = f"{'-' if isinstance(node.op, ast.USub) else '+'}{a}"
            elif isinstance(node, ast.Compare):
                (a, va), (b, vb) = emit(node.left), emit(node.comparators[0])
                text, dep = f"{a} {_CMPOPS[type(node.ops[0])]} {b}", va or vb
            elif isinstance(node, ast.BoolOp):
                parts = [emit(v) for v in node.values]
                sep = " & " if isinstance(node.op, ast.And) else " | "
                text = sep.join(f"({a})" for a, _ in parts)
                dep = any(dv for _, dv in parts)
            elif isinstance(node, ast.Call):
                parts = [emit(a) for a in node.args]
                text = f"_f_{node.func.id}({', '.join(a for a, _ in parts)})"
                dep = any(dv for _, dv in parts)
            else:  # parse() admits nothing else
                raise CircuitnnError(f"cannot compile {type(node).__name__}")
            tmp = f"_t{len(memo)}"
            memo[key] = (tmp, dep)
            (main if dep else pre).append(f"    {tmp} = {text}")
            if not dep:
                hoisted.append(tmp)
            return tmp, dep

        outs = [emit(parse(n) if isinstance(n, str) else n) for n in nodes]
        for line in main:
            free_main.update(_identifiers(line.split("=", 1)[1]))
        for line in pre:
            free_pre.update(_identifiers(line.split("=", 1)[1]))
        out_names = {a for a, _ in outs if a.isidentifier()}
        free_main |= out_names
        defined_main = {line.split("=", 1)[0].strip() for line in main}
        free_main -= defined_main
        funcs = {f"_f_{k}" for k in FUNCTIONS}
        free_pre -= funcs | set(hoisted)
        free_main -= funcs
        src_pre = "\n".join([f"def {name}_pre(env):",
                              *[f"    {v} = env[{v!r}]" for v in sorted(free_pre)], *pre,
                              f"    return {{{', '.join(f'{t!r}: {t}' for t in hoisted)}}}"])
        src_main = "\n".join([f"def {name}(env):",
                               *[f"    {v} = env[{v!r}]" for v in sorted(free_main)], *main,
                               f"    return ({', '.join(a for a, _ in outs)},)"])
        self.source = src_pre + "\n" + src_main
        #: the main function's parts, for the numba compilation (`circuitnn.devices.transient`)
        self.lines = [line.strip() for line in main]
        self.inputs = sorted(free_main)
        self.outputs = [a for a, _ in outs]
        namespace: dict[str, object] = {f"_f_{k}": f for k, (f, _) in FUNCTIONS.items()}
        exec(compile(self.source, f"<{name}>", "exec"), namespace)  # noqa: S102
        self._pre, self._main = namespace[f"{name}_pre"], namespace[name]

    def prepare(self, params: Mapping[str, object]) -> Prepared:
        """The environment of one parameter set: `params` plus the hoisted sub-expressions."""
        params = _numpy_values(params)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return Prepared({**params, **self._pre(params)})

    def run(self, prepared: Prepared, values: Mapping[str, object]) -> tuple:
        """The expressions at `values` (the varying names), without the floating-point error
        guard (for callers that set `np.errstate` themselves)."""
        return self._main({**prepared.env, **_numpy_values(values)})

    def __call__(self, prepared: Prepared, values: Mapping[str, object]) -> tuple:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return self.run(prepared, values)


@dataclass(frozen=True)
class Prepared:
    """A kernel's environment for one parameter set (parameters and hoisted values)."""

    env: dict[str, object]


def _numpy_values(values: Mapping[str, object]) -> dict[str, object]:
    """Python numbers as np.float64 (numpy's inf and NaN instead of Python's exceptions)."""
    return {k: x if isinstance(x, (np.ndarray, np.generic)) else np.float64(x)
            for k, x in values.items()}


def _identifiers(text: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(text.strip(), mode="eval")) if isinstance(n, ast.Name)}

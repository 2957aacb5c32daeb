"""Netlist-safety helpers: every name, number and comment written into a netlist (or a Verilog-A
file) goes through these.

ngspice ``.control`` blocks can run shell commands (``shell``), so no user-supplied string may
reach a netlist unchecked: names are restricted to identifiers, numbers to finite reals.
"""

from __future__ import annotations

import math
import numbers
import re

from circuitnn.errors import CircuitnnError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def safe_name(s: str, what: str = "name") -> str:
    """Return `s` if it is a safe netlist identifier (``[A-Za-z_][A-Za-z0-9_]{0,63}``).

    Raises CircuitnnError naming `what` otherwise.
    """
    if not isinstance(s, str) or _NAME_RE.fullmatch(s) is None:
        shown = repr(s) if len(repr(s)) <= 80 else repr(s)[:77] + "..."
        raise CircuitnnError(
            f"invalid {what} {shown}: netlist names must match [A-Za-z_][A-Za-z0-9_]{{0,63}}"
        )
    return s


def safe_node(s: str, what: str = "node") -> str:
    """Like :func:`safe_name`, but also accepts ``"0"`` (the ground node)."""
    return s if s == "0" else safe_name(s, what)


def fmt(x: float, what: str = "value") -> str:
    """Format a finite real number for a netlist at full double precision.

    Uses Python's shortest round-trip form (``repr``), e.g. ``1e-05``, ``0.1``, ``2.5e+20``,
    which ngspice's number parser accepts.

    Rejects NaN, infinities, bools, strings and other non-numbers with CircuitnnError.
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        # numpy scalars register as numbers.Real; strings, bools, complex and None do not.
        shown = repr(x) if len(repr(x)) <= 80 else repr(x)[:77] + "..."
        raise CircuitnnError(f"invalid {what} {shown}: expected a finite real number")
    v = float(x)
    if not math.isfinite(v):
        raise CircuitnnError(f"invalid {what} {v!r}: expected a finite real number")
    return repr(v)


#: longest comment text kept
COMMENT_CHARS = 300


def comment(text: str) -> str:
    """`text` made safe for one comment line of a netlist or a Verilog-A file: printable ASCII
    only, without the backslash and backtick (line continuations, compiler directives), white
    space collapsed to single spaces (no line break can end the comment), at most
    COMMENT_CHARS characters."""
    kept = "".join(c if " " <= c <= "~" and c not in "\\`" else " " for c in str(text))
    kept = " ".join(kept.split())
    return kept if len(kept) <= COMMENT_CHARS else kept[:COMMENT_CHARS - 3] + "..."

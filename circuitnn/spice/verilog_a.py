"""Verilog-A modules rendered from a model's single definition (`circuitnn.devices.models`).

A device becomes ``module NAME(p, n)``: the card's values are the parameters' defaults, the
model's named sub-expressions (window functions, thresholds, ...) are variables, and the current
and state rate are the model's expressions (`circuitnn.devices.expr.to_verilog_a`). The state
lives on the internal node `cnn_state` as the normalised state (x - lo) / (hi - lo), of order 1
in every model (Stanford-PKU's gap is ~1e-9 m), so simulators' default voltage tolerances
resolve it: ``ddt(V(cnn_state)) = rate / (hi - lo)``, the state clamped to its bounds and the
rate held at zero where it would push the state past one, as the project's simulator and ngspice
subcircuit do (`Device.rate`, `circuitnn.spice.subckt`). In static analyses (the operating point
before a transient, DC sweeps) the state is the instance parameter `s0`. The module's own names
start with `cnn_` (and `s0`), so the model's names stay as they are (a keyword gets `_m`).

A series element (`circuitnn.devices.series.ExprElement`) renders likewise as a two-terminal
module, for simulations of a device behind an instrument's resistance or current limit.
"""

from __future__ import annotations

from circuitnn.devices import expr
from circuitnn.devices.device import Device
from circuitnn.devices.series import ExprElement
from circuitnn.errors import CircuitnnError
from circuitnn.spice.names import comment, fmt, safe_name

#: Verilog-A/AMS keywords and built-in names a model's name must not take (the module's own
#: names are added by `_identifiers`)
RESERVED = frozenset("""
    above abs absdelay absdelta abstol access ac_stim acos acosh aliasparam always analog
    analysis and asin asinh assert assign atan atan2 atanh begin branch buf bufif0 bufif1 case
    casex casez ceil cmos connect connectmodule connectrules continuous cos cosh cross ddt
    ddt_nature ddx deassign default defparam design disable discipline discrete domain driver_update
    edge electrical else end endcase endconnectrules enddiscipline endfunction endgenerate
    endmodule endnature endparamset endprimitive endspecify endtable endtask event exclude exp
    final_step flicker_noise floor flow for force forever fork from function generate genvar
    ground highz0 highz1 hypot idt idt_nature idtmod if ifnone inf initial initial_step inout
    input integer join laplace_nd laplace_np laplace_zd laplace_zp large last_crossing limexp
    ln localparam log macromodule max medium merged min module nand nature negedge
    net_resolution nmos noise_table noise_table_log nor not notif0 notif1 or output parameter
    paramset pmos posedge potential pow primitive pull0 pull1 pulldown pullup rcmos real
    realtime reg release repeat resolveto rnmos rpmos rtran rtranif0 rtranif1 scalared sin
    sinh slew small specify specparam split sqrt string strong0 strong1 supply0 supply1 table
    tan tanh task time timer tran tranif0 tranif1 transition tri tri0 tri1 triand trior trireg
    units vectored wait wand weak0 weak1 while white_noise wire wor wreal xnor xor zi_nd zi_np
    zi_zd zi_zp I V
""".split())
#: names the module itself uses
OWN = ("p", "n", "s0", "cnn_state", "cnn_lo", "cnn_hi", "cnn_rate", "cnn_current")


def _identifiers(device: Device) -> dict[str, str]:
    """Model name -> Verilog-A identifier: the same name unless it is a keyword or one of the
    module's own names, else with `_m` appended (until unique)."""
    m = device.model
    taken = set(RESERVED) | set(OWN)
    out: dict[str, str] = {}
    for name in ("v", m.state, *m.param_names, *m.definitions):
        ident = safe_name(name, f"name in model {m.name!r}")
        while ident in taken:
            ident += "_m"
        taken.add(ident)
        out[name] = ident
    return out


def _ordered_definitions(definitions: dict[str, str]) -> list[str]:
    """Definition names, each after the definitions it uses."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise CircuitnnError(f"model definitions refer to each other in a cycle: {name!r}")
        for dep in sorted(expr.names(definitions[name]) & set(definitions)):
            visit(dep, (*path, name))
        done.append(name)

    for name in definitions:
        visit(name, ())
    return done


def module(device: Device, name: str, s0: float, header: list[str] = ()) -> str:
    """The Verilog-A text of ``module NAME(p, n)`` for the device (scalar parameters), with
    `header` as comment lines and `s0` as the default initial state."""
    name = safe_name(name, "module name")
    m = device.model
    ids = _identifiers(device)
    va = lambda text: expr.to_verilog_a(text, ids)  # noqa: E731
    lo, hi = (float(b) for b in device.bounds())
    if not lo < hi:
        raise CircuitnnError(f"model {m.name!r}: the state range [{lo}, {hi}] is empty")
    if not lo <= s0 <= hi:
        raise CircuitnnError(f"initial state {s0} outside the state range [{lo}, {hi}]")
    lines = [f"// {comment(h)}" for h in header]
    lines += ['`include "disciplines.vams"', "", f"module {name}(p, n);", "    inout p, n;",
              "    electrical p, n;",
              "    electrical cnn_state;  // the normalised state (x - lo) / (hi - lo)", ""]
    for p in m.params:
        val = device.params[p.name]
        if val.ndim:
            raise CircuitnnError(f"parameter {p.name!r} must be a scalar to write a module")
        note = comment(", ".join(x for x in (p.unit, p.description) if x))
        lines.append(f"    parameter real {ids[p.name]} = {fmt(float(val), p.name)};"
                     + (f"  // {note}" if note else ""))
    lines += [f'    (* type="instance" *) parameter real s0 = {fmt(s0, "initial state")};'
              f"  // initial state {comment(m.state)} ({comment(m.state_unit) or 'no unit'})",
              ""]
    locals_ = [ids["v"], ids[m.state], "cnn_lo", "cnn_hi", "cnn_rate", "cnn_current",
               *(ids[d] for d in m.definitions)]
    lines += [f"    real {', '.join(locals_)};", "", "    analog begin"]
    pol = fmt(device.polarity, "polarity")
    body = [
        f"cnn_lo = {va(m.state_lo)};",
        f"cnn_hi = {va(m.state_hi)};",
        f"{ids['v']} = {pol} * V(p, n);",
        f"{ids[m.state]} = min(max(cnn_lo + (cnn_hi - cnn_lo) * V(cnn_state), cnn_lo), cnn_hi);",
        *(f"{ids[d]} = {va(m.definitions[d])};" for d in _ordered_definitions(m.definitions)),
        f"cnn_rate = {va(m.rate)};",
        f"cnn_current = {va(m.current)};",
        "// the state stays in its bounds: no motion past one",
        "if ((V(cnn_state) >= 1.0 && cnn_rate > 0.0) || (V(cnn_state) <= 0.0 && cnn_rate < 0.0))",
        "    cnn_rate = 0.0;",
        "I(cnn_state) <+ ddt(V(cnn_state));",
        "if (analysis(\"static\"))",
        "    I(cnn_state) <+ V(cnn_state) - (s0 - cnn_lo) / (cnn_hi - cnn_lo);",
        "else",
        "    I(cnn_state) <+ -cnn_rate / (cnn_hi - cnn_lo);",
        f"I(p, n) <+ {pol} * cnn_current;",
    ]
    lines += [f"        {b}" for b in body] + ["    end", "endmodule", ""]
    return "\n".join(lines)


def element_module(element: ExprElement, name: str) -> str:
    """A series element as ``module NAME(a, b)`` carrying ``current(V(a, b))`` from a to b."""
    name = safe_name(name, "module name")
    ids = {"u": "u"}
    params = []
    for k, val in element.params.items():
        if val.ndim:
            raise CircuitnnError(f"series element parameter {k!r} must be a scalar")
        ident = safe_name(k, "series element parameter")
        ids[k] = ident if ident not in RESERVED and ident not in ("a", "b", "u") else ident + "_m"
        params.append(f"    parameter real {ids[k]} = {fmt(float(val), k)};")
    return "\n".join([
        f"// {comment(element.description)}", '`include "disciplines.vams"', "",
        f"module {name}(a, b);", "    inout a, b;", "    electrical a, b;", *params,
        "    real u;", "    analog begin", "        u = V(a, b);",
        f"        I(a, b) <+ {expr.to_verilog_a(element.expression, ids)};", "    end",
        "endmodule", ""])

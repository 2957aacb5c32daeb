"""Compact memristor models, each written once as expressions (see `circuitnn.devices.expr`).

Every model has one state variable with bounds, a current expression I(v, state) and a rate
expression d(state)/dt (v, state). `v` is the voltage across the device (positive terminal
minus negative). The Python simulator (numpy; numba for transients) and the ngspice subcircuit
are both generated from these strings. Published parameter sets live in model cards
(`device_models/`), not here; the defaults below only make a model runnable and give fit bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from circuitnn.errors import CircuitnnError


@dataclass(frozen=True)
class ParamSpec:
    """A model parameter: default, unit, fit bounds, and whether to search it on a log scale."""

    name: str
    default: float
    unit: str
    lo: float
    hi: float
    log: bool = False
    description: str = ""


@dataclass(frozen=True)
class CompactModel:
    """The single definition of a compact model's equations."""

    name: str
    citation: str
    state: str
    state_unit: str
    state_lo: str  # expression of parameters
    state_hi: str
    current: str  # I(v, state)
    rate: str  # d state / dt
    params: tuple[ParamSpec, ...]
    definitions: dict[str, str] = field(default_factory=dict)  # named sub-expressions
    conductive_high: bool = True  # True when a larger state means a larger conductance

    def spec(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise CircuitnnError(f"model {self.name!r} has no parameter {name!r}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}


# Yakopcic generalised memristor model: C. Yakopcic, T. M. Taha, G. Subramanyam, R. E. Pino,
# "Generalized memristive device SPICE model and its application in circuit design",
# IEEE TCAD 32(8):1201-1214, 2013 (eqs. for I-V, threshold g(V) and motion f(x)); with the
# OFF-state term of C. Yakopcic, T. M. Taha, D. J. Mountain, T. Salter, M. J. Marinella,
# M. McLean, "Memristor model optimization based on parameter extraction from device
# characterization data", IEEE TCAD 39(5):1084-1095, 2020: I = x g_max sinh(b_max V)
# + (1 - x) g_min sinh(b_min V), separate amplitudes for V >= 0 and V < 0. Here g_max = a1 / a2,
# b_max = b, g_min = a1_off / a2_off, b_min = b_off; a1_off = a2_off = 0 (the defaults) is the
# 2013 model, in which the OFF state (x = 0) carries no current.
YAKOPCIC = CompactModel(
    name="yakopcic",
    citation="Yakopcic et al., IEEE TCAD 32(8):1201, 2013; OFF-state term: Yakopcic et al., "
             "IEEE TCAD 39(5):1084, 2020",
    state="x",
    state_unit="",
    state_lo="0",
    state_hi="1",
    current="where(v >= 0, a1 * x * sinh(b * v) + a1_off * (1 - x) * sinh(b_off * v),"
            " a2 * x * sinh(b * v) + a2_off * (1 - x) * sinh(b_off * v))",
    rate="eta * gv * fx",
    definitions={
        "gv": "where(v > Vp, Ap * (exp(v) - exp(Vp)),"
        " where(v < -Vn, -An * (exp(-v) - exp(Vn)), 0))",
        "fx": "where(v > 0,"
        " where(x >= xp, exp(-alphap * (x - xp)) * ((xp - x) / (1 - xp) + 1), 1),"
        " where(x <= 1 - xn, exp(alphan * (x + xn - 1)) * (x / (1 - xn)), 1))",
    },
    params=(
        ParamSpec("a1", 1e-4, "A", 1e-9, 1.0, True, "I-V amplitude, positive bias"),
        ParamSpec("a2", 1e-4, "A", 1e-9, 1.0, True, "I-V amplitude, negative bias"),
        ParamSpec("b", 1.0, "1/V", 0.01, 20.0, True, "I-V nonlinearity"),
        ParamSpec("Ap", 1e3, "1/s", 1e-2, 1e10, True, "SET rate magnitude"),
        ParamSpec("An", 1e3, "1/s", 1e-2, 1e10, True, "RESET rate magnitude"),
        ParamSpec("Vp", 0.3, "V", 0.0, 3.0, False, "SET threshold"),
        ParamSpec("Vn", 0.3, "V", 0.0, 3.0, False, "RESET threshold"),
        ParamSpec("xp", 0.5, "", 0.01, 0.99, False, "state where SET motion starts to slow"),
        ParamSpec("xn", 0.5, "", 0.01, 0.99, False, "state where RESET motion starts to slow"),
        ParamSpec("alphap", 1.0, "", 0.0, 50.0, False, "SET motion decay"),
        ParamSpec("alphan", 1.0, "", 0.0, 50.0, False, "RESET motion decay"),
        ParamSpec("eta", 1.0, "", -1.0, 1.0, False, "direction of motion (+1 or -1)"),
        ParamSpec("a1_off", 0.0, "A", 1e-13, 1e-1, True, "OFF-state I-V amplitude, positive bias"),
        ParamSpec("a2_off", 0.0, "A", 1e-13, 1e-1, True, "OFF-state I-V amplitude, negative bias"),
        ParamSpec("b_off", 1.0, "1/V", 0.01, 20.0, True, "OFF-state I-V nonlinearity"),
    ),
)

# VTEAM: S. Kvatinsky, M. Ramadan, E. G. Friedman, A. Kolodny, "VTEAM: A General Model for
# Voltage-Controlled Memristors", IEEE TCAS-II 62(8):786-790, 2015; with its nonlinear
# (exponential in state) I-V relation and the Kvatinsky window, on a normalised state
# x = (w - w_on)/(w_off - w_on) in [0, 1]: x = 0 is ON (R_on), x = 1 is OFF (R_off). Its
# published I-V relations (linear or exponential in the state) are ohmic at every state, so the
# OFF-state conduction is R_off itself; nothing beyond it is published.
VTEAM = CompactModel(
    name="vteam",
    citation="Kvatinsky et al., IEEE TCAS-II 62(8):786, 2015",
    state="x",
    state_unit="",
    state_lo="0",
    state_hi="1",
    current="v / (R_on * exp(log(R_off / R_on) * x))",
    rate="k_off * pow(max(v / v_off - 1, 0), alpha_off) * exp(-exp((x - a_off) / w_c))"
    " + k_on * pow(max(v / v_on - 1, 0), alpha_on) * exp(-exp(-(x - a_on) / w_c))",
    conductive_high=False,
    params=(
        ParamSpec("R_on", 1e3, "ohm", 10.0, 1e7, True, "ON resistance (x = 0)"),
        ParamSpec("R_off", 1e5, "ohm", 100.0, 1e9, True, "OFF resistance (x = 1)"),
        ParamSpec("k_off", 1e3, "1/s", 1e-3, 1e12, True, "OFF (RESET) rate, positive"),
        ParamSpec("k_on", -1e3, "1/s", -1e12, -1e-3, False, "ON (SET) rate, negative"),
        ParamSpec("v_off", 0.3, "V", 0.01, 3.0, False, "OFF threshold, positive"),
        ParamSpec("v_on", -0.3, "V", -3.0, -0.01, False, "ON threshold, negative"),
        ParamSpec("alpha_off", 3.0, "", 1.0, 10.0, False, "OFF rate exponent"),
        ParamSpec("alpha_on", 3.0, "", 1.0, 10.0, False, "ON rate exponent"),
        ParamSpec("a_off", 1.0, "", 0.5, 1.5, False, "window edge, OFF side"),
        ParamSpec("a_on", 0.0, "", -0.5, 0.5, False, "window edge, ON side"),
        ParamSpec("w_c", 0.05, "", 1e-3, 1.0, True, "window softness"),
    ),
)

# Stanford-PKU metal-oxide RRAM model (filament gap g): Z. Jiang et al., "A Compact Model for
# Metal-Oxide Resistive Random Access Memory With Experiment Verification", IEEE TED
# 63(5):1884-1892, 2016; equations as in the Stanford RRAM model v1.0.0 (Jiang & Wong,
# doi:10.4231/D37H1DN48): I = I0 exp(-g/g0) sinh(V/V0), dg/dt = -v0 exp(-Ea/kT) sinh(gamma a0 q V
# / (tox k T)), gamma = gamma0 - beta (g/1nm)^3 (zero below the field F_min), T = T0 + |V I| Rth.
# q/k = 11604.518 K/V.
STANFORD_PKU = CompactModel(
    name="stanford-pku",
    citation="Jiang et al., IEEE TED 63(5):1884, 2016; Stanford RRAM model v1.0.0",
    state="g",
    state_unit="m",
    state_lo="gap_min",
    state_hi="gap_max",
    current="I0 * exp(-g / g0) * sinh(v / V0)",
    rate="-vel0 * exp(-Ea * 11604.518 / T) * sinh(gam * a0 / tox * v * 11604.518 / T)",
    definitions={
        "T": "T0 + abs(v * I0 * exp(-g / g0) * sinh(v / V0)) * Rth",
        "gam0": "gamma0 - beta * pow(g / 1e-9, 3)",
        "gam": "where(gam0 * abs(v) / tox < F_min, 0, gam0)",
    },
    conductive_high=False,
    params=(
        ParamSpec("I0", 1e-3, "A", 1e-8, 1.0, True, "current prefactor"),
        ParamSpec("g0", 0.25e-9, "m", 0.02e-9, 2e-9, True, "gap decay length"),
        ParamSpec("V0", 0.25, "V", 0.05, 2.0, True, "I-V nonlinearity voltage"),
        ParamSpec("vel0", 10.0, "m/s", 1e-6, 1e8, True, "gap velocity prefactor"),
        ParamSpec("Ea", 0.6, "eV", 0.05, 2.0, False, "activation energy"),
        ParamSpec("a0", 0.25e-9, "m", 0.05e-9, 1e-9, False, "atomic hopping distance"),
        ParamSpec("tox", 12e-9, "m", 1e-9, 50e-9, False, "oxide thickness"),
        ParamSpec("gamma0", 16.0, "", 0.5, 100.0, False, "field enhancement"),
        ParamSpec("beta", 0.8, "", 0.0, 10.0, False, "field enhancement gap dependence"),
        ParamSpec("F_min", 1.4e9, "V/m", 0.0, 1e11, False, "minimum field for switching"),
        ParamSpec("T0", 298.0, "K", 200.0, 500.0, False, "ambient temperature"),
        ParamSpec("Rth", 2.1e3, "K/W", 0.0, 1e7, False, "thermal resistance"),
        ParamSpec("gap_min", 0.1e-9, "m", 0.0, 1e-9, False, "minimum gap"),
        ParamSpec("gap_max", 1.7e-9, "m", 0.5e-9, 10e-9, False, "maximum gap"),
    ),
)

# Generalized metastable switch (MSS) model: T. W. Molter, M. A. Nugent, "The Generalized
# Metastable Switch Memristor Model", CNNA 2016, arXiv:1608.04659 (Knowm Inc.; built for Knowm's
# self-directed-channel devices). The state x in [0, 1] is the fraction of metastable switches
# ON; its mean-field rate is (1/tau) [(1 - x) P_A(V) - x P_B(V)] with the switching
# probabilities P_A = 1 / (1 + exp(-(V - V_on)/V_T)), P_B = 1 - 1 / (1 + exp(-(V + V_off)/V_T))
# (written with tanh, which never overflows), V_T = k T / q (q/k = 11604.518 K/V). Current:
# I = phi V (x / R_on + (1 - x) / R_off) + (1 - phi) I_d, with the Schottky-diode current
# I_d = a_f (exp(b_f V) - 1) - a_r (exp(-b_r V) - 1).
# The paper writes I_d = a_f exp(b_f V) - a_r exp(-b_r V); the -1 terms (a constant a_r - a_f)
# make I(0) = 0, the pinched loop every memristor shows.
MSS = CompactModel(
    name="mss",
    citation="Molter and Nugent, The Generalized Metastable Switch Memristor Model, CNNA 2016, "
             "arXiv:1608.04659",
    state="x",
    state_unit="",
    state_lo="0",
    state_hi="1",
    current="phi * v * (x / R_on + (1 - x) / R_off)"
            " + (1 - phi) * (a_f * (exp(b_f * v) - 1) - a_r * (exp(-b_r * v) - 1))",
    rate="((1 - x) * 0.5 * (1 + tanh((v - V_on) * q_2kT))"
         " - x * 0.5 * (1 - tanh((v + V_off) * q_2kT))) / tau",
    definitions={"q_2kT": "11604.518 / (2 * T)"},
    params=(
        ParamSpec("R_on", 1e3, "ohm", 10.0, 1e7, True, "resistance with all switches ON"),
        ParamSpec("R_off", 1e5, "ohm", 100.0, 1e9, True, "resistance with all switches OFF"),
        ParamSpec("tau", 1e-4, "s", 1e-9, 1e3, True, "characteristic switching time"),
        ParamSpec("V_on", 0.27, "V", 0.0, 2.0, False, "barrier potential OFF -> ON"),
        ParamSpec("V_off", 0.27, "V", 0.0, 2.0, False, "barrier potential ON -> OFF"),
        ParamSpec("phi", 1.0, "", 0.0, 1.0, False, "share of the memristive (MSS) current"),
        ParamSpec("a_f", 1e-9, "A", 1e-15, 1e-1, True, "Schottky forward amplitude"),
        ParamSpec("b_f", 4.0, "1/V", 0.1, 50.0, True, "Schottky forward exponent"),
        ParamSpec("a_r", 1e-9, "A", 1e-15, 1e-1, True, "Schottky reverse amplitude"),
        ParamSpec("b_r", 4.0, "1/V", 0.1, 50.0, True, "Schottky reverse exponent"),
        ParamSpec("T", 298.5, "K", 200.0, 500.0, False, "temperature (sets V_T = kT/q)"),
    ),
)

# An ohmic device of fixed conductance G, for validation.
OHMIC = CompactModel(
    name="ohmic",
    citation="Ohm's law",
    state="x",
    state_unit="",
    state_lo="0",
    state_hi="1",
    current="G * v",
    rate="0",
    params=(ParamSpec("G", 1e-5, "S", 1e-12, 10.0, True, "conductance"),),
)

MODELS: dict[str, CompactModel] = {m.name: m for m in (YAKOPCIC, VTEAM, STANFORD_PKU, MSS, OHMIC)}


def get_model(name: str) -> CompactModel:
    """Look a model up by name, with a clear error listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise CircuitnnError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None

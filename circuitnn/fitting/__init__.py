"""Fitting measured data: I-V sweeps to compact models (`iv.py`, manifests in `data.py`),
pulse ramps to the pulse-update law (`pulse.py`), with uncertainties, ngspice re-checks and
figures; `circuitnn fit` and `circuitnn fit-pulse`."""

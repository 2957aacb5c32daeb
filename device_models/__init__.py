"""Data shipped with circuitnn: model cards, surrogate cards and trained weights (JSON / NPZ).

Installed as the package `circuitnn.device_models`; read it with `importlib.resources`
(`circuitnn.devices.DEVICE_MODELS_DIR`), never through a path relative to the source tree.
"""

"""Networks as data and their hardware: graph and presets, data sets, quantisation, mapping
onto tiles, the device of every cell (`device.py`), the one engine constructor (`engines.py`),
energy counts; `circuitnn network run` / `network map`."""

"""Run every benchmark script in turn (`make bench`); each prints its own markdown table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_fit_iv.py", "bench_fit_read.py", "bench_fit_cost.py", "bench_pulse_fit.py",
           "bench_tile_read.py", "bench_first_read.py",
           "bench_tile_program.py", "bench_surrogate.py", "bench_surrogate_auto.py",
           "bench_exsitu.py", "bench_mcnn.py", "bench_export.py"]

if __name__ == "__main__":
    failed = []
    for name in SCRIPTS:
        print(f"\n## {name}\n", flush=True)
        if subprocess.call([sys.executable, str(HERE / name)]) != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")

"""Checkpointed stages: typed results saved as JSON + NPZ, keyed by settings, resumable.

A stage is a function of the run's context returning a dataclass. `run_stages` runs them in
order into an output folder: a stage's key is a hash of its own settings and the previous
stage's key; `stages/<name>.json` (+ `.npz` for arrays) holds the key, the seconds it took and
its result. On a rerun a stage whose checkpoint has the same key is loaded, not recomputed; a
changed option recomputes that stage and everything after it, and a deleted checkpoint
recomputes only that stage. A damaged checkpoint is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from circuitnn.errors import CircuitnnError
from circuitnn.io import load_npz, write_json, write_npz


@dataclass
class Stage:
    """A named step: `run(ctx)` returns a dataclass of type `result`; `settings(ctx)` is what
    its result depends on besides the previous stage (JSON-able)."""

    name: str
    result: type
    run: Callable[[Any], Any]
    settings: Callable[[Any], dict] = lambda ctx: {}


@dataclass
class StageLog:
    """What a run did: results by stage, seconds per stage, the stages computed (not loaded)."""

    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)


def _is_array_dict(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(x, np.ndarray) for x in v.values())


def save_result(base: Path, key: str, seconds: float, obj: Any) -> None:
    """Write a dataclass result: arrays (and dicts of arrays) to base.npz, the rest and the
    key to base.json (the JSON last, so a half-written stage is never taken as done)."""
    plain, arrays, kinds = {}, {}, {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name], kinds[f.name] = v, "array"
        elif _is_array_dict(v):
            arrays.update({f"{f.name}/{k}": a for k, a in v.items()})
            kinds[f.name] = "dict"
        else:
            plain[f.name] = v
    if arrays:
        write_npz(base.with_suffix(".npz"), **arrays)
    write_json(base.with_suffix(".json"), {"key": key, "seconds": seconds, "arrays": kinds,
                                           "result": plain})


def load_result(base: Path, key: str, cls: type) -> tuple[Any, float] | None:
    """The saved result of a stage if its key matches (None if absent, stale or damaged)."""
    try:
        meta = json.loads(base.with_suffix(".json").read_text())
        if meta.get("key") != key:
            return None
        values = dict(meta["result"])
        if meta["arrays"]:
            npz = load_npz(base.with_suffix(".npz"))
            for name, kind in meta["arrays"].items():
                if kind == "array":
                    values[name] = npz[name]
                else:
                    values[name] = {k.split("/", 1)[1]: v for k, v in npz.items()
                                    if k.startswith(name + "/")}
        return cls(**values), float(meta.get("seconds", 0.0))
    except (OSError, ValueError, KeyError, TypeError, CircuitnnError):
        return None


def run_stages(stages: list[Stage], ctx: Any, out: Path, salt: str, progress: bool = True,
               until: str | None = None) -> StageLog:
    """Run (or load) the stages into `out/stages`; `ctx.log` is the StageLog as it grows."""
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise CircuitnnError(f"unknown stage '{until}' (stages: {', '.join(names)})")
    log: StageLog = ctx.log
    prev = salt
    todo = stages if until is None else stages[:names.index(until) + 1]
    with tqdm(total=len(todo), desc="stages", disable=not progress, leave=False) as bar:
        for stage in todo:
            text = json.dumps([prev, stage.name, stage.settings(ctx)], sort_keys=True,
                              default=str)
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            base = out / "stages" / stage.name
            saved = load_result(base, key, stage.result)
            if saved is not None:
                log.results[stage.name], log.timings[stage.name] = saved
            else:
                bar.set_description(f"stage {stage.name}")
                t0 = time.perf_counter()
                result = stage.run(ctx)
                log.timings[stage.name] = time.perf_counter() - t0
                log.results[stage.name] = result
                log.computed.append(stage.name)
                save_result(base, key, log.timings[stage.name], result)
            prev = key
            bar.update(1)
    return log

"""Several optimisations side by side, their evaluations batched into one vectorised call.

A vectorised transient costs about as much for a few hundred candidates as for one (its time
goes into per-step overhead, see `circuitnn.devices.transient`), so independent searches or
refinements are cheapest when their requests are simulated together. Each optimisation runs in
its own thread; a request blocks until every optimisation still running has made one, then one
call of `batch` serves them all. The threads never compute concurrently: only one runs Python
at a time, and the batch runs in whichever thread completed it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")
Request = Callable[[Any], Any]


class Dropped(Exception):
    """Raised in a task's request when the race has dropped it."""


class Lockstep:
    """Run `tasks` (each given its `request` function) with their requests served by `batch`
    (a list of requests -> the list of their results, in order).

    Race (optional): `score(request, result)` rates each result (lower is better); after
    `rounds` requests of its own, a task whose best score exceeds `ratio` times the best score
    of any task is dropped (its result is None). Once `keep` tasks have finished, a task still
    running whose best score is above the keep-th best finished one's is dropped when it has
    made `patience` times as many requests as that one (a slow optimisation that has not caught
    up with the `keep` results wanted)."""

    def __init__(self, batch: Callable[[list[Any]], list[Any]],
                 score: Callable[[Any, Any], float] | None = None, rounds: int = 0,
                 ratio: float = float("inf"), patience: float = float("inf"),
                 keep: int = 1) -> None:
        self._batch = batch
        self._score, self._rounds, self._ratio = score, rounds, ratio
        self._patience, self._keep = patience, keep
        self._done: list[tuple[float, int]] = []  # finished tasks' (best, requests), sorted
        self._cond = threading.Condition()
        self._pending: dict[int, Any] = {}
        self._results: dict[int, Any] = {}
        self._best: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._dropped: set[int] = set()
        self._running = 0
        self._error: BaseException | None = None

    def run(self, tasks: Sequence[Callable[[Request], R]]) -> list[R | None]:
        """The tasks' return values, in order (None for a dropped task); the first exception of
        any task is raised."""
        if len(tasks) == 1:
            return [tasks[0](lambda req: self._batch([req])[0])]
        out: list[Any] = [None] * len(tasks)
        errors: list[BaseException] = []
        self._running = len(tasks)

        def work(i: int, task: Callable[[Request], R]) -> None:
            try:
                out[i] = task(lambda req: self._request(i, req))
                with self._cond:
                    if i in self._best:
                        self._done = sorted(self._done + [(self._best[i], self._count[i])])
            except Dropped:
                out[i] = None
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                with self._cond:
                    self._error = self._error or exc
                    self._cond.notify_all()
            finally:
                with self._cond:
                    self._running -= 1
                    self._flush()

        threads = [threading.Thread(target=work, args=(i, t), daemon=True)
                   for i, t in enumerate(tasks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._error is not None:  # the first failure, batch or task
            raise self._error
        if errors:
            raise errors[0]
        return out

    def _request(self, i: int, req: Any) -> Any:
        with self._cond:
            self._pending[i] = req
            self._flush()
            while i not in self._results and i not in self._dropped:
                if self._error is not None:
                    raise RuntimeError("another batched task failed") from self._error
                self._cond.wait()
            if i in self._dropped:
                raise Dropped
            return self._results.pop(i)

    def _flush(self) -> None:
        """Serve the pending requests once every running task has made one (lock held)."""
        if not self._pending or len(self._pending) < self._running:
            return
        keys = sorted(self._pending)
        reqs = [self._pending.pop(k) for k in keys]
        try:
            results = self._batch(reqs)
            self._results.update(zip(keys, results, strict=True))
            if self._score is not None:
                self._race(keys, reqs, results)
        except BaseException as exc:  # noqa: BLE001 - every waiting task raises it
            self._error = exc
        self._cond.notify_all()

    def _race(self, keys: list[int], reqs: list[Any], results: list[Any]) -> None:
        assert self._score is not None
        for k, req, res in zip(keys, reqs, results, strict=True):
            self._best[k] = min(self._best.get(k, float("inf")), self._score(req, res))
            self._count[k] = self._count.get(k, 0) + 1
        leader = min(self._best.values())
        # the keep-th best finished task's (best, requests), once `keep` have finished
        ref = self._done[self._keep - 1] if len(self._done) >= self._keep else None
        for k in keys:
            behind = ref is not None and self._best[k] > ref[0] and (
                self._count[k] >= self._patience * ref[1])
            if behind or (self._count[k] >= self._rounds and self._best[k] > self._ratio * leader):
                self._dropped.add(k)
                del self._results[k]

"""Side-by-side tasks: batched requests, the race, errors."""

import pytest

from circuitnn.fitting.lockstep import Lockstep


def _descending(scale: float, steps: int = 30):
    def run(request):
        return min(request(scale * (100 - g)) for g in range(steps))
    return run


def test_requests_are_batched_and_results_routed() -> None:
    batches: list[int] = []

    def batch(reqs):
        batches.append(len(reqs))
        return [2 * r for r in reqs]

    out = Lockstep(batch).run([_descending(1.0), _descending(2.0, steps=10)])
    assert out == [2 * 71.0, 2 * 2 * 91.0]
    # both tasks in every batch while both run, then the longer one alone
    assert batches == [2] * 10 + [1] * 20


def test_race_drops_a_task_far_behind() -> None:
    out = Lockstep(lambda reqs: list(reqs), lambda req, res: res, rounds=5, ratio=2.0).run(
        [_descending(1.0), _descending(3.0), _descending(1.5)])
    assert out[0] == 71.0 and out[1] is None and out[2] == 1.5 * 71.0


def test_patience_drops_a_task_that_has_not_caught_up() -> None:
    """Once a task finished (best 91 in 10 requests), one still above that after 20 requests
    (patience 2) is dropped; one below it runs to its end."""
    calls: list[int] = []

    def batch(reqs):
        calls.append(len(reqs))
        return list(reqs)

    out = Lockstep(batch, lambda req, res: res, patience=2.0).run(
        [_descending(1.0, steps=10), _descending(1.5, steps=40), _descending(0.5, steps=40)])
    assert out == [91.0, None, 0.5 * 61.0]
    assert calls == [3] * 10 + [2] * 10 + [1] * 20


def test_patience_measured_against_the_keep_th_finished_task() -> None:
    """With keep 2, the reference is the second best finished task (best 106.8 in 12
    requests): a task above it is dropped after 24 requests, not 20 as with the best one."""
    calls: list[int] = []

    def batch(reqs):
        calls.append(len(reqs))
        return list(reqs)

    out = Lockstep(batch, lambda req, res: res, patience=2.0, keep=2).run(
        [_descending(1.0, steps=10), _descending(1.2, steps=12), _descending(1.5, steps=40),
         _descending(0.5, steps=40)])
    assert out[:2] == [91.0, pytest.approx(1.2 * 89)] and out[2] is None
    assert out[3] == 0.5 * 61.0
    assert calls == [4] * 10 + [3] * 2 + [2] * 12 + [1] * 16


def test_an_error_reaches_the_caller() -> None:
    def batch(reqs):
        if any(r < 80 for r in reqs):
            raise ValueError("simulation failed")
        return list(reqs)

    with pytest.raises(ValueError, match="simulation failed"):
        Lockstep(batch).run([_descending(1.0), _descending(1.0)])

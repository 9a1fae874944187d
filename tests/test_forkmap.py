"""tuneforge.forkmap: the data stages' ordered map on forked workers."""
from __future__ import annotations

import os
import threading
import time

import pytest

from tuneforge import forkmap
from tuneforge.forkmap import ordered_map


def square_and_pid(i: int) -> tuple[int, int]:
    if i < 5:
        time.sleep(0.05)  # the first span finishes last: an unordered map would show it
    return i * i, os.getpid()


@pytest.mark.parametrize("n", [0, 1, 13, 14, 200])
def test_results_come_in_index_order_from_other_processes(n):
    got = list(ordered_map(square_and_pid, n, workers=2, span=7))
    assert [v for v, _ in got] == [i * i for i in range(n)]
    pids = {pid for _, pid in got}
    if n >= 14:  # two spans or more: forked
        assert os.getpid() not in pids and len(pids) >= 1
    else:  # too little work to fork for
        assert pids <= {os.getpid()}


def test_one_worker_runs_here():
    got = list(ordered_map(square_and_pid, 50, workers=1, span=7))
    assert {pid for _, pid in got} == {os.getpid()}
    assert [v for v, _ in got] == [i * i for i in range(50)]


def test_the_closure_is_inherited_not_pickled():
    lock = threading.Lock()  # not picklable: Pool.map would fail to send it
    data = [f"row {i}" for i in range(100)]
    assert list(ordered_map(lambda i: (data[i], lock.locked()), 100, workers=2, span=8)) == [
        (d, False) for d in data]


def test_a_worker_error_is_raised_here():
    def fail_at_50(i: int) -> int:
        if i == 50:
            raise ValueError("row 50 is bad")
        return i

    with pytest.raises(ValueError, match="row 50 is bad"):
        list(ordered_map(fail_at_50, 100, workers=2, span=8))
    assert forkmap._JOB is None  # cleared: the next map can run
    assert list(ordered_map(lambda i: i, 20, workers=2, span=4)) == list(range(20))


def test_a_nested_map_is_refused():
    with pytest.raises(RuntimeError, match="not reentrant"):
        list(ordered_map(lambda i: list(ordered_map(lambda j: j, 20, workers=2, span=4)), 20,
                         workers=2, span=4))

"""bench=autoscale's and the autoscaling test's reading of a step load: when replicas rose and
fell, and p99 per window, on timelines written by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks.autoscale import Timeline


def timeline(replicas: list[tuple[float, int]], load_s: float = 10.0) -> Timeline:
    answers = [(t / 10, 10.0 if t < 50 else 100.0) for t in range(100)]  # 0-9.9 s
    return Timeline(replicas=replicas, answers=answers, load_s=load_s, failed=0)


def test_up_and_down_are_read_from_the_samples():
    t = timeline([(-1, 1), (0, 1), (3, 1), (4, 2), (6, 3), (11, 2), (12, 1), (13, 1)])
    assert t.at(0.0) == 1 and t.at(5.0) == 2 and t.most() == 3
    assert t.scaled_up_s() == 4
    assert t.scaled_down_s() == 2  # at 12 s, 2 s after the load's end, and it stayed down


def test_a_timeline_that_never_scaled_says_so():
    t = timeline([(-1, 1), (0, 1), (5, 1), (12, 1)])
    assert t.scaled_up_s() is None and t.most() == 1
    assert t.scaled_down_s() == 2  # at the floor at the first sample after the load


def test_down_counts_only_once_it_stays_down():
    t = timeline([(0, 1), (4, 2), (11, 1), (12, 2), (13, 2)])
    assert t.scaled_down_s() is None  # back to 2 at the end
    t = timeline([(0, 1), (4, 2), (11, 1), (12, 2), (14, 1), (15, 1)])
    assert t.scaled_down_s() == 4


def test_p99_per_window_of_answers():
    t = timeline([(0, 1)])
    assert t.p99(0, 5) == pytest.approx(10.0)
    assert t.p99(5, 10) == pytest.approx(100.0)
    assert math.isnan(t.p99(20, 30))  # nothing answered then
    windows = t.windows(5.0)
    assert [w for w, _ in windows] == [5.0, 10.0]
    assert [round(p) for _, p in windows] == [10, 100]

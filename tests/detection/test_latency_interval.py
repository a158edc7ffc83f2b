"""Latency intervals (edgeship/detection/latency.py): variants timed in turns, the interval of the
median from a block bootstrap, and what it says about two equally fast models."""
from __future__ import annotations

import numpy as np
import pytest

from edgeship.detection import latency


class FakeClock:
    """A clock that each fake model advances by its own (noisy) duration."""

    def __init__(self):
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def model(self, name: str, ms: float, noise: float, seed: int):
        rng = np.random.default_rng(seed)

        def run():
            self.calls.append(name)
            self.now += max(0.0, rng.normal(ms, noise)) / 1000.0
        return run


def test_interleaved_runs_take_turns_and_rotate(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    fns = {n: clock.model(n, 1.0, 0.01, i) for i, n in enumerate("abc")}
    stats = latency.interleaved_calls(fns, runs=6, warmup=1, blocks=3)
    timed = clock.calls[3:]  # after one warm-up call each
    assert timed == ["a", "a", "b", "b", "c", "c", "b", "b", "c", "c", "a", "a", "c", "c", "a", "a", "b", "b"]
    assert all(s.runs == 6 and s.blocks == 3 and s.warmup == 1 for s in stats.values())


def test_median_interval_brackets_the_median_and_shrinks_with_runs(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    few = latency.time_calls(clock.model("m", 2.0, 0.2, 0), runs=20, warmup=0, blocks=10)
    many = latency.time_calls(clock.model("m", 2.0, 0.2, 0), runs=400, warmup=0, blocks=10)
    for s in (few, many):
        assert s.ci[0] <= s.median <= s.ci[1] and s.confidence == 0.95
        assert s.to_dict()["ci"] == list(s.ci)
    assert many.ci[1] - many.ci[0] < few.ci[1] - few.ci[0]
    assert many.ci[0] < 2.0 < many.ci[1]


def test_equally_fast_models_overlap_and_a_slower_one_does_not(monkeypatch):
    """0.390 vs 0.393 ms with run-to-run noise of 0.02 ms: a tie; 0.39 vs 0.51 ms: not."""
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    stats = latency.interleaved_calls({"pc": clock.model("pc", 0.390, 0.02, 1), "pt": clock.model("pt", 0.393, 0.02, 2),
                                       "fp32": clock.model("fp32", 0.51, 0.02, 3)}, runs=50, warmup=2)
    pc, pt, fp32 = stats["pc"].ci, stats["pt"].ci, stats["fp32"].ci
    assert pc[0] <= pt[1] and pt[0] <= pc[1]
    assert fp32[0] > max(pc[1], pt[1])


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="runs"):
        latency.interleaved_calls({"a": lambda: None}, runs=0)
    with pytest.raises(ValueError, match="no timed runs"):
        latency.median_interval(np.array([]))

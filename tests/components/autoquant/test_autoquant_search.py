"""The search engine with fake builders/measures: order, stopping, limits, bad input (no TF)."""
from __future__ import annotations

import itertools

import pytest

from components.autoquant.search import CandidateSpec, LayerStat, Measurement, search

# metric per candidate name (higher is better); latency grows as precision grows
METRICS = {"fp32": 0.50, "qat_int8": 0.47, "full_int8": 0.45, "int16x8": 0.495, "float16": 0.4995}
LATENCY = {"qat_int8": 1.0, "full_int8": 1.0, "int16x8": 5.0, "float16": 2.0, "fp32": 2.0}
LAYERS = [LayerStat(name=f"layer_{i}", score=10.0 - i) for i in range(8)]


def fake(gain_per_layer: float = 0.005, fail: tuple[str, ...] = ()):
    built: list[str] = []

    def build(spec: CandidateSpec) -> bytes:
        built.append(spec.name)
        if spec.scheme in fail:
            raise RuntimeError(f"cannot convert {spec.scheme}")
        return b"x" * (100 + len(spec.float_layers))

    def measure(blob: bytes, spec: CandidateSpec) -> Measurement:
        if spec.scheme == "selective_int8":
            k = len(spec.float_layers)
            return Measurement(metric=METRICS["full_int8"] + gain_per_layer * min(k, 4), latency_ms=1.0 + 0.1 * k)
        return Measurement(metric=METRICS[spec.scheme], latency_ms=LATENCY[spec.scheme])
    return build, measure, built


def test_stops_at_first_fitting_candidate_in_speed_order():
    build, measure, built = fake()
    r = search(build, measure, budget_pt=4.0, rank_layers=lambda: LAYERS)
    assert built == ["fp32", "qat_int8"]           # QAT int8 loses 3 pt: fits a 4 pt budget
    assert r.chosen.name == "qat_int8" and r.met_budget and not r.partial
    assert r.candidates[1].delta_pt == pytest.approx(3.0)


def test_selective_int8_adds_worst_layers_step_at_a_time():
    build, measure, built = fake()
    r = search(build, measure, budget_pt=3.5, rank_layers=lambda: list(reversed(LAYERS)), step=2, has_qat=False)
    # full int8 loses 5 pt; 2 float layers → 4 pt; 4 → 3 pt fits
    assert [c.name for c in r.candidates] == ["fp32", "full_int8", "selective_int8_f2", "selective_int8_f4"]
    assert r.chosen.float_layers == ["layer_0", "layer_1", "layer_2", "layer_3"]  # ranked by score, not input order
    assert r.met_budget and r.chosen.delta_pt <= 3.5


def test_selective_stops_when_no_gain_remains_then_falls_through():
    build, measure, built = fake()
    r = search(build, measure, budget_pt=1.0, rank_layers=lambda: LAYERS, step=2, patience=2, has_qat=False)
    names = [c.name for c in r.candidates]
    # gains stop after 4 layers: f6, f8 bring nothing → stop; then int16x8 (0.5 pt) fits
    assert names == ["fp32", "full_int8", "selective_int8_f2", "selective_int8_f4", "selective_int8_f6",
                     "selective_int8_f8", "int16x8"]
    assert r.chosen.name == "int16x8" and r.met_budget


def test_budget_zero_falls_back_to_fp32():
    build, measure, _ = fake()
    r = search(build, measure, budget_pt=0.0, rank_layers=lambda: LAYERS[:2], has_qat=False)
    assert r.chosen.name == "fp32" and r.met_budget and r.stop_reason == "fell back to fp32"


def test_no_candidate_meets_budget_returns_most_accurate_flagged():
    build, measure, _ = fake()
    r = search(build, measure, budget_pt=0.1, max_latency_ms=0.5, rank_layers=lambda: LAYERS)
    assert not r.met_budget and not r.partial
    assert r.chosen.name == "fp32"               # the most accurate, with its figures
    assert "NO candidate meets the budget" in r.message and "fp32" in r.message
    assert all(not c.fits for c in r.candidates)
    assert any("latency" in m for c in r.candidates for m in c.misses)


def test_failed_candidate_is_a_row_not_a_crash():
    build, measure, _ = fake(fail=("int16x8",))
    r = search(build, measure, budget_pt=0.2, rank_layers=lambda: LAYERS[:2], has_qat=False)
    row = next(c for c in r.candidates if c.name == "int16x8")
    assert row.error and "cannot convert int16x8" in row.error and not row.fits
    assert r.chosen.name == "float16"


def test_time_limit_mid_search_returns_best_so_far_partial():
    build, measure, _ = fake()
    ticks = itertools.count(0.0, 10.0)           # each clock read advances 10 s
    r = search(build, measure, budget_pt=0.2, rank_layers=lambda: LAYERS, max_seconds=45.0,
               max_latency_ms=1.5, clock=lambda: next(ticks))
    assert r.partial and "time limit" in r.stop_reason
    assert not r.met_budget and r.chosen is not None
    assert r.chosen.metric == max(c.metric for c in r.candidates if c.metric is not None)
    assert "partial search" in r.message


def test_max_candidates_marks_partial():
    build, measure, built = fake()
    r = search(build, measure, budget_pt=0.2, rank_layers=lambda: LAYERS, max_candidates=2)
    assert built == ["fp32", "qat_int8", "full_int8"] and r.partial
    assert "max_candidates=2" in r.stop_reason


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "1", None])
def test_bad_budget_is_a_clear_error(bad):
    build, measure, built = fake()
    with pytest.raises(ValueError, match="budget_pt"):
        search(build, measure, budget_pt=bad)
    assert built == []


def test_deterministic_choice_and_order():
    runs = []
    for _ in range(2):
        build, measure, _ = fake()
        r = search(build, measure, budget_pt=3.5, rank_layers=lambda: list(reversed(LAYERS)), has_qat=False)
        runs.append(([c.name for c in r.candidates], [c.float_layers for c in r.candidates], r.chosen.name))
    assert runs[0] == runs[1]


def test_selective_builds_that_fail_stop_after_patience():
    build, measure, built = fake(fail=("selective_int8",))
    r = search(build, measure, budget_pt=0.2, rank_layers=lambda: LAYERS, step=1, patience=2, has_qat=False)
    assert [c.name for c in r.candidates][:4] == ["fp32", "full_int8", "selective_int8_f1", "selective_int8_f2"]
    assert "selective_int8_f3" not in [c.name for c in r.candidates]
    assert r.chosen.name == "float16"


def test_per_tensor_full_int8_is_tried_when_full_int8_misses_only_a_size_limit():
    build, base_measure, built = fake()

    def measure(blob, spec):
        m = base_measure(blob, spec) if spec.scheme != "full_int8_pt" else \
            Measurement(metric=0.449, latency_ms=1.0)
        sizes = {"full_int8": 400, "full_int8_pt": 290}  # per-channel tables: the bigger file
        return Measurement(metric=m.metric, latency_ms=m.latency_ms,
                           size_bytes=sizes.get(spec.scheme, 1000))
    r = search(build, measure, budget_pt=6.0, max_size_bytes=300, rank_layers=lambda: LAYERS, has_qat=False)
    assert [c.name for c in r.candidates] == ["fp32", "full_int8", "full_int8_pt"]
    assert r.candidates[1].misses == ["size 400 B > 300 B"]
    assert r.chosen.name == "full_int8_pt" and r.met_budget


def test_per_tensor_is_not_tried_without_a_size_limit():
    build, measure, built = fake()
    search(build, measure, budget_pt=3.5, rank_layers=lambda: LAYERS, step=2, has_qat=False)
    assert "full_int8_pt" not in built

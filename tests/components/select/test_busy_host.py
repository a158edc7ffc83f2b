"""Latency timed on a busy host is not trusted to rank variants: evaluate records the host's load
while it timed them (edgeship.detection.latency.host_conditions), and the gate then ranks by the
scheme's speed class (integer-only int8 < float < dynamic-range int8 < 16x8), ties to the smaller
file, then the more accurate, and says so. The case behind it: raccoon seed 1 (README), timed
beside the test suite, every variant 5x its quiet latency, int8 slower than fp32, and the gate
published dynamic_int8, 3.6x slower than full int8 on a quiet machine."""
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.select.core import decide
from components.select.rules import SCHEME_SPEED_CLASS
from edgeship.contracts import evaluation
from edgeship.contracts.decision import GateConfig
from edgeship.detection import latency


def row(scheme, m, lat, size, delta_ci, lat_ci):
    return {"scheme": scheme, "map": m, "map50": m + 0.3, "size_bytes": size, "delta_map_ci": delta_ci,
            "latency_ms": {"threads_1": {"median": lat, "p90": lat * 1.1, "ci": lat_ci}}}


def seed1_rows():
    """Raccoon seed 1 under load (README): every interval overlapping, int8 slower than fp32."""
    return {"fp32": row("fp32", 0.371, 2.25, 1_894_000, [0.0, 0.0], [1.9, 2.9]),
            "dynamic_int8": row("dynamic_int8", 0.373, 2.40, 675_000, [-0.6, 0.2], [2.0, 3.1]),
            "full_int8": row("full_int8", 0.375, 2.88, 784_000, [-1.08, 0.22], [2.1, 3.3]),
            "qat_int8": row("qat_int8", 0.382, 2.80, 792_000, [-2.52, 0.02], [2.0, 3.2]),
            "int16x8": row("int16x8", 0.372, 3.10, 905_000, [-0.4, 0.2], [2.2, 3.4])}


def report(rows, host):
    return {"dataset_fingerprint": "sha256:x", "images": 29,
            "intervals": {"confidence": 0.95, "resamples": 200, "images": 29},
            "float_keras": {"map": 0.371, "map50": 0.861, "latency_ms": None},
            "latency_host": host, "variants": rows}


BUSY = latency.host_conditions(6.1, 9.4, 2)
QUIET = latency.host_conditions(0.3, 0.9, 2)


def test_host_conditions_say_busy_above_one_runnable_thread_per_cpu():
    assert BUSY["busy"] and BUSY["load_per_cpu"] == pytest.approx(4.7) and BUSY["cpus"] == 2
    assert not QUIET["busy"] and QUIET["load_per_cpu"] == pytest.approx(0.45)
    assert not latency.host_conditions(None, None, 2)["busy"]  # no reading: not busy, and says None
    assert latency.host_conditions(None, 2.2, 2)["busy"]        # one reading is enough


def test_on_a_busy_host_the_gate_takes_integer_only_int8_not_the_smallest_file():
    busy = decide(report(seed1_rows(), BUSY), GateConfig(accuracy_budget=1.0), None)
    assert busy.chosen == "full_int8" and busy.publish  # class 0, the smaller of full/qat int8
    assert any("latency not trusted" in r and "load average 9.40 on 2 CPUs" in r for r in busy.reasons)
    assert any("busy host" in r and "integer-only int8" in r for r in busy.rules)
    assert busy.evidence["latency_trusted"] is False and busy.evidence["latency_host"]["busy"] is True
    # the same figures on a quiet host: every interval overlaps fp32's, the smallest file wins
    quiet = decide(report(seed1_rows(), QUIET), GateConfig(accuracy_budget=1.0), None)
    assert quiet.chosen == "dynamic_int8" and quiet.evidence["latency_trusted"] is True
    assert not any("latency not trusted" in r for r in quiet.reasons)


def test_a_report_without_the_host_reading_is_judged_on_latency_as_before():
    doc = report(seed1_rows(), None)
    del doc["latency_host"]
    assert decide(doc, GateConfig(accuracy_budget=1.0), None).chosen == "dynamic_int8"


def test_the_decision_json_keeps_the_schemes_and_the_host(tmp_path):
    from edgeship.contracts.decision import Decision

    d = decide(report(seed1_rows(), BUSY), GateConfig(accuracy_budget=1.0), None)
    doc = json.loads(json.dumps(d.to_dict()))
    assert {c["name"]: c["scheme"] for c in doc["candidates"]}["qat_int8"] == "qat_int8"
    assert Decision.from_dict(doc).evidence["latency_host"]["load_1min_after"] == 9.4


SCHEMES = sorted(SCHEME_SPEED_CLASS)


@settings(max_examples=150, deadline=None)
@given(rows=st.dictionaries(
    st.sampled_from(SCHEMES),
    st.tuples(st.floats(0.1, 0.6), st.floats(0.05, 30.0), st.integers(100_000, 3_000_000),
              st.floats(-2.0, 2.0), st.floats(0.0, 2.0)),
    min_size=1, max_size=len(SCHEMES)))
def test_busy_choice_is_the_fastest_class_then_smallest_then_most_accurate(rows):
    """Whatever the measured latencies, a busy host's choice among the variants within the
    budget is the lowest speed class, then the smallest file, then the highest mAP."""
    doc = report({name: row(name, m, lat, size, [lo, lo + width], [lat * 0.9, lat * 1.1])
                  for name, (m, lat, size, lo, width) in rows.items()}, BUSY)
    d = decide(doc, GateConfig(accuracy_budget=1.0), None)
    within = [c for c in d.candidates if c.eligible]
    if not within:
        assert not d.publish
        return
    best = min(within, key=lambda c: (SCHEME_SPEED_CLASS[c.name], c.size_bytes, -c.map, c.name))
    assert d.chosen == best.name and d.publish


def test_where_others_cpu_time_is_known_it_decides_and_own_load_does_not_count():
    """The evaluation's own threads (one LiteRT interpreter per core) lift the load average; what
    other processes took of this process's CPUs while the latencies were timed is what counts."""
    own_load_only = latency.host_conditions(1.9, 1.7, 2, others=0.1)  # load 0.95/CPU, others quiet
    assert not own_load_only["busy"] and own_load_only["others_per_cpu"] == pytest.approx(0.05)
    beside_tests = latency.host_conditions(2.2, 2.2, 2, others=1.3)   # measured beside the test suite
    assert beside_tests["busy"] and beside_tests["others_per_cpu"] == pytest.approx(0.65)
    text = evaluation.host_busy_text(beside_tests)
    assert "other processes kept 1.30 of 2 CPUs busy" in text and "0.65 per CPU > 0.5" in text
    assert "load average 9.40 on 2 CPUs" in evaluation.host_busy_text(BUSY)  # no others figure: the load


@settings(max_examples=200, deadline=None)
@given(others=st.one_of(st.none(), st.floats(0, 64)), load=st.one_of(st.none(), st.floats(0, 200)),
       cpus=st.integers(1, 64))
def test_busy_follows_others_when_measured_else_the_load(others, load, cpus):
    host = latency.host_conditions(load, load, cpus, others=others)
    if others is not None:
        assert host["busy"] == (others / cpus > latency.BUSY_OTHERS_PER_CPU)
    else:
        assert host["busy"] == (load is not None and load / cpus > latency.BUSY_LOAD_PER_CPU)


def test_others_meter_subtracts_this_process(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 12.5)])  # host +3 CPU-s, this process +2.5 of them
    monkeypatch.setattr(latency, "_cpu_seconds", lambda: next(readings))
    clock = iter([50.0, 52.0, 60.0, 61.0])
    assert latency.OthersMeter(lambda: next(clock)).read() == pytest.approx(0.25)  # 0.5 CPU-s over 2 s
    monkeypatch.setattr(latency, "_cpu_seconds", lambda: None)  # no /proc/stat: unknown
    assert latency.OthersMeter(lambda: next(clock)).read() is None


def test_cpu_seconds_counts_this_process_on_its_cpus():
    start = latency.cpu_seconds()
    if start is None:
        pytest.skip("no /proc/stat here")
    t = time.process_time()
    while time.process_time() - t < 0.3:  # keep one CPU busy for 0.3 s
        pass
    end = latency.cpu_seconds()
    own = end[1] - start[1]
    assert own >= 0.25
    assert end[0] - start[0] >= own - 0.05  # the host's busy time includes ours (10 ms ticks)

"""benchmarks/model_chain.py's table and target checks (the chain itself is a benchmark, not a test)."""
import json

import pytest

from benchmarks.model_chain import chain_table, check_targets, qat_step_ratio, render


def row(map_, size, lat, delta):
    return {"map": map_, "map50": map_ + 0.3, "size_bytes": size, "delta_map_vs_float": delta,
            "latency_ms": {"threads_1": {"median": lat, "p90": lat * 1.1},
                           "threads_N": {"median": lat / 2, "p90": lat / 1.8}, "N": 2}}


REPORT = {
    "float_keras": {"map": 0.60, "map50": 0.85},
    "variants": {"fp32": row(0.60, 1000, 4.0, 0.0), "dynamic_int8": row(0.598, 300, 6.0, 0.2),
                 "full_int8": row(0.585, 280, 1.8, 1.5), "qat_int8": row(0.597, 280, 1.8, 0.3)},
    "images": 10, "objects": 30, "latency_runs": 50,
}


def test_table_has_every_variant_with_ratios_to_fp32():
    header, rows = chain_table(REPORT)
    assert header[0] == "variant" and "latency 2T (ms)" in header
    by_name = {r[0]: r for r in rows}
    assert list(by_name) == ["float (Keras)", "fp32", "dynamic_int8", "full_int8", "qat_int8"]
    assert by_name["full_int8"][2] == "0.280" and by_name["full_int8"][8] == "0.450"
    assert by_name["dynamic_int8"][8] == "1.500"


def test_targets_met_and_not_met(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps({"step_time": {"float_ms": 10.0, "qat_ms": 12.0}}))
    ratio, _ = qat_step_ratio(tmp_path)
    assert ratio == pytest.approx(1.2)
    verdicts = {t.name: t.met for t in check_targets(REPORT, ratio)}
    assert verdicts["float detector mAP@.5 on val"] is True
    assert verdicts["QAT int8 ΔmAP@[.5:.95] vs float (pt)"] is True
    assert verdicts["PTQ full int8 ΔmAP@[.5:.95] vs float (pt)"] is False  # 1.5 > 1.0
    assert verdicts["full int8 size ÷ fp32 .tflite (per-channel: full_int8)"] is True
    assert verdicts["full int8 1-thread latency ÷ fp32 (per-channel: full_int8)"] is True
    assert verdicts["QAT step time ÷ float step time"] is True
    assert not any("per-tensor" in name for name in verdicts)  # no full_int8_pt in this report


def test_per_tensor_full_int8_is_checked_when_present():
    report = json.loads(json.dumps(REPORT))
    report["variants"]["full_int8"] = row(0.585, 400, 3.0, 0.4)      # 0.40x size, 0.75x latency
    report["variants"]["full_int8_pt"] = row(0.59, 290, 2.9, 1.2)    # 0.29x size, 0.725x latency
    verdicts = {t.name: t.met for t in check_targets(report, None)}
    assert verdicts["full int8 size ÷ fp32 .tflite (per-channel: full_int8)"] is False
    assert verdicts["full int8 size ÷ fp32 .tflite (per-tensor: full_int8_pt)"] is True
    assert verdicts["full int8 1-thread latency ÷ fp32 (per-tensor: full_int8_pt)"] is False
    assert verdicts["PTQ full int8 per-tensor ΔmAP@[.5:.95] vs float (pt)"] is False  # 1.2 > 1.0
    md = render(REPORT, check_targets(REPORT, None), {"epochs": 1}, {"train": 3.0})
    assert "| qat_int8 |" in md and "not measured" in md and "**not met**" in md


def test_missing_qat_history_is_not_measured(tmp_path):
    assert qat_step_ratio(tmp_path)[0] is None
    assert qat_step_ratio(None)[0] is None

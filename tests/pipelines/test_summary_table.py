"""The main job's summary table, for both candidate sources."""
import io

from rich.console import Console

from edgeship.cli.display import _Progress, summary_table


def render(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return out.getvalue()


def row(map_, size, lat):
    return {"map": map_, "map50": map_ + 0.1, "size_bytes": size, "latency_ms": {"threads_1": {"median": lat}}}


def test_auto_quantize_report_takes_the_fp32_size_from_the_search():
    report = {"float_keras": {"map": 0.30, "map50": 0.42}, "variants": {"qat_int8": row(0.31, 1024 * 400, 0.38)},
              "autoquant": {"candidates": [{"name": "fp32", "size_bytes": 1024 * 2000},
                                           {"name": "qat_int8", "size_bytes": 1024 * 400}]}}
    decision = {"chosen": "qat_int8", "publish": True,
                "candidates": [{"name": "qat_int8", "eligible": True, "delta_map_pts": -1.0}]}
    text = render(summary_table(report, decision))
    line = next(ln for ln in text.splitlines() if "qat_int8" in ln)
    assert "0.20" in line and "CHOSEN (published)" in line  # 400 KB / 2000 KB


def test_fixed_variants_report_marks_why_others_were_passed_over():
    report = {"variants": {"fp32": row(0.30, 2000, 0.5), "full_int8": row(0.28, 800, 0.4)}}
    decision = {"chosen": "fp32", "publish": False, "candidates": [
        {"name": "fp32", "eligible": True, "delta_map_pts": 0.0},
        {"name": "full_int8", "eligible": False, "delta_map_pts": 2.0, "why": ["ΔmAP 2.00 > 1.00"]}]}
    text = render(summary_table(report, decision))
    assert "ΔmAP 2.00 > 1.00" in text and "CHOSEN (not published)" in text
    assert "0.40" in next(ln for ln in text.splitlines() if "full_int8" in ln)


def test_a_variant_set_aside_by_quantize_gets_a_row_with_the_reason():
    report = {"variants": {"fp32": row(0.30, 2000, 0.5)},
              "set_aside": [{"name": "full_int8_pt", "stage": "validate-after", "error": "quantize "
                             "[validate-after] full_int8_pt: parity outside tolerance: {'score_max_abs': 0.258}"}]}
    decision = {"chosen": "fp32", "publish": True, "candidates": [
        {"name": "fp32", "eligible": True, "delta_map_pts": 0.0}]}
    line = next(ln for ln in render(summary_table(report, decision)).splitlines() if "full_int8_pt" in ln)
    assert "set aside by quantize: parity outside tolerance" in line


def test_progress_shows_a_branch_step_under_its_plain_name():
    from types import SimpleNamespace

    out = io.StringIO()
    progress = _Progress(Console(file=out, width=120), ("evaluate", "select"))
    with progress:
        progress(SimpleNamespace(kind="start", task="evaluate-2", status=None, line=None))
        progress(SimpleNamespace(kind="finish", task="evaluate-2", status="SUCCESS", line=None))
        progress(SimpleNamespace(kind="finish", task="select", status="CACHED", line=None))
    assert list(progress.rows) == ["evaluate", "select"]
    assert progress.rows["evaluate"]["status"] == "SUCCESS" and progress.rows["select"]["status"] == "CACHED"
    assert "↺ select CACHED" in out.getvalue()


def test_with_views_the_delta_column_says_it_is_the_gates_over_the_views():
    report = {"variants": {"fp32": row(0.30, 2000, 0.5), "full_int8": row(0.28, 800, 0.4)},
              "intervals": {"views": {"photos": 29, "per_image": 4}}}
    decision = {"chosen": "full_int8", "publish": True, "candidates": [
        {"name": "fp32", "eligible": True, "delta_map_pts": 0.0},
        {"name": "full_int8", "eligible": True, "delta_map_pts": 0.27}]}
    text = render(summary_table(report, decision))
    assert "ΔmAP views (pt)" in text and "29 val photos each in 4 views" in text
    assert "0.27" in next(ln for ln in text.splitlines() if "full_int8" in ln)
    assert "views" not in render(summary_table({"variants": report["variants"]}, decision))

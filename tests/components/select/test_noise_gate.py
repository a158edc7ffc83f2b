"""The gate that knows noise: ΔmAP judged by its interval's upper bound, latency ties by
overlapping intervals (smaller file, then more accurate), a val split too small to decide, the
quality floor on a first release, every rule written in the decision, and format-1 decisions."""
import json

import pytest

from components.select import core
from components.select.core import decide
from components.select.report import explain_refusal, render_markdown
from edgeship.contracts import decision as decision_contract
from edgeship.contracts.decision import Champion, Decision, GateConfig


def row(m, lat, size, delta_ci=None, lat_ci=None, map50=None):
    return {"map": m, "map50": map50 if map50 is not None else m + 0.2, "size_bytes": size,
            "delta_map_ci": delta_ci,
            "latency_ms": {"threads_1": {"median": lat, "p90": lat * 1.1, "ci": lat_ci}}}


def report(rows, images=300, float_map=0.50):
    return {"dataset_fingerprint": "sha256:x", "images": images,
            "intervals": {"confidence": 0.95, "resamples": 200, "images": images},
            "float_keras": {"map": float_map, "map50": float_map + 0.2, "latency_ms": None},
            "variants": rows}


def test_tie_rule_picks_the_smaller_of_two_equally_fast_variants():
    """The embedded data's case: per-channel 0.390 ms vs per-tensor 0.393 ms, 40% larger file."""
    d = decide(report({
        "fp32": row(0.500, 0.51, 2_081_396, [0.0, 0.0], [0.50, 0.52]),
        "full_int8": row(0.496, 0.390, 839_392, [0.1, 0.7], [0.385, 0.396]),
        "full_int8_pt": row(0.495, 0.393, 598_048, [0.2, 0.8], [0.388, 0.399]),
    }), GateConfig(accuracy_budget=1.0), champion=None)
    assert d.publish and d.chosen == "full_int8_pt" and d.outcome == "passed"
    assert any("tied on latency with 'full_int8_pt'" in r and "the smaller file" in r for r in d.reasons)


def test_tie_on_size_goes_to_the_more_accurate_and_no_overlap_is_no_tie():
    rows = {"a": row(0.490, 0.40, 1000, [0.5, 1.0], [0.39, 0.41]),
            "b": row(0.495, 0.40, 1000, [0.0, 0.9], [0.39, 0.41]),
            "c": row(0.480, 0.50, 500, [1.0, 1.5], [0.49, 0.51])}
    assert decide(report(rows), GateConfig(accuracy_budget=1.0), None).chosen == "b"
    rows["a"]["latency_ms"]["threads_1"]["ci"] = [0.30, 0.38]  # faster, intervals apart: no tie
    rows["a"]["latency_ms"]["threads_1"]["median"] = 0.34
    assert decide(report(rows), GateConfig(accuracy_budget=1.0), None).chosen == "a"


def test_within_budget_means_the_upper_bound():
    rows = {"fp32": row(0.500, 0.51, 2000, [0.0, 0.0], [0.50, 0.52]),
            "full_int8": row(0.492, 0.39, 800, [0.5, 1.1], [0.38, 0.40])}  # point 0.8 ≤ 1.0, upper 1.1
    d = decide(report(rows), GateConfig(accuracy_budget=1.0), None)
    assert d.chosen == "fp32" and d.outcome == "passed" and d.publish
    int8 = next(c for c in d.candidates if c.name == "full_int8")
    assert not int8.eligible and int8.accuracy == "undecided"
    assert int8.delta_map_ci == [0.5, 1.1] and int8.latency_ci == [0.38, 0.40]
    assert "upper bound 1.10 > budget 1.00 pt" in int8.why[0]
    assert int8.images_to_settle == 675  # ⌈300 × (0.3 / 0.2)²⌉: narrow enough, then it fits
    assert any("upper bound of its 95% paired bootstrap interval" in r for r in d.rules)


def test_a_too_small_val_split_cannot_decide_and_says_how_many_images():
    rows = {"fp32": row(0.500, 0.51, 2000, [0.0, 0.0], [0.50, 0.52]),
            "full_int8": row(0.485, 0.39, 800, [-1.0, 4.0], [0.38, 0.40]),  # ±2.5 pt on 30 images
            "int16x8": row(0.499, 25.0, 1000, [-2.0, 2.4], [24.0, 26.0])}   # undecided but slower
    d = decide(report(rows, images=30), GateConfig(accuracy_budget=1.0), None)
    assert d.outcome == "cannot_decide" and d.chosen == "fp32"
    reason = next(r for r in d.reasons if r.startswith("cannot decide"))
    assert "val split (30 images) is too small for a 1.00 pt budget" in reason
    assert "'full_int8'" in reason and "'int16x8'" not in reason
    assert "about 188 val images would be needed" in reason  # ⌈30 × (2.5 / 1.0)²⌉
    assert "the choice is 'fp32', the fastest variant shown within the budget" in reason
    assert d.evidence["images_needed"] == 188 and d.evidence["val_images"] == 30
    # the safe choice is still published (it is within the budget), and the decision says why
    assert d.publish and not d.forced and d.reasons[-1] == "decision: publish 'fp32'"
    assert render_markdown(d).startswith("# Gate decision: PUBLISH (val split too small to judge")


def test_nothing_shown_within_and_too_wide_cannot_decide_and_does_not_publish():
    rows = {"full_int8": row(0.49, 0.39, 800, [-1.5, 3.5], [0.38, 0.40])}
    d = decide(report(rows, images=20), GateConfig(accuracy_budget=1.0), None)
    assert d.outcome == "cannot_decide" and d.chosen is None and not d.publish
    assert any("no variant is shown within the budget" in r for r in d.reasons)
    assert d.reasons[-1] == "decision: NOT publishing (cannot decide)"
    assert render_markdown(d).startswith("# Gate decision: CANNOT DECIDE: NOT PUBLISHED")
    forced = decide(report(rows, images=20), GateConfig(accuracy_budget=1.0, force_promote=True), None)
    assert forced.publish and forced.forced and forced.chosen == "full_int8" and forced.outcome == "cannot_decide"


def test_clearly_over_budget_is_refused_not_undecided():
    rows = {"full_int8": row(0.47, 0.39, 800, [2.0, 4.0], [0.38, 0.40])}
    d = decide(report(rows, images=30), GateConfig(accuracy_budget=1.0), None)
    assert d.outcome == "refused" and not d.publish
    assert "even the lower bound is > budget" in d.candidates[0].why[0]
    assert any("no variant within the budget" in r and "upper bound 4.00 pt" in r for r in d.reasons)


def test_quality_floor_refuses_a_first_release_unless_forced():
    rows = {"fp32": row(0.149, 0.51, 2000, [0.0, 0.0], [0.50, 0.52], map50=0.25),
            "qat_int8": row(0.148, 0.38, 800, [0.0, 0.3], [0.37, 0.39], map50=0.24)}
    low = report(rows, float_map=0.149)
    d = decide(low, GateConfig(accuracy_budget=1.0, min_map50=0.3), champion=None)
    assert not d.publish and d.outcome == "refused" and d.chosen is None
    assert all("mAP@.5" in c.why[-1] and "< quality floor 0.3000" in c.why[-1] for c in d.candidates)
    assert any("no variant meets the quality floor" in r for r in d.reasons)
    assert any(r.startswith("quality floor: mAP@.5 ≥ 0.3000") and "the first one included" in r for r in d.rules)
    forced = decide(low, GateConfig(accuracy_budget=1.0, min_map50=0.3, force_promote=True), champion=None)
    assert forced.publish and forced.forced and forced.chosen == "fp32"
    off = decide(low, GateConfig(accuracy_budget=1.0), champion=None)  # the default: off, and said so
    assert off.publish and any("first release" in r and "no quality floor configured" in r for r in off.reasons)
    on_map = decide(low, GateConfig(accuracy_budget=1.0, min_map=0.2), champion=None)
    assert not on_map.publish and "mAP 0.1480 < quality floor 0.2000" in on_map.candidates[1].why


def test_the_floor_passes_the_main_jobs_model_and_applies_with_a_champion():
    rows = {"qat_int8": row(0.415, 0.38, 800, [-0.3, 0.6], [0.37, 0.39], map50=0.548)}
    d = decide(report(rows, float_map=0.417), GateConfig(min_map50=0.3), Champion("v1", 0.41, source="t"))
    assert d.publish and d.chosen == "qat_int8"
    d = decide(report(rows, float_map=0.417), GateConfig(min_map50=0.6), Champion("v1", 0.41, source="t"))
    assert not d.publish


def test_reports_without_intervals_use_point_estimates_and_say_so():
    rows = {"full_int8": {"map": 0.495, "size_bytes": 10, "latency_ms": {"threads_1": {"median": 1.0}}}}
    d = decide({"float_keras": {"map": 0.5}, "variants": rows}, GateConfig(accuracy_budget=1.0), None)
    assert d.publish and d.outcome == "passed"
    assert "point estimate: the report has no intervals" in d.rules[0]
    assert d.evidence["intervals"] is False


def test_every_rule_is_written_in_decision_json(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.json").write_text(json.dumps(report({
        "fp32": row(0.500, 0.51, 2000, [0.0, 0.0], [0.50, 0.52]),
        "full_int8": row(0.495, 0.39, 800, [0.1, 0.9], [0.38, 0.40])})))
    core.select_step(evaluation_dir=str(tmp_path / "eval"), model_name="m", channel="c", bucket="",
                     accuracy_budget="1.0", latency_budget_ms=0.0, tolerance=0.5, force_promote=False,
                     out_json=str(tmp_path / "d.json"), out_md=str(tmp_path / "d.md"),
                     champion_lookup=lambda m, c: None, min_map50=0.3)
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["format_version"] == 2 and saved["outcome"] == "passed" and saved["chosen"] == "full_int8"
    assert saved["config"]["min_map50"] == 0.3 and saved["config"]["min_map"] == 0.0
    text = " | ".join(saved["rules"])
    for phrase in ("upper bound of its 95% paired bootstrap interval", "too small to decide",
                   "intervals overlap the fastest one's are tied", "smaller file, then the more accurate",
                   "quality floor: mAP@.5 ≥ 0.3000", "champion:", "force-promote: off"):
        assert phrase in text, phrase
    cand = next(c for c in saved["candidates"] if c["name"] == "full_int8")
    assert cand["delta_map_ci"] == [0.1, 0.9] and cand["accuracy"] == "within"
    assert decision_contract.load(tmp_path / "d.json").rules == saved["rules"]
    with pytest.raises(ValueError, match="min_map50 must be an mAP in 0..1"):
        core.select_step(evaluation_dir=str(tmp_path / "eval"), model_name="m", channel="c", bucket="",
                         accuracy_budget="1.0", latency_budget_ms=0.0, tolerance=0.5, force_promote=False,
                         out_json="x", out_md="y", min_map50=30)


OLD_DECISION = {
    "format_version": 1, "publish": True, "chosen": "qat_int8", "forced": False,
    "reasons": ["1 of 1 variants within ΔmAP ≤ 1.00 pt; fastest: 'qat_int8' (0.38 ms, ΔmAP 0.15 pt)",
                "decision: publish 'qat_int8'"],
    "config": {"accuracy_budget": 1.0, "latency_budget_ms": 0.0, "tolerance": 0.5, "force_promote": False},
    "float_reference": {"name": "float_keras", "map": 0.415}, "champion": None,
    "dataset_fingerprint": "sha256:cc0f", "inputs": {"evaluation": "/runs/x"},
    "candidates": [{"name": "qat_int8", "map": 0.4135, "delta_map_pts": 0.15, "latency_ms": 0.38,
                    "size_bytes": 847568, "eligible": True, "why": []}],
}


def test_a_format_1_decision_still_loads(tmp_path):
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(OLD_DECISION))
    d = decision_contract.load(path)
    assert d.publish and d.chosen == "qat_int8" and d.outcome == "passed" and d.rules == []
    assert d.config.min_map == 0.0 and d.config.min_map50 == 0.0
    assert d.candidates[0].delta_map_ci is None and d.candidates[0].accuracy == ""
    refused = dict(OLD_DECISION, publish=False, chosen=None)
    assert Decision.from_dict(refused).outcome == "refused"
    with pytest.raises(ValueError, match="format_version 3"):
        Decision.from_dict(dict(OLD_DECISION, format_version=3))
    assert "# Gate decision: PUBLISH" in render_markdown(d)


def test_not_published_message_says_cannot_decide(tmp_path):
    rows = {"full_int8": row(0.49, 0.39, 800, [-1.5, 3.5], [0.38, 0.40])}
    d = decide(report(rows, images=20), GateConfig(accuracy_budget=1.0), None)
    decision_contract.save(d, tmp_path / "d.json")
    message = explain_refusal(tmp_path / "d.json", tmp_path / "why.md")
    assert message.startswith("NOT PUBLISHED: the quality gate could not decide")
    assert "val images would be needed" in message


def test_with_views_the_gate_judges_the_delta_over_the_views_and_says_so():
    """The raccoon case: 29 photos, every int8 interval 4 pt wide on the photos alone; over the
    photos with their views (drawn by photo) full int8 is shown within 1.0 pt."""
    def viewed(r, delta, ci):
        return {**r, "delta_map_views": delta, "delta_map_views_ci": ci}

    rows = {"fp32": viewed(row(0.2665, 0.58, 1894, [0.0, 0.0], [0.56, 0.62]), 0.0, [0.0, 0.0]),
            "full_int8": viewed(row(0.2755, 0.44, 784, [-3.01, 1.48], [0.42, 0.58]), -0.44, [-1.17, 0.35]),
            "qat_int8": viewed(row(0.2685, 0.44, 792, [-2.73, 2.06], [0.42, 0.45]), -0.27, [-2.26, 1.41])}
    doc = report(rows, images=29, float_map=0.2665)
    doc["intervals"]["views"] = {"per_image": 4, "kinds": ["photo", "mirror", "crop85", "crop85_mirror"],
                                 "photos": 29, "scored_images": 116}
    d = decide(doc, GateConfig(accuracy_budget=1.0), None)
    by = {c.name: c for c in d.candidates}
    assert by["full_int8"].accuracy == "within" and by["full_int8"].delta_map_pts == -0.44
    assert by["full_int8"].delta_map_ci == [-1.17, 0.35]
    assert by["qat_int8"].accuracy == "undecided"
    assert d.publish and d.chosen == "full_int8"  # qat_int8 (as fast) is not shown within
    assert any("each scored in 4 views (photo, mirror, crop85, crop85_mirror)" in r for r in d.rules)
    assert d.evidence["views_per_image"] == 4
    # the same rows without the views: every int8 variant is undecided on the photos alone
    plain = decide(report({k: {kk: vv for kk, vv in v.items() if not kk.startswith("delta_map_views")}
                           for k, v in rows.items()}, images=29, float_map=0.2665), GateConfig(accuracy_budget=1.0), None)
    assert {c.name: c.accuracy for c in plain.candidates}["full_int8"] == "undecided"
    assert plain.chosen == "fp32" and plain.outcome == "cannot_decide"

"""The quality gate's decisions, on hand-made evaluation reports (no TF, no stack)."""
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.select import core
from components.select.core import decide
from edgeship.contracts import budget
from edgeship.contracts.decision import Champion, GateConfig


def make_report(rows: dict[str, tuple[float, float, int]], float_map: float = 0.50,
                fingerprint: str = "sha256:aaaa") -> dict:
    """rows: name -> (mAP 0..1, 1-thread median latency ms, size bytes)."""
    return {
        "dataset_fingerprint": fingerprint,
        "split": "val",
        "float_keras": {"map": float_map, "latency_ms": None, "size_bytes": None},
        "variants": {
            name: {"map": m, "size_bytes": s, "delta_map_vs_float": float_map - m,
                   "latency_ms": {"threads_1": {"median": lat, "p90": lat * 1.1},
                                  "threads_N": {"median": lat / 2, "p90": lat / 2}, "N": 2}}
            for name, (m, lat, s) in rows.items()
        },
    }


REPORT = make_report({
    "fp32": (0.500, 10.0, 4_000_000),
    "dynamic_int8": (0.498, 14.0, 1_100_000),
    "float16": (0.500, 9.9, 2_000_000),
    "full_int8": (0.488, 5.0, 1_050_000),   # -1.2 pt
    "qat_int8": (0.496, 5.1, 1_050_000),    # -0.4 pt
    "int16x8": (0.499, 30.0, 1_200_000),
})


def test_within_budget_picks_fastest_eligible():
    d = decide(REPORT, GateConfig(accuracy_budget=1.0), champion=None)
    assert d.publish and d.chosen == "qat_int8"  # full_int8 is faster but 1.2 pt > 1.0 pt
    full = next(c for c in d.candidates if c.name == "full_int8")
    assert not full.eligible and "budget 1.00 pt" in full.why[0]
    assert any("first release" in r for r in d.reasons)


def test_looser_budget_picks_the_faster_full_int8():
    d = decide(REPORT, GateConfig(accuracy_budget=2.0), champion=None)
    assert d.publish and d.chosen == "full_int8"


def test_over_budget_refuses_and_says_why():
    report = make_report({"fp32": (0.45, 10, 4), "full_int8": (0.40, 5, 1)}, float_map=0.50)
    d = decide(report, GateConfig(accuracy_budget=1.0), champion=None)
    assert not d.publish and d.chosen is None
    assert any("no variant within the budget" in r and "5.00 pt" in r for r in d.reasons)
    assert d.reasons[-1] == "decision: NOT publishing"


def test_latency_budget_excludes_slow_variants():
    d = decide(REPORT, GateConfig(accuracy_budget=0.15, latency_budget_ms=12.0), champion=None)
    # within 0.15 pt: fp32 (0), float16 (0), int16x8 (0.1 pt, but 30 ms) → fastest is float16
    assert d.chosen == "float16"
    slow = next(c for c in d.candidates if c.name == "int16x8")
    assert not slow.eligible and "latency 30.00 ms > budget 12.00 ms" in slow.why


def test_no_budget_configured_picks_most_accurate():
    d = decide(REPORT, GateConfig(accuracy_budget=None), champion=None)
    assert d.publish and d.chosen == "float16"  # mAP 0.500 like fp32, but faster
    assert "no accuracy budget configured" in d.reasons[0]


def test_champion_within_tolerance_publishes():
    champ = Champion(version="v1", map=0.499, source="test")
    d = decide(REPORT, GateConfig(accuracy_budget=1.0, tolerance=0.5), champ)
    assert d.publish and any("not worse than champion v1" in r for r in d.reasons)


def test_champion_better_beyond_tolerance_blocks():
    champ = Champion(version="v1", map=0.520, source="test")
    d = decide(REPORT, GateConfig(accuracy_budget=1.0, tolerance=0.5), champ)
    assert not d.publish and d.chosen == "qat_int8"
    assert any("worse than champion v1" in r and "2.40 pt > tolerance 0.50 pt" in r for r in d.reasons)


def test_champion_from_other_dataset_is_noted():
    champ = Champion(version="v1", map=0.40, dataset_fingerprint="sha256:bbbb", source="test")
    d = decide(REPORT, GateConfig(), champ)
    assert d.publish and any("another dataset" in r for r in d.reasons)


def test_force_promote_overrides_a_failed_gate():
    report = make_report({"fp32": (0.45, 10, 4), "full_int8": (0.40, 5, 1)}, float_map=0.50)
    d = decide(report, GateConfig(accuracy_budget=1.0, force_promote=True), champion=None)
    assert d.publish and d.forced and d.chosen == "fp32"  # the most accurate when none fits
    assert any("force-promote" in r for r in d.reasons)


def test_force_promote_over_champion():
    champ = Champion(version="v1", map=0.90, source="test")
    d = decide(REPORT, GateConfig(force_promote=True), champ)
    assert d.publish and d.forced and d.chosen == "qat_int8"


def test_force_promote_without_failure_is_not_marked_forced():
    d = decide(REPORT, GateConfig(force_promote=True), champion=None)
    assert d.publish and not d.forced


@pytest.mark.parametrize("bad", ["-1", -0.5, "abc", "nan", True, [1]])
def test_bad_budget_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="accuracy budget"):
        budget.parse_budget(bad)


@pytest.mark.parametrize("text,value", [("", None), ("none", None), ("0", 0.0), (" 1.5 ", 1.5), (2, 2.0)])
def test_parse_budget(text, value):
    assert budget.parse_budget(text) == value


def test_gate_config_rejects_negative_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        GateConfig(tolerance=-1)


def test_report_without_variants_or_float_reference():
    with pytest.raises(ValueError, match="no variants"):
        decide({"variants": {}}, GateConfig(), None)
    with pytest.raises(ValueError, match="no float reference"):
        decide({"variants": {"full_int8": {"map": 0.3}}}, GateConfig(), None)


def test_select_step_writes_json_markdown_html(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.json").write_text(json.dumps(REPORT))
    d = core.select_step(evaluation_dir=str(tmp_path / "eval"), model_name="m", channel="stable",
                         bucket="", accuracy_budget="1.0", latency_budget_ms=0.0, tolerance=0.5,
                         force_promote=False, out_json=str(tmp_path / "d.json"),
                         out_md=str(tmp_path / "d.md"), out_html=str(tmp_path / "d.html"),
                         champion_lookup=lambda model, channel: Champion("v7", 0.495, source="t"))
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["publish"] is True and saved["chosen"] == "qat_int8" == d.chosen
    assert saved["champion"]["version"] == "v7" and saved["config"]["accuracy_budget"] == 1.0
    md = (tmp_path / "d.md").read_text()
    assert md.startswith("# Gate decision: PUBLISH") and "| qat_int8 ← |" in md
    assert "&lt;" not in md and "<pre" in (tmp_path / "d.html").read_text()


def test_select_step_rejects_bad_budget_before_reading(tmp_path):
    with pytest.raises(ValueError, match="accuracy_budget must be >= 0.*'-2'"):
        core.select_step(evaluation_dir=str(tmp_path), model_name="m", channel="c", bucket="",
                         accuracy_budget="-2", latency_budget_ms=0, tolerance=0.5,
                         force_promote=False, out_json="x", out_md="y")


def test_missing_report_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="report.json"):
        core.run_select(tmp_path, tmp_path / "d.json", tmp_path / "d.md", config=GateConfig(), champion=None)


def test_champion_from_manifest_reads_metrics():
    c = core.champion_from_manifest({"version": "20261124-1", "metrics": {"map": 0.41},
                                     "dataset_fingerprint": "sha256:x"}, source="gs://b/m")
    assert c.version == "20261124-1" and c.map == 0.41 and c.dataset_fingerprint == "sha256:x"


def test_latency_budget_nobody_meets_names_the_fastest():
    d = decide(REPORT, GateConfig(accuracy_budget=1.0, latency_budget_ms=3.0), champion=None)
    assert not d.publish
    assert "none the latency budget 3.00 ms (fastest of them: 'qat_int8', 5.10 ms)" in d.reasons[0]


def test_a_champion_with_other_labels_refuses_whatever_the_maps():
    """The main job on raccoon after the embedded data on one channel: the mAPs are not
    comparable, and a higher one must not swap the apps' label map silently."""
    report = {**REPORT, "classes": ["raccoon"]}
    champ = core.champion_from_manifest({"version": "v1", "metrics": {"map": 0.10},
                                         "labels": ["circle", "square", "triangle", "star", "hexagon", "ring",
                                                    "cross"]}, source="test")
    assert champ.labels[:2] == ["circle", "square"]
    d = decide(report, GateConfig(accuracy_budget=1.0), champ)
    assert not d.publish and d.outcome == "refused" and d.chosen == "qat_int8"
    assert any("champion v1 serves other labels (['circle', 'square', 'triangle', 'star', 'hexagon', "
               "'ring', …] (7) vs this model's ['raccoon'] (1))" in r for r in d.reasons), d.reasons
    assert decide(report, GateConfig(accuracy_budget=1.0, force_promote=True), champ).forced
    same = replace(champ, labels=["raccoon"])
    assert decide(report, GateConfig(accuracy_budget=1.0), same).publish  # same labels: mAPs compared
    assert decide(report, GateConfig(accuracy_budget=1.0), replace(champ, labels=None)).publish


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
       st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8))
def test_the_labels_rule_refuses_exactly_when_the_label_maps_differ(champion_labels, classes):
    champ = Champion(version="v1", map=0.10, labels=champion_labels, source="test")
    d = decide({**REPORT, "classes": classes}, GateConfig(accuracy_budget=1.0), champ)
    differ = [str(c) for c in classes] != champion_labels
    assert d.publish is not differ
    assert any("serves other labels" in r for r in d.reasons) is differ


def test_the_labels_rule_holds_for_a_champion_without_an_map():
    champ = Champion(version="v1", map=None, labels=["cat"], source="test")
    d = decide({**REPORT, "classes": ["raccoon"]}, GateConfig(accuracy_budget=1.0), champ)
    assert not d.publish and any("serves other labels" in r for r in d.reasons)

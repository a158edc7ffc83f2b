"""The champion rule on a champion the evaluation re-scored on this run's images (report.json
``champion`` + each row's paired ΔmAP against it): hand-made reports, no TF, no stack."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.select.core import decide
from edgeship.contracts import evaluation
from edgeship.contracts.decision import Champion, GateConfig
from tests.components.select.test_core import REPORT


def rescored(report: dict, version: str, champ_map: float, deltas: dict[str, tuple[float, float, float]]) -> dict:
    """``report`` with champion ``version`` re-scored at ``champ_map``; deltas: row -> (ΔmAP, lo, hi)."""
    doc = copy.deepcopy(report)
    doc["images"] = 120
    doc[evaluation.CHAMPION] = {"model": "m", "channel": "stable", "version": version, "rescored": True,
                                "map": champ_map, "map50": 0.7}
    for name, (delta, lo, hi) in deltas.items():
        doc["variants"][name][evaluation.DELTA_MAP_VS_CHAMPION] = delta
        doc["variants"][name][evaluation.DELTA_MAP_VS_CHAMPION_CI] = [lo, hi]
    return doc


def test_a_rescored_champion_is_judged_on_the_same_images_not_its_manifest():
    """Its manifest says 0.60 (another val split): by that figure qat_int8 (0.496) would be 10 pt
    worse and refused; re-scored on this run's images the champion gets 0.497: +0.1 pt, passes."""
    champ = Champion(version="v1", map=0.60, dataset_fingerprint="sha256:bbbb", source="test")
    cfg = GateConfig(accuracy_budget=1.0, tolerance=0.5)
    assert not decide(REPORT, cfg, champ).publish  # the manifest comparison refuses
    report = rescored(REPORT, "v1", 0.497, {"qat_int8": (0.10, -0.4, 0.6)})
    d = decide(report, cfg, champ)
    assert d.publish and d.chosen == "qat_int8"
    reason = next(r for r in d.reasons if "champion v1" in r)
    assert "not worse than champion v1" in reason and "the same 120 images of this run's val split" in reason
    assert "paired, chosen − champion [-0.60, +0.40]): -0.10 pt" in reason and "manifest says mAP 0.6000" in reason
    assert not any("another dataset" in r for r in d.reasons)


def test_a_rescored_champion_better_beyond_tolerance_refuses():
    champ = Champion(version="v1", map=0.40, source="test")  # its manifest would let it pass
    report = rescored(REPORT, "v1", 0.52, {"qat_int8": (2.4, 1.1, 3.5)})
    d = decide(report, GateConfig(accuracy_budget=1.0, tolerance=0.5), champ)
    assert not d.publish and d.chosen == "qat_int8"
    assert any("worse than champion v1" in r and "2.40 pt > tolerance 0.50 pt" in r and "paired" in r
               for r in d.reasons)


def test_another_version_rescored_falls_back_to_the_manifest_and_says_so():
    """The channel moved on between evaluate and select: the paired figure is of another model."""
    champ = Champion(version="v2", map=0.499, source="test")
    report = rescored(REPORT, "v1", 0.60, {"qat_int8": (10.4, 9.0, 12.0)})
    d = decide(report, GateConfig(accuracy_budget=1.0, tolerance=0.5), champ)
    assert d.publish  # by v2's manifest mAP
    assert any("champion v2 was not re-scored" in r and "v1" in r for r in d.reasons)


def test_a_champion_not_rescored_gives_the_reason_and_uses_the_manifest():
    report = copy.deepcopy(REPORT)
    report[evaluation.CHAMPION] = {"version": "v1", "rescored": False,
                                   "reason": "champion v1: model file gs://b/x does not exist"}
    d = decide(report, GateConfig(accuracy_budget=1.0, tolerance=0.5), Champion("v1", 0.52, source="t"))
    assert not d.publish
    assert any("not re-scored on this split (champion v1: model file gs://b/x does not exist)" in r
               for r in d.reasons)
    assert any("2.40 pt > tolerance" in r for r in d.reasons)


@settings(max_examples=60, deadline=None)
@given(delta=st.floats(-5, 5, allow_nan=False), tolerance=st.floats(0, 3, allow_nan=False),
       manifest_map=st.floats(0, 1, allow_nan=False))
def test_the_paired_rule_decides_by_the_paired_delta_alone(delta, tolerance, manifest_map):
    report = rescored(REPORT, "v1", 0.5, {"qat_int8": (round(delta, 4), delta - 1, delta + 1)})
    d = decide(report, GateConfig(accuracy_budget=1.0, tolerance=tolerance), Champion("v1", manifest_map, source="t"))
    assert d.chosen == "qat_int8"
    assert d.publish == (round(delta, 4) <= tolerance)


@pytest.mark.parametrize("bad", [float("nan"), "1.0", True])
def test_a_malformed_paired_delta_is_not_used(bad):
    report = rescored(REPORT, "v1", 0.5, {"qat_int8": (0.0, -1.0, 1.0)})
    report["variants"]["qat_int8"][evaluation.DELTA_MAP_VS_CHAMPION] = bad
    assert evaluation.champion_delta(report, "qat_int8", "v1") is None
    with pytest.raises(ValueError, match="delta_map_vs_champion"):
        evaluation.EvaluationReport(report).validate()

"""The gate's rules that know noise: ΔmAP judged by its interval, latency ties by overlapping
intervals, the quality floor, and when the val split is too small to decide. Each rule is also
written out in words (:func:`rules_text`) into the decision.

Evidence comes from the evaluation report: ``delta_map_ci`` (paired bootstrap over the val
images, points), ``latency_ms.threads_1.ci``, ``images`` and ``intervals`` (how they were made).
A report without intervals (older ones) is judged on point estimates, and the rules say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeship.contracts import evaluation
from edgeship.contracts.decision import Candidate, GateConfig


@dataclass(frozen=True)
class Evidence:
    """What the report says about its own precision."""

    images: int | None
    confidence: float | None
    resamples: int | None
    intervals: bool  # the rows carry ΔmAP intervals
    views: dict | None = None  # intervals.views: the photos were also scored in views (small val)
    latency_host: dict | None = None  # the host's load while latency was timed (evaluate)

    @classmethod
    def of(cls, report: dict) -> "Evidence":
        rows = (report.get("variants") or {}).values()
        has = any(evaluation.interval(r, evaluation.DELTA_MAP_CI) is not None for r in rows if isinstance(r, dict))
        iv = report.get(evaluation.INTERVALS) if isinstance(report.get(evaluation.INTERVALS), dict) else {}
        images = report.get("images")
        return cls(images=int(images) if isinstance(images, int) and not isinstance(images, bool) else None,
                   confidence=float(iv["confidence"]) if iv.get("confidence") else None,
                   resamples=int(iv["resamples"]) if iv.get("resamples") else None, intervals=has,
                   views=iv["views"] if isinstance(iv.get("views"), dict) else None,
                   latency_host=host if isinstance(host := report.get(evaluation.LATENCY_HOST), dict) else None)

    def to_dict(self) -> dict[str, Any]:
        return {"val_images": self.images, "confidence": self.confidence, "resamples": self.resamples,
                "intervals": self.intervals, "views_per_image": (self.views or {}).get("per_image"),
                "latency_host": self.latency_host, "latency_trusted": self.latency_trusted}

    @property
    def latency_trusted(self) -> bool:
        """False when evaluate timed latency on a busy host (reports that do not say: trusted)."""
        return not (self.latency_host or {}).get("busy")

    @property
    def host_text(self) -> str:
        return evaluation.host_busy_text(self.latency_host or {})

    @property
    def basis(self) -> str:
        """What the ΔmAP interval was resampled over, in words."""
        if self.views and (self.views.get("per_image") or 1) > 1:
            kinds = ", ".join(str(k) for k in self.views.get("kinds") or [])
            return (f"the {self.images or '?'} val images, each scored in {self.views['per_image']} views "
                    f"({kinds}) and drawn with all of them")
        return f"the {self.images or '?'} val images"

    @property
    def level(self) -> str:
        return f"{self.confidence:.0%}" if self.confidence else "the report's"


def half_width(c: Candidate) -> float | None:
    return (c.delta_map_ci[1] - c.delta_map_ci[0]) / 2.0 if c.delta_map_ci else None


def images_needed(n: int | None, half: float | None, gap: float) -> int | None:
    """Val images for an interval of half-width ``half`` (measured on ``n`` images) to shrink to
    ``gap``, intervals narrowing as 1/√n: ⌈n × (half / gap)²⌉. None when it cannot be said."""
    if not n or half is None or gap <= 0:
        return None
    return max(int(n), int(math.ceil(n * (half / gap) ** 2 - 1e-6)))  # not 676 for 675.0000001


def judge_accuracy(c: Candidate, config: GateConfig, evidence: Evidence) -> None:
    """Set ``c.accuracy`` against the budget (and the reason when it is not "within")."""
    budget = config.accuracy_budget
    if budget is None:
        c.accuracy = ""
        return
    delta, ci = c.delta_map_pts, c.delta_map_ci
    if ci is None:
        c.accuracy = "within" if delta <= budget else "over"
        if c.accuracy == "over":
            c.why.append(f"ΔmAP {delta:.2f} pt > budget {budget:.2f} pt")
        return
    shown = f"ΔmAP {delta:.2f} pt [{ci[0]:+.2f}, {ci[1]:+.2f}]"
    if ci[1] <= budget:
        c.accuracy = "within"
    elif ci[0] > budget:
        c.accuracy = "over"
        c.why.append(f"{shown}: even the lower bound is > budget {budget:.2f} pt")
    else:
        c.accuracy = "undecided"
        c.images_to_settle = images_needed(evidence.images, half_width(c), abs(budget - delta))
        settle = (f"; about {c.images_to_settle} val images would settle it" if c.images_to_settle
                  else "")
        c.why.append(f"{shown}: upper bound {ci[1]:.2f} > budget {budget:.2f} pt, undecided{settle}")


def check_floor(c: Candidate, config: GateConfig) -> None:
    """The quality floor (point estimates): mAP ≥ min_map and mAP@.5 ≥ min_map50."""
    if config.min_map > 0 and c.map < config.min_map:
        c.eligible = False
        c.why.append(f"mAP {c.map:.4f} < quality floor {config.min_map:.4f}")
    if config.min_map50 > 0:
        if c.map50 is None:
            c.eligible = False
            c.why.append("no mAP@.5 in the report to check the quality floor")
        elif c.map50 < config.min_map50:
            c.eligible = False
            c.why.append(f"mAP@.5 {c.map50:.4f} < quality floor {config.min_map50:.4f}")


def latency_tied(a: Candidate, b: Candidate) -> bool:
    """Two variants are tied on latency when their intervals overlap (equal medians without intervals)."""
    if a.latency_ms is None or b.latency_ms is None:
        return a.latency_ms is None and b.latency_ms is None
    if a.latency_ci and b.latency_ci:
        return a.latency_ci[0] <= b.latency_ci[1] and b.latency_ci[0] <= a.latency_ci[1]
    return a.latency_ms == b.latency_ms


def _speed(c: Candidate) -> float:
    return c.latency_ms if c.latency_ms is not None else math.inf


# Each scheme's speed class on LiteRT's XNNPACK CPU kernels, fastest first, used when latency was
# timed on a busy host: integer-only int8 (1-thread 0.36-0.40 ms on the quiet x86 host of the
# README's raccoon table), then float32 and float16 (which a CPU runs in float32: 0.54-0.55 ms),
# dynamic-range int8 (float activations, quantized per op: 1.45 ms), 16x8 (reference kernels:
# 24 ms). TFLite's post-training quantization guide puts dynamic-range int8 ahead of float on
# phones' CPUs; on this host it measured slower; both put integer-only int8 first, the rule that
# matters here.
SCHEME_SPEED_CLASS = {"full_int8": 0, "full_int8_pt": 0, "qat_int8": 0, "selective_int8": 0,
                      "fp32": 1, "float16": 1, "dynamic_int8": 2, "int16x8": 3}


def speed_class(c: Candidate) -> int:
    """The scheme's speed class (unknown schemes: with the float ones)."""
    return SCHEME_SPEED_CLASS.get(c.scheme or c.name, 1)


def faster(a: Candidate, b: Candidate, trusted: bool = True) -> bool:
    """``a`` is faster than ``b``: a lower median with intervals that do not overlap, or (latency
    not trusted) a faster scheme class."""
    if not trusted:
        return speed_class(a) < speed_class(b)
    return _speed(a) < _speed(b) and not latency_tied(a, b)


def tie_key(c: Candidate) -> tuple:
    """Among tied variants: the smaller file, then the more accurate (then the faster, the name)."""
    return (c.size_bytes if c.size_bytes is not None else math.inf, -c.map, _speed(c), c.name)


def fastest_with_ties(eligible: list[Candidate], trusted: bool = True
                      ) -> tuple[Candidate, Candidate, list[Candidate]]:
    """(chosen, fastest, tied): the fastest by median, the variants tied with it, and the choice
    among them by :func:`tie_key`. Latency not ``trusted``: the fastest scheme class instead, every
    variant of that class tied."""
    if not trusted:
        fastest = min(eligible, key=lambda c: (speed_class(c), c.size_bytes if c.size_bytes is not None else math.inf,
                                               -c.map, c.name))  # no measured latency in the key
        tied = [c for c in eligible if speed_class(c) == speed_class(fastest)]
        return fastest, fastest, tied
    fastest = min(eligible, key=lambda c: (_speed(c), *tie_key(c)))
    tied = [c for c in eligible if latency_tied(c, fastest)]
    return min(tied, key=tie_key), fastest, tied


def untrusted_choice_text(chosen: Candidate, tied: list[Candidate], evidence: Evidence) -> str:
    """The choice in words when latency was timed on a busy host."""
    others = ", ".join(f"{c.name!r} ({(c.size_bytes or 0) / 1024:.0f} KB)" for c in tied if c is not chosen)
    return (f"latency not trusted: timed on a busy host ({evidence.host_text}), so variants are ranked "
            f"by scheme (integer-only int8, then float, then dynamic-range int8, then 16x8) instead of "
            f"by the measured medians: chose {chosen.name!r} ({chosen.scheme}, "
            f"{(chosen.size_bytes or 0) / 1024:.0f} KB, ΔmAP {chosen.delta_map_pts:.2f} pt)"
            + (f", the smaller file (then the more accurate) of its class beside {others}" if others else ""))


def too_small_to_decide(candidates: list[Candidate], chosen: Candidate | None,
                        config: GateConfig, trusted: bool = True) -> list[Candidate]:
    """Variants the val split cannot judge at this budget: undecided, wider than the budget
    (half-width > budget), passing every other rule, and faster than the choice (any, without one)."""
    budget = config.accuracy_budget
    if budget is None:
        return []
    out = []
    for c in candidates:
        other_rules = [w for w in c.why if not w.startswith("ΔmAP")]
        if c.accuracy != "undecided" or other_rules or (half_width(c) or 0.0) <= budget:
            continue
        if chosen is None or faster(c, chosen, trusted):
            out.append(c)
    return out


def cannot_decide_reason(undecided: list[Candidate], chosen: Candidate | None, config: GateConfig,
                         evidence: Evidence) -> tuple[str, int | None]:
    """The plain statement of a val split too small for the budget, and the images it would need."""
    budget = float(config.accuracy_budget or 0.0)
    narrowest = min(undecided, key=lambda c: half_width(c) or math.inf)
    needed = images_needed(evidence.images, half_width(narrowest), budget)
    shown = ", ".join(f"{c.name!r} {c.delta_map_pts:.2f} pt [{c.delta_map_ci[0]:+.2f}, {c.delta_map_ci[1]:+.2f}]"
                      for c in undecided)
    text = (f"cannot decide: the val split ({evidence.images or '?'} images) is too small for a "
            f"{budget:.2f} pt budget: the {evidence.level} ΔmAP intervals of {shown} are wider than the "
            f"budget (half-width {half_width(narrowest):.2f} pt at best), so whether these faster "
            "variants are within it is noise")
    if needed:
        text += (f"; about {needed} val images would be needed (n × (half-width / budget)², "
                 "intervals shrinking as 1/√n)")
    if chosen is not None:
        text += (f"; the choice is {chosen.name!r}, the fastest variant shown within the budget "
                 "(safe, perhaps slower than necessary)")
    else:
        text += "; no variant is shown within the budget"
    return text, needed


def rules_text(config: GateConfig, evidence: Evidence, float_name: str) -> list[str]:
    """Every rule of the gate as applied to this report, in words (decision.json ``rules``)."""
    budget = config.accuracy_budget
    if budget is None:
        accuracy = ("accuracy: no budget configured: the most accurate variant by mAP point estimate "
                    "(never trade accuracy for speed unasked)")
    elif evidence.intervals:
        accuracy = (f"accuracy: a variant is within the budget when the upper bound of its {evidence.level} "
                    f"paired bootstrap interval of ΔmAP@[.5:.95] vs {float_name} "
                    f"({evidence.resamples or '?'} resamples of {evidence.basis}) is "
                    f"≤ {budget:.2f} pt; over it when the lower bound is above; otherwise undecided "
                    "(not within)")
    else:
        accuracy = (f"accuracy: a variant is within the budget when its ΔmAP@[.5:.95] vs {float_name} "
                    f"is ≤ {budget:.2f} pt (point estimate: the report has no intervals)")
    rules = [accuracy]
    if budget is not None and evidence.intervals:
        rules.append("too small to decide: when a variant faster than the choice is undecided only because "
                     "its ΔmAP interval is wider than the budget (half-width > budget), the val split "
                     "cannot decide: outcome 'cannot decide', said with the images needed ≈ "
                     "n × (half-width / budget)² (intervals shrink as 1/√n; per variant, images to settle "
                     "≈ n × (half-width / |budget − ΔmAP|)²); the choice stays the fastest variant shown "
                     "within the budget, and with none nothing is published unless forced")
    rules.append("latency: 1-thread median ≤ " + (f"{config.latency_budget_ms:.2f} ms" if config.latency_budget_ms > 0
                                                  else "no budget"))
    if evidence.latency_trusted:
        rules.append("choice: the fastest eligible variant by 1-thread median latency; variants whose latency "
                     "intervals overlap the fastest one's are tied (without intervals: equal medians); ties go "
                     "to the smaller file, then the more accurate")
    else:
        rules.append(f"choice: latency was timed on a busy host ({evidence.host_text}) and is not trusted to "
                     "rank variants; the eligible variant of the fastest scheme class on XNNPACK "
                     "(integer-only int8 < fp32 = float16 < dynamic-range int8 < 16x8) is chosen, ties to "
                     "the smaller file, then the more accurate; a latency budget still compares the measured "
                     "medians")
    if config.min_map > 0 or config.min_map50 > 0:
        parts = [f"mAP@[.5:.95] ≥ {config.min_map:.4f}" if config.min_map > 0 else "",
                 f"mAP@.5 ≥ {config.min_map50:.4f}" if config.min_map50 > 0 else ""]
        rules.append("quality floor: " + " and ".join(p for p in parts if p)
                     + " (point estimates), for every release, the first one included")
    else:
        rules.append("quality floor: off (min_map = min_map50 = 0)")
    rules.append(f"champion: not more than {config.tolerance:.2f} pt below the mAP of the channel's current "
                 "model (point estimates); skipped for a first release")
    rules.append("force-promote: " + ("on: publishes the choice even when a rule failed (when none is shown "
                                      "within the budget: the most accurate), recorded"
                                      if config.force_promote else "off"))
    return rules

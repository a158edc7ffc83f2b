"""The quality gate: choose one variant under an accuracy budget and decide whether to publish it.

Like TFX's Evaluator "blessing", but multi-criteria, explicit and aware that figures measured on
a val split carry noise. Every rule below is applied in order, written out in words in the
decision (``rules``), and every outcome carries its reasons, which end up in decision.json /
decision.md and in the published manifest. The rules that know noise live in ``rules.py``.

1. **Eligibility.** A variant is eligible when its mAP@[.5:.95] loss against the float model
   (ΔmAP, in mAP *points*: 1 pt = 0.01 mAP) is within ``accuracy_budget`` — judged by the upper
   bound of the report's paired bootstrap interval of ΔmAP (the point estimate when the report
   has none; an interval straddling the budget is "undecided", not within) —, when
   ``latency_budget_ms`` > 0 its 1-thread median latency is within that budget, and it passes the
   quality floor (``min_map``, ``min_map50``; off at 0), which holds for every release, the first
   included. The float reference is the Keras float model's mAP (``report["float_keras"]``), or
   the fp32 .tflite when the report has no Keras row.
2. **Choice.** Among eligible variants, the fastest (1-thread median latency); variants whose
   latency intervals overlap the fastest one's are tied, and ties go to the smaller file, then the
   more accurate.
3. **Too small to decide.** When a variant faster than the choice (or any, when nothing is
   eligible) is undecided only because its ΔmAP interval is wider than the budget, the val split
   cannot decide: the outcome is "cannot decide", with the val images that would be needed. The
   choice stays the variant shown within the budget (safe, perhaps slower than necessary); with
   none, nothing is published unless forced.
4. **No budget configured** (``accuracy_budget`` is None / "" / "none"): nothing is traded
   silently: the gate picks the *most accurate* variant (ties: the fastest) and says so.
5. **Champion.** The chosen variant is compared with the model currently on the target channel:
   it passes if its mAP is not lower than the champion's by more than ``tolerance`` points.
   With no champion (first run on the channel) the comparison is skipped and recorded as such.
   When the evaluation re-scored the champion on this run's images (report.json ``champion``,
   components/evaluate/champion.py) the drop is the **paired** ΔmAP on those images (point
   estimate vs ``tolerance``, its interval in the reasons); otherwise the champion's manifest mAP
   is used, and when that was measured on another dataset (different fingerprint) the reasons say
   the figures are not strictly comparable. When the champion
   serves **other labels** (its manifest's label map differs from the evaluated classes) the
   rule fails whatever the mAPs: they are not comparable, and publishing would change the label
   map the channel's apps read (force_promote overrides; or publish under another model name).
6. **Force-promote** publishes the choice even when a rule failed (if no variant is within the
   budget, the most accurate one), and records which rules were overridden.

Plain Python; never imports kfp.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from components.select import rules
from components.select.report import render_html, render_markdown
from components.select.rules import Evidence
from components.select.settings import SELECT
from edgeship.contracts import decision as decision_contract
from edgeship.contracts import evaluation
from edgeship.contracts.budget import parse_budget
from edgeship.contracts.decision import Candidate, Champion, Decision, GateConfig
from edgeship.delivery.champion import (  # noqa: F401 (re-exported: the lookup lives in the library)
    champion_from_manifest,
    find_champion,
    find_champion_firestore,
    find_champion_gcs,
)

log = logging.getLogger(__name__)


def _latency(row: dict) -> float | None:
    return evaluation.latency_median(row)


def _float_reference(report: dict) -> tuple[str, float]:
    keras_row = report.get("float_keras")
    if isinstance(keras_row, dict) and keras_row.get("map") is not None:
        return "float_keras", float(keras_row["map"])
    fp32 = report.get("variants", {}).get("fp32")
    if isinstance(fp32, dict) and fp32.get("map") is not None:
        return "fp32", float(fp32["map"])
    raise ValueError("evaluation report has no float reference: neither 'float_keras' nor the 'fp32' "
                     "variant has a 'map'")


def decide(report: dict, config: GateConfig, champion: Champion | None) -> Decision:
    """Apply the gate to an evaluation report (docs/contracts.md "Evaluation artifact").

    Pure: reads nothing, writes nothing. Raises ValueError when the report has no variants.
    """
    variants = report.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ValueError("evaluation report lists no variants: nothing to select from")
    float_name, float_map = _float_reference(report)
    evidence = Evidence.of(report)
    reasons: list[str] = []
    candidates = [_candidate(name, variants[name], float_map, config, evidence) for name in sorted(variants)]
    chosen, rule_failed = _choose(candidates, config, reasons, evidence)
    outcome = "refused" if rule_failed else "passed"
    needed = None
    certified = chosen if chosen is not None and chosen.eligible else None  # not a forced pick
    undecided = rules.too_small_to_decide(candidates, certified, config, trusted=evidence.latency_trusted)
    if undecided:  # said plainly; the choice (if any) is the variant shown within the budget
        text, needed = rules.cannot_decide_reason(undecided, certified, config, evidence)
        reasons.append(text)
        outcome = "cannot_decide"
    if chosen is not None and _champion_rule_fails(chosen, champion, report, config, reasons):
        rule_failed = True
        outcome = "refused" if outcome == "passed" else outcome
    publish, forced = _verdict(chosen, rule_failed, config, reasons, outcome)
    return Decision(publish=publish, chosen=chosen.name if chosen else None, reasons=reasons,
                    candidates=candidates, config=config, float_map=float_map,
                    float_reference=float_name, champion=champion, forced=forced,
                    dataset_fingerprint=report.get("dataset_fingerprint"), outcome=outcome,
                    rules=rules.rules_text(config, evidence, float_name),
                    evidence={**evidence.to_dict(), "images_needed": needed})


def _candidate(name: str, row: Any, float_map: float, config: GateConfig, evidence: Evidence) -> Candidate:
    """One variant's row as a Candidate: its ΔmAP vs float (and interval), latency, and why it is
    not eligible."""
    if not isinstance(row, dict) or row.get("map") is None:
        raise ValueError(f"evaluation report: variant {name!r} has no 'map'")
    vmap = float(row["map"])
    # the gate's ΔmAP: over the photos and their views when the report has them (small val
    # splits), else the photos' (float mAP − variant mAP)
    views_delta, views_ci, with_views = evaluation.gate_delta(row)
    delta = views_delta if with_views else round((float_map - vmap) * 100.0, 4)
    delta_ci = views_ci if with_views else evaluation.interval(row, evaluation.DELTA_MAP_CI)
    latency_ci = evaluation.latency_interval(row)
    c = Candidate(name, vmap, delta, _latency(row), row.get("size_bytes"),
                  True, [], map50=float(row["map50"]) if row.get("map50") is not None else None,
                  delta_map_ci=list(delta_ci) if delta_ci else None,
                  latency_ci=list(latency_ci) if latency_ci else None, scheme=str(row.get("scheme") or name))
    rules.judge_accuracy(c, config, evidence)
    c.eligible = c.accuracy in ("within", "")
    if config.latency_budget_ms > 0:
        if c.latency_ms is None:
            c.eligible = False
            c.why.append("no 1-thread latency measured")
        elif c.latency_ms > config.latency_budget_ms:
            c.eligible = False
            c.why.append(f"latency {c.latency_ms:.2f} ms > budget {config.latency_budget_ms:.2f} ms")
    rules.check_floor(c, config)
    return c


def _speed_key(c: Candidate) -> tuple:
    """Sort key: fastest first, then the smaller file, then the more accurate."""
    return (c.latency_ms if c.latency_ms is not None else math.inf,
            c.size_bytes if c.size_bytes is not None else math.inf, -c.map, c.name)


def _accuracy_key(c: Candidate) -> tuple:
    """Sort key: the most accurate first, then as :func:`_speed_key`."""
    return (-c.map, *_speed_key(c))


def _lat(c: Candidate) -> str:
    if c.latency_ms is None:
        return "unmeasured latency"
    ci = f" [{c.latency_ci[0]:.3f}, {c.latency_ci[1]:.3f}]" if c.latency_ci else ""
    return f"{c.latency_ms:.3f} ms{ci}"


def _choose(candidates: list[Candidate], config: GateConfig, reasons: list[str],
            evidence: Evidence) -> tuple[Candidate | None, bool]:
    """Rules 2, 4 and 6: the chosen variant (or None) and whether a rule failed; appends the reasons."""
    budget = config.accuracy_budget
    eligible = [c for c in candidates if c.eligible]
    if budget is None:
        chosen = min(eligible or candidates, key=_accuracy_key)
        reasons.append("no accuracy budget configured: chose the most accurate variant "
                       f"{chosen.name!r} (ΔmAP {chosen.delta_map_pts:.2f} pt) rather than trade "
                       "accuracy for speed without being told")
        if not eligible:
            reasons.append(_none_eligible(candidates, budget, config))
            return chosen, True
        return chosen, False
    if eligible:
        chosen, fastest, tied = rules.fastest_with_ties(eligible, trusted=evidence.latency_trusted)
        text = (f"{len(eligible)} of {len(candidates)} variants within ΔmAP ≤ {budget:.2f} pt"
                + (f" and latency ≤ {config.latency_budget_ms:.2f} ms" if config.latency_budget_ms > 0 else "")
                + (" and the quality floor" if config.min_map > 0 or config.min_map50 > 0 else ""))
        if not evidence.latency_trusted:
            reasons.append(text + "; " + rules.untrusted_choice_text(chosen, tied, evidence))
            return chosen, False
        text += f"; fastest: {fastest.name!r} ({_lat(fastest)}, ΔmAP {fastest.delta_map_pts:.2f} pt)"
        if len(tied) > 1:
            others = ", ".join(f"{c.name!r} ({_lat(c)}, {(c.size_bytes or 0) / 1024:.0f} KB)"
                               for c in tied if c is not fastest)
            text += (f"; tied on latency with {others} (intervals overlap): chose {chosen.name!r}, "
                     f"{(chosen.size_bytes or 0) / 1024:.0f} KB, the smaller file, then the more accurate")
        reasons.append(text)
        return chosen, False
    reasons.append(_none_eligible(candidates, budget, config))
    return (min(candidates, key=_accuracy_key) if config.force_promote else None), True


def _none_eligible(candidates: list[Candidate], budget: float | None, config: GateConfig) -> str:
    """The reason when no variant is eligible: which rule (accuracy, latency, floor) ruled them out."""
    accurate = [c for c in candidates if c.accuracy in ("within", "")]
    floor = [w for c in candidates for w in c.why if "quality floor" in w]
    accuracy_text = f"meet ΔmAP ≤ {budget:.2f} pt" if budget is not None else "are candidates (no accuracy budget)"
    if budget is not None and not accurate:
        best = min(candidates, key=lambda c: c.delta_map_pts)
        upper = f" (upper bound {best.delta_map_ci[1]:.2f} pt)" if best.delta_map_ci else ""
        return (f"no variant within the budget: the smallest ΔmAP is "
                f"{best.delta_map_pts:.2f} pt ({best.name!r}){upper} against a budget of "
                f"{budget:.2f} pt")
    fast = [c for c in accurate if config.latency_budget_ms <= 0 or
            (c.latency_ms is not None and c.latency_ms <= config.latency_budget_ms)]
    if not fast:
        quick = min(accurate, key=_speed_key)
        lat = f"{quick.latency_ms:.2f} ms" if quick.latency_ms is not None else "unmeasured"
        return (f"no variant within the budget: {len(accurate)} {accuracy_text} "
                f"but none the latency budget {config.latency_budget_ms:.2f} ms "
                f"(fastest of them: {quick.name!r}, {lat})")
    best = min(fast, key=_accuracy_key)
    return (f"no variant meets the quality floor: the best that fits the other rules, {best.name!r}, "
            f"has mAP {best.map:.4f}, mAP@.5 {best.map50 if best.map50 is not None else float('nan'):.4f} "
            f"({'; '.join(floor[:1])})")


def _champion_rule_fails(chosen: Candidate, champion: Champion | None, report: dict,
                         config: GateConfig, reasons: list[str]) -> bool:
    """Rule 4: True when ``chosen`` is worse than the champion beyond tolerance; appends the reasons."""
    if champion is None:
        floor = config.min_map > 0 or config.min_map50 > 0
        reasons.append("no champion on the channel yet (first release): nothing to compare with"
                       + ("; the quality floor still applied" if floor else
                          "; warning: no quality floor configured (min_map, min_map50), so nothing "
                          f"bounds its absolute quality (mAP {chosen.map:.4f}"
                          + (f", mAP@.5 {chosen.map50:.4f}" if chosen.map50 is not None else "") + ")"))
        return False
    classes = [str(c) for c in report.get("classes") or []]
    if champion.labels and classes and list(champion.labels) != classes:
        reasons.append(f"champion {champion.version} serves other labels ({_names(champion.labels)} "
                       f"vs this model's {_names(classes)}): the mAPs are not comparable and "
                       "publishing would change the label map this channel's apps read; publish "
                       "under another model name or channel, or force_promote")
        return True
    paired = evaluation.champion_delta(report, chosen.name, champion.version)
    if paired is not None:
        return _paired_champion_rule_fails(chosen, champion, report, paired, config, reasons)
    record = report.get(evaluation.CHAMPION)
    if isinstance(record, dict):
        why = (record.get("reason") if not record.get("rescored") else
               f"the evaluation re-scored {record.get('version')}; the channel serves it no more"
               if record.get("version") != champion.version else f"no paired ΔmAP in {chosen.name!r}'s row")
        reasons.append(f"champion {champion.version} was not re-scored on this split ({why}): "
                       "compared by the mAP in its manifest")
    if champion.map is None:
        reasons.append(f"champion {champion.version} has no mAP in its manifest: comparison skipped")
        return False
    drop = round((champion.map - chosen.map) * 100.0, 4)
    fp = report.get("dataset_fingerprint")
    if champion.dataset_fingerprint and fp and champion.dataset_fingerprint != fp:
        reasons.append(f"note: champion {champion.version} was evaluated on another dataset "
                       f"({champion.dataset_fingerprint[:19]}… vs {fp[:19]}…); figures are "
                       "not strictly comparable")
    if drop > config.tolerance:
        reasons.append(f"worse than champion {champion.version}: mAP {chosen.map:.4f} vs "
                       f"{champion.map:.4f} (−{drop:.2f} pt > tolerance {config.tolerance:.2f} pt)")
        return True
    reasons.append(f"not worse than champion {champion.version} beyond tolerance: mAP "
                   f"{chosen.map:.4f} vs {champion.map:.4f} "
                   f"({-drop:+.2f} pt, tolerance {config.tolerance:.2f} pt)")
    return False


def _names(labels: Sequence[str], most: int = 6) -> str:
    """A label list for a reason: the first ``most`` names and how many in all."""
    shown = ", ".join(repr(str(x)) for x in list(labels)[:most])
    return f"[{shown}{', …' if len(labels) > most else ''}] ({len(labels)})"


def _verdict(chosen: Candidate | None, rule_failed: bool, config: GateConfig,
             reasons: list[str], outcome: str) -> tuple[bool, bool]:
    """Rule 6 and the decision: ``(publish, forced)``; appends the closing reasons."""
    forced = False
    if rule_failed and config.force_promote:
        forced = True
        publish = chosen is not None
        reasons.append(f"force-promote: publishing {chosen.name!r} although the gate "
                       + ("could not decide" if outcome == "cannot_decide" else "failed"))
    else:
        publish = chosen is not None and not rule_failed
    if not publish:
        reasons.append("decision: NOT publishing" + (" (cannot decide)" if outcome == "cannot_decide" else ""))
    else:
        reasons.append(f"decision: publish {chosen.name!r}")
    return publish, forced


def _paired_champion_rule_fails(chosen: Candidate, champion: Champion, report: dict,
                                paired: tuple[dict, float, tuple[float, float] | None],
                                config: GateConfig, reasons: list[str]) -> bool:
    """Rule 4 on the champion re-scored on this run's images: the drop is the paired ΔmAP
    (champion − chosen, same images), judged by its point estimate against ``tolerance``."""
    record, drop, ci = paired
    champ_map = float(record.get("map") or 0.0)
    scored = (f"mAP {chosen.map:.4f} vs {champ_map:.4f} on the photos alone; ΔmAP over the same "
              f"{record.get('delta_images') or report.get('images', '?')} images of this run's "
              f"{report.get('split', 'val')} split ({record.get('delta_scored_on') or 'photos'}; "
              f"paired, chosen − champion{f' [{-ci[1]:+.2f}, {-ci[0]:+.2f}]' if ci else ''})")
    manifest = f"; its manifest says mAP {champion.map:.4f} on its own val split" if champion.map is not None else ""
    if drop > config.tolerance:
        reasons.append(f"worse than champion {champion.version} re-scored here: {scored}: −{drop:.2f} pt > "
                       f"tolerance {config.tolerance:.2f} pt{manifest}")
        return True
    reasons.append(f"not worse than champion {champion.version} beyond tolerance, re-scored here: {scored}: "
                   f"{-drop:+.2f} pt, tolerance {config.tolerance:.2f} pt{manifest}")
    return False


ChampionLookup = Callable[[str, str], "Champion | None"]


def run_select(evaluation_dir: str | Path, out_json: str | Path, out_md: str | Path, *,
               config: GateConfig, champion: Champion | None,
               out_html: str | Path | None = None) -> Decision:
    """Read report.json from an evaluation artifact, decide, write decision.json/.md(/.html).

    Side effects: writes the output files; logs the verdict and its reasons.
    """
    report = evaluation.load(evaluation_dir).doc
    decision = decide(report, config, champion)
    decision.inputs["evaluation"] = str(Path(evaluation_dir))
    decision_contract.save(decision, out_json)
    markdown = render_markdown(decision)
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text(markdown)
    if out_html is not None:
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        Path(out_html).write_text(render_html(markdown))
    level = logging.INFO if decision.publish else logging.WARNING
    log.log(level, "gate: %s", "; ".join(decision.reasons))
    return decision


def _fraction(value: Any, name: str) -> float:
    """A quality floor given as a number or text: an mAP in 0..1 (ValueError naming it otherwise)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an mAP in 0..1, got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be an mAP in 0..1 (not points), got {value!r}")
    return number


def select_step(*, evaluation_dir: str, model_name: str, channel: str, bucket: str,
                accuracy_budget: Any, latency_budget_ms: float, tolerance: float,
                force_promote: bool, out_json: str, out_md: str, out_html: str | None = None,
                champion_lookup: ChampionLookup | None = None, min_map: float = SELECT.min_map,
                min_map50: float = SELECT.min_map50) -> Decision:
    """The select step end to end: validate parameters, find the champion, decide, write outputs.

    ``champion_lookup(model_name, channel)`` replaces the registry lookup (tests, offline runs).
    """
    config = GateConfig(
        accuracy_budget=parse_budget(accuracy_budget, name="accuracy_budget"),
        latency_budget_ms=float(parse_budget(latency_budget_ms, name="latency_budget_ms") or 0.0),
        tolerance=float(parse_budget(tolerance, name="tolerance") or 0.0),
        force_promote=bool(force_promote), min_map=_fraction(min_map, "min_map"),
        min_map50=_fraction(min_map50, "min_map50"))
    if champion_lookup is None:
        def champion_lookup(model: str, chan: str) -> Champion | None:
            return find_champion(bucket, model, chan) if bucket else None
    champion = champion_lookup(model_name, channel)
    log.info("gate: champion on %s/%s: %s", model_name, channel,
             f"{champion.version} (mAP {champion.map})" if champion else "none")
    return run_select(evaluation_dir, out_json, out_md, config=config, champion=champion,
                      out_html=out_html)

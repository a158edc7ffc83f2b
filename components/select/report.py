"""How the gate's decision reads to people: Markdown, HTML, and the not-published message."""
from __future__ import annotations

import logging
from pathlib import Path

from edgeship.contracts import decision as decision_contract
from edgeship.contracts.decision import Decision

log = logging.getLogger(__name__)


def _verdict(decision: Decision) -> str:
    if decision.publish:
        return ("PUBLISH" + (" (forced)" if decision.forced else "")
                + (" (val split too small to judge the faster variants)" if decision.outcome == "cannot_decide" else ""))
    return "CANNOT DECIDE: NOT PUBLISHED" if decision.outcome == "cannot_decide" else "DO NOT PUBLISH"


def _interval(pair: list[float] | None, fmt: str) -> str:
    return f" [{format(pair[0], fmt)}, {format(pair[1], fmt)}]" if pair else ""


def render_markdown(decision: Decision) -> str:
    """A human-readable account of the decision: verdict, reasons, the rules, the candidate table."""
    lines = [f"# Gate decision: {_verdict(decision)}", ""]
    if decision.chosen:
        lines.append(f"Chosen variant: **{decision.chosen}**")
        lines.append("")
    lines.append("## Reasons")
    lines += [f"- {r}" for r in decision.reasons]
    cfg = decision.config
    lines += ["", "## Rules",
              f"- accuracy budget: {'not configured' if cfg.accuracy_budget is None else f'{cfg.accuracy_budget:.2f} pt'}"
              f" (ΔmAP@[.5:.95] vs {decision.float_reference}, mAP {decision.float_map:.4f})",
              f"- latency budget: {'none' if cfg.latency_budget_ms <= 0 else f'{cfg.latency_budget_ms:.2f} ms'} (1 thread, median)",
              f"- tolerance vs champion: {cfg.tolerance:.2f} pt",
              f"- quality floor: mAP ≥ {cfg.min_map:.3f}, mAP@.5 ≥ {cfg.min_map50:.3f} (0 = off)",
              f"- force-promote: {cfg.force_promote}",
              f"- champion: {decision.champion.version + ' (' + decision.champion.source + ')' if decision.champion else 'none'}"]
    lines += [f"- {rule}" for rule in decision.rules]
    ev = decision.evidence or {}
    if ev:
        lines.append(f"- evidence: {ev.get('val_images') or '?'} val images, intervals "
                     f"{'yes' if ev.get('intervals') else 'no'}"
                     + (f" ({ev['confidence']:.0%}, {ev.get('resamples')} resamples)" if ev.get("confidence") else "")
                     + (f"; about {ev['images_needed']} images needed to decide" if ev.get("images_needed") else ""))
    lines += ["", "## Candidates", "",
              "| variant | mAP | mAP@.5 | ΔmAP [CI] (pt) | vs budget | latency 1T [CI] (ms) | size (KB) | eligible | why not |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(decision.candidates, key=lambda c: (c.latency_ms is None, c.latency_ms or 0)):
        mark = " ←" if c.name == decision.chosen else ""
        lat = f"{c.latency_ms:.3f}{_interval(c.latency_ci, '.3f')}" if c.latency_ms is not None else "—"
        size = f"{c.size_bytes / 1024:.0f}" if c.size_bytes else "—"
        map50 = f"{c.map50:.4f}" if c.map50 is not None else "—"
        lines.append(f"| {c.name}{mark} | {c.map:.4f} | {map50} | {c.delta_map_pts:.2f}{_interval(c.delta_map_ci, '+.2f')} | "
                     f"{c.accuracy or '—'} | {lat} | {size} | {'yes' if c.eligible else 'no'} | {'; '.join(c.why)} |")
    return "\n".join(lines) + "\n"


def render_html(markdown: str) -> str:
    """Minimal HTML wrapper (KFP's HTML visualisation) around the Markdown text."""
    import html

    return ("<!doctype html><meta charset='utf-8'><title>edgeship gate decision</title>"
            f"<pre style='font-family:monospace'>{html.escape(markdown)}</pre>\n")


def explain_refusal(decision_json: str | Path, out_md: str | Path) -> str:
    """Log (WARNING) and write why the gate did not publish. Returns the message."""
    decision = decision_contract.load(decision_json)
    reasons = decision.reasons
    what = ("could not decide (the val split is too small for the budget)" if decision.outcome == "cannot_decide"
            else "refused this model")
    message = f"NOT PUBLISHED: the quality gate {what}. " + " | ".join(reasons)
    log.warning("%s", message)
    print(message, flush=True)  # noqa: T201 - shown in the step's log by every runner
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("# Not published\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n")
    return message

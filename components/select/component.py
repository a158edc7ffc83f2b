"""KFP interface of the quality gate (logic in components/select/core.py)."""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def select(
    evaluation: Input[Artifact],
    model_name: str,
    channel: str,
    bucket: str,
    accuracy_budget: str,
    latency_budget_ms: float,
    tolerance: float,
    force_promote: bool,
    decision: Output[Artifact],
    decision_md: Output[Markdown],
    decision_html: Output[HTML],
    min_map: float = 0.0,
    min_map50: float = 0.0,
) -> NamedTuple("SelectOutputs", [("publish", bool), ("variant", str)]):
    """Choose the fastest variant within the accuracy (and latency) budget, judged by the intervals
    in the report; check the quality floor; compare with the champion.

    Args:
        evaluation: the evaluate step's artifact (report.json inside).
        model_name, channel, bucket: where the champion is looked up (the channel's current release).
        accuracy_budget: max ΔmAP@[.5:.95] vs float in points; "" or "none" = not configured.
        latency_budget_ms: max 1-thread median latency; 0 = none.
        tolerance: max mAP drop vs the champion, in points.
        force_promote: publish even if a rule fails (recorded).
        min_map, min_map50: quality floor (mAP@[.5:.95], mAP@.5 in 0..1) every release must pass,
            the first included; 0 = off.
    Outputs: decision (JSON, passed to publish), decision_md / decision_html (the verdict and why),
    publish (drives the dsl.If around publish), variant (the chosen variant's name, "" if none).
    """
    import collections

    from components.select import core

    result = core.select_step(
        evaluation_dir=evaluation.path, model_name=model_name, channel=channel, bucket=bucket,
        accuracy_budget=accuracy_budget, latency_budget_ms=latency_budget_ms, tolerance=tolerance,
        force_promote=force_promote, out_json=decision.path, out_md=decision_md.path,
        out_html=decision_html.path, min_map=min_map, min_map50=min_map50)
    decision.metadata.update({"publish": result.publish, "chosen": result.chosen or "",
                              "forced": result.forced, "outcome": result.outcome})
    outputs = collections.namedtuple("SelectOutputs", ["publish", "variant"])
    return outputs(result.publish, result.chosen or "")


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def not_published(decision: Input[Artifact], explanation: Output[Markdown]):
    """Runs when the gate refused: logs why nothing was published and keeps that as Markdown."""

    from components.select import report

    report.explain_refusal(decision.path, explanation.path)

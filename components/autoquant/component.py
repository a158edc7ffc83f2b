"""KFP interface of the autoquant step (logic in components/autoquant/core.py)."""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def autoquant(
    dataset: Input[Dataset],
    float_model: Input[Model],
    result: Output[Artifact],
    metrics: Output[Metrics],
    tradeoff_md: Output[Markdown],
    accuracy_budget: str = "1.0",
    max_latency_ms: float = 0.0,
    max_size_bytes: int = 0,
    max_candidates: int = 12,
    max_seconds: float = 0.0,
    seed: int = 0,
    qat_model: Input[Model] = None,
) -> NamedTuple("AutoquantOutputs", [("chosen", str), ("met_budget", bool), ("partial", bool)]):
    """Find the fastest .tflite within ``accuracy_budget`` mAP points of fp32 (QAT/full/selective int8, 16x8,
    float16, fp32), each candidate measured on the val split.

    Args:
        dataset: the data step's Dataset (calibration + val splits). float_model / qat_model: the
            train and qat steps' Model artifacts (qat_model optional: without it qat_int8 is skipped).
        accuracy_budget: max ΔmAP@[.5:.95] vs fp32 in points, as text like the pipeline's
            ("1.0"); "none" = no accuracy limit (the fastest candidate). max_latency_ms / max_size_bytes: extra
            limits (0 = none). max_candidates / max_seconds: search limits (0 s = none). seed: the
            calibration sample.
    Outputs: result (the chosen .tflite + variants.json, autoquant.json, tradeoff.json/md/png,
    layers.csv/json/md, candidates/), metrics (chosen ΔmAP, latency, size), tradeoff_md (the curve
    table, shown by Vertex AI and kfp.local); returns the chosen name and the budget/partial flags.
    """
    import shutil
    from collections import namedtuple

    from components._kfp import log_metrics
    from components.autoquant import core
    from edgeship.contracts import budget

    qat_dir = qat_model.path if qat_model is not None else None
    res = core.autoquant(float_model.path, qat_dir, dataset.path, result.path,
                         budget_pt=budget.budget_points(accuracy_budget),
                         max_latency_ms=max_latency_ms or None, max_size_bytes=max_size_bytes or None,
                         max_candidates=max_candidates, max_seconds=max_seconds or None, seed=seed,
                         progress=False)
    chosen = res.chosen
    figures = {"candidates": len(res.candidates)}
    if chosen is not None:
        figures.update({"delta_map_pts": chosen.delta_pt or 0.0, "latency_ms": chosen.latency_ms or 0.0,
                        "size_bytes": chosen.size_bytes or 0, "float_layers": len(chosen.float_layers)})
    log_metrics(metrics, figures)
    shutil.copyfile(res.files["tradeoff.md"], tradeoff_md.path)
    result.metadata.update({"chosen": chosen.name if chosen else "", "met_budget": res.met_budget,
                            "partial": res.partial, "message": res.message})
    out = namedtuple("AutoquantOutputs", ["chosen", "met_budget", "partial"])
    return out(chosen.name if chosen else "", bool(res.met_budget), bool(res.partial))

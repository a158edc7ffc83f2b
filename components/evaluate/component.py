"""KFP interface of the evaluate step (logic in components/evaluate/core.py)."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    float_model: Input[Model],
    variants: Input[Artifact],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
    latency_runs: int = 50,
    split: str = "val",
    bootstrap_resamples: int = 200,
    confidence: float = 0.95,
    latency_blocks: int = 10,
    accuracy_budget: str = "",
    diagnose: bool = True,
    views: int = -1,
    bucket: str = "",
    model_name: str = "",
    channel: str = "",
):
    """Evaluate the float Keras model and every .tflite variant (run in LiteRT) on the val split.

    Args:
        dataset: the data step's Dataset artifact. float_model: the train step's Model artifact.
        variants: the quantize step's artifact (variants.json + .tflite files).
        latency_runs: timed runs per thread setting (after warm-up). split: the split to score.
        bootstrap_resamples: resamples of the images for the mAP / ΔmAP intervals (0 = none).
        confidence: the intervals' level. latency_blocks: rounds of the variants timed in turns.
        accuracy_budget: the gate's ΔmAP budget in points ("" / "none" = not set). diagnose: when
            no int8 variant is provably within it, rank the layers by int8 error and measure
            selective-int8 candidates (worst layers kept float) too; they are written under
            evaluation/selective, where publish finds them if the gate picks one.
        views: views per val photo for the gate's ΔmAP (photo, mirror, centre crop, both; drawn
            by photo in the bootstrap): -1 = auto (up to 4 until 200 images are scored), 1 = none.
        bucket / model_name / channel: where the gate will publish; when given, the model that
            channel serves now (the champion) is downloaded, checked and scored on the same images
            (same labels only), and each variant gets a paired ΔmAP against it for the gate.
    Outputs: evaluation (report.json, report.md, report.html, tradeoff.png), metrics (mAP, ΔmAP,
    size and latency per variant, with their interval bounds), report_html / report_md (table + plot, shown by Vertex AI and
    kfp.local).
    """
    import shutil

    from components._kfp import log_metrics
    from components.evaluate import core

    report = core.evaluate(variants.path, dataset.path, evaluation.path, float_model_dir=float_model.path,
                           split=split, latency_runs=latency_runs, bootstrap_resamples=bootstrap_resamples,
                           confidence=confidence, latency_blocks=latency_blocks, show_progress=False,
                           accuracy_budget=accuracy_budget, diagnose=diagnose, views=views,
                           bucket=bucket, model_name=model_name, channel=channel)
    log_metrics(metrics, core.key_metrics(report))
    shutil.copyfile(report.files["report.html"], report_html.path)
    shutil.copyfile(report.files["report.md"], report_md.path)
    evaluation.metadata.update({"float_reference": report.float_reference or "",
                                "variants": sorted(report.variants)})

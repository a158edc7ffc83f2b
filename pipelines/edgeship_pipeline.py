"""The edgeship pipeline: data → train → qat → candidates → evaluate → select → (gate) publish.

Wiring only: every step is a component from components/<step>/component.py. Typed artifacts flow
between steps (Dataset, Model, the variants and evaluation artifacts, the gate's decision).

Candidates come from one of two sources, picked by ``auto_quantize``:

- ``quantize`` (default): every scheme (fp32, dynamic-range int8, float16, full int8, 16x8, QAT
  int8) in one Variants artifact; select takes the fastest within the budgets.
- ``autoquant``: the search for the fastest .tflite within ``accuracy_budget`` (QAT int8, full
  int8, selective int8 with the worst layers kept float, 16x8, float16, fp32), each candidate
  measured on val; its result folder is a Variants artifact holding the chosen model, so the same
  evaluate → select → publish steps follow. Its trade-off curve is an output of the autoquant step
  and a section of the evaluation report.

Both branches share one wiring function; in the autoquant branch KFP names the shared steps
``evaluate-2``, ``select-2``... (``pipelines.local.LocalRun.task`` finds either). A dsl.OneOf
merging the two sources into one evaluate step would be tidier, but kfp.local 2.17 fails on it
("Expected 1 artifact in ArtifactSelectorSpec").

Variants "in parallel": one quantize step produces every variant rather than a dsl.ParallelFor
over schemes feeding a collector. Reasons: the conversions share the loaded models and the
calibration set (loading them dominates a conversion on this data size), the contract is one
folder with one variants.json, and on a 2-core machine parallel steps gain nothing. On Vertex AI
each step gets its own machine, so a fan-out would pay six image pulls and model loads for
seconds of conversion each.

Publishing runs only inside ``dsl.If(select.publish == True)``; when the gate refuses, the
``not-published`` branch runs a tiny step that logs why (the decision's Markdown is also an
output of select, shown by Vertex AI and kfp.local).
"""

from kfp import dsl

from components.autoquant.component import autoquant as autoquant_op
from components.autoquant.settings import AUTOQUANT
from components.data.component import data as data_op
from components.data.settings import DATA
from components.evaluate.component import evaluate as evaluate_op
from components.publish.component import publish as publish_op
from components.publish.settings import PUBLISH
from components.qat.component import qat as qat_op
from components.qat.settings import PIPELINE_QAT
from components.quantize.component import quantize as quantize_op
from components.select.component import not_published as not_published_op
from components.select.component import select as select_op
from components.select.settings import SELECT
from components.train.component import train as train_op
from components.train.settings import PIPELINE_TRAIN

PIPELINE_NAME = "edgeship"
# Defaults come from the steps' settings (components/<step>/settings.py); the pipeline's shorter
# training schedule is PIPELINE_TRAIN / PIPELINE_QAT there.
LEARNING_RATE = PIPELINE_TRAIN.learning_rate


def evaluate_gate_publish(*, variants, dataset, float_model, model_name: str, channel: str, bucket: str,
                          accuracy_budget: str, latency_budget_ms: float, tolerance: float,
                          force_promote: bool, min_app_version: str) -> None:
    """evaluate → select → dsl.If(publish) publish / dsl.Else not_published, on a Variants artifact
    (quantize's or autoquant's). Called inside the pipeline function only."""
    evaluate_task = evaluate_op(dataset=dataset, float_model=float_model, variants=variants)
    evaluation = evaluate_task.outputs["evaluation"]

    select_task = select_op(
        evaluation=evaluation, model_name=model_name, channel=channel, bucket=bucket,
        accuracy_budget=accuracy_budget, latency_budget_ms=latency_budget_ms,
        tolerance=tolerance, force_promote=force_promote)
    select_task.set_caching_options(False)  # the champion can change between runs

    with dsl.If(select_task.outputs["publish"] == True, name="gate-passed"):  # noqa: E712
        publish_task = publish_op(
            variants=variants, evaluation=evaluation, dataset=dataset,
            decision=select_task.outputs["decision"], variant=select_task.outputs["variant"],
            model_name=model_name, channel=channel, bucket=bucket,
            min_app_version=min_app_version)
        publish_task.set_caching_options(False)
    with dsl.Else(name="gate-refused"):
        refused = not_published_op(decision=select_task.outputs["decision"])
        refused.set_caching_options(False)


@dsl.pipeline(name=PIPELINE_NAME,
              description="Train, QAT, quantize, evaluate, gate and publish an on-device detector.")
def edgeship_pipeline(
    data_uri: str = DATA.data_uri,
    model_name: str = PUBLISH.model_name,
    channel: str = PUBLISH.channel,
    bucket: str = PUBLISH.bucket,
    input_size: int = DATA.image_size,
    epochs: int = PIPELINE_TRAIN.epochs,
    learning_rate: float = PIPELINE_TRAIN.learning_rate,
    qat_epochs: int = PIPELINE_QAT.epochs,
    accuracy_budget: str = SELECT.accuracy_budget,
    latency_budget_ms: float = SELECT.latency_budget_ms,
    tolerance: float = SELECT.tolerance,
    force_promote: bool = SELECT.force_promote,
    min_app_version: str = PUBLISH.min_app_version,
    auto_quantize: bool = False,
    autoquant_max_candidates: int = AUTOQUANT.max_candidates,
    autoquant_max_seconds: float = AUTOQUANT.max_seconds,
):
    """Args:
    data_uri: dataset folder or gs:// prefix in the contract's layout; "" = generate the
        embedded default dataset.
    model_name, channel, bucket: where the model is published (gs://bucket/models/model_name/)
        and which channel's current release is the champion.
    input_size: square input side in pixels. epochs: float training epochs.
    learning_rate: peak learning rate of the float training (warm-up, then cosine to 1%).
    qat_epochs: quantization-aware fine-tuning epochs.
    accuracy_budget: max ΔmAP@[.5:.95] vs float, in points; "none" = not configured.
    latency_budget_ms: max 1-thread median latency (0 = none). tolerance: max mAP drop vs the
        champion, points. force_promote: publish even when the gate fails (recorded).
    min_app_version: the lowest client app version that can run the model (in the manifest).
    auto_quantize: candidates from the autoquant search (fastest within accuracy_budget, with
        selective int8) instead of the fixed set of schemes.
    autoquant_max_candidates, autoquant_max_seconds: the search's limits (0 s = no time limit;
        on the limit it returns the best so far, marked partial).
    """
    data_task = data_op(data_uri=data_uri, image_size=input_size)
    dataset = data_task.outputs["dataset"]

    train_task = train_op(dataset=dataset, input_size=input_size, epochs=epochs,
                          learning_rate=learning_rate)
    float_model = train_task.outputs["model"]

    qat_task = qat_op(dataset=dataset, float_model=float_model, epochs=qat_epochs)
    qat_model = qat_task.outputs["model"]

    gate = dict(dataset=dataset, float_model=float_model, model_name=model_name, channel=channel,
                bucket=bucket, accuracy_budget=accuracy_budget, latency_budget_ms=latency_budget_ms,
                tolerance=tolerance, force_promote=force_promote, min_app_version=min_app_version)
    with dsl.If(auto_quantize == False, name="fixed-variants"):  # noqa: E712
        quantize_task = quantize_op(dataset=dataset, float_model=float_model, qat_model=qat_model)
        evaluate_gate_publish(variants=quantize_task.outputs["variants"], **gate)
    with dsl.Else(name="auto-quantize"):
        autoquant_task = autoquant_op(
            dataset=dataset, float_model=float_model, qat_model=qat_model,
            accuracy_budget=accuracy_budget, max_latency_ms=latency_budget_ms,
            max_candidates=autoquant_max_candidates, max_seconds=autoquant_max_seconds)
        evaluate_gate_publish(variants=autoquant_task.outputs["result"], **gate)


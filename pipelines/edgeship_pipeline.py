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

Machines and images: ``build_pipeline(plan, cpu_image, gpu_image)`` puts every task's CPU, memory
and GPU limits from a ``pipelines.resources.ResourcePlan`` on it, runs the steps that have a GPU on
the GPU image and the others on the CPU image, and with ``plan.multi_worker > 1`` runs train as a
Vertex AI CustomJob with that many replicas (pipelines/custom_job.py). ``edgeship_pipeline`` is
the default build: the ``cpu`` profile on the default images (kfp.local ignores the limits).
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
from edgeship.base.image import DEFAULT_IMAGE, gpu_image_for
from pipelines import resources
from pipelines.custom_job import SERVICE_ACCOUNT, custom_training_job_from_component
from pipelines.placement import apply_resources, with_image

PIPELINE_NAME = "edgeship"
# Defaults come from the steps' settings (components/<step>/settings.py); the pipeline's shorter
# training schedule is PIPELINE_TRAIN / PIPELINE_QAT there.
LEARNING_RATE = PIPELINE_TRAIN.learning_rate
OPS = {"data": data_op, "train": train_op, "qat": qat_op, "quantize": quantize_op,
       "autoquant": autoquant_op, "evaluate": evaluate_op, "select": select_op,
       "publish": publish_op, "not-published": not_published_op}


class Placement:
    """The step components on their images, and the resources put on their tasks, for one plan."""

    def __init__(self, plan: resources.ResourcePlan, cpu_image: str, gpu_image: str):
        self.plan = plan
        self.ops = {name: with_image(op, gpu_image if plan.accelerated(name) else cpu_image)
                    for name, op in OPS.items()}
        if plan.multi_worker > 1:
            train = plan.for_step("train")
            self.ops["train"] = custom_training_job_from_component(
                self.ops["train"], replica_count=plan.multi_worker,
                machine_type=plan.train_machine_type(),
                accelerator_type=train.accelerator_type if train.accelerated else "",
                accelerator_count=train.accelerator_count or 1,
                restart_job_on_worker_restart=True,  # a restarted worker restarts all: they resume
                service_account=SERVICE_ACCOUNT)     # the pipeline's account, not Vertex's agent

    def __call__(self, step: str, **inputs):
        task = self.ops[step](**inputs)
        if not (step == "train" and self.plan.multi_worker > 1):  # a CustomJob: its worker pools
            apply_resources(task, self.plan.for_step(step), self.plan.target)
        return task


def evaluate_gate_publish(step: Placement, *, variants, dataset, float_model, model_name: str,
                          channel: str, bucket: str, accuracy_budget: str, latency_budget_ms: float,
                          tolerance: float, force_promote: bool, min_app_version: str,
                          min_map: float = SELECT.min_map, min_map50: float = SELECT.min_map50,
                          diagnose: bool = True) -> None:
    """evaluate → select → dsl.If(publish) publish / dsl.Else not_published, on a Variants artifact
    (quantize's or autoquant's). Called inside the pipeline function only. With ``diagnose`` the
    evaluation adds selective-int8 candidates when no int8 variant is within the budget (the
    autoquant branch has searched those already)."""
    evaluate_task = step("evaluate", dataset=dataset, float_model=float_model, variants=variants,
                         accuracy_budget=accuracy_budget, diagnose=diagnose,
                         bucket=bucket, model_name=model_name, channel=channel)  # re-scores the champion
    evaluation = evaluate_task.outputs["evaluation"]

    select_task = step("select", 
        evaluation=evaluation, model_name=model_name, channel=channel, bucket=bucket,
        accuracy_budget=accuracy_budget, latency_budget_ms=latency_budget_ms,
        tolerance=tolerance, force_promote=force_promote, min_map=min_map, min_map50=min_map50)
    select_task.set_caching_options(False)  # the champion can change between runs

    with dsl.If(select_task.outputs["publish"] == True, name="gate-passed"):  # noqa: E712
        publish_task = step(
            "publish", variants=variants, evaluation=evaluation, dataset=dataset,
            decision=select_task.outputs["decision"], variant=select_task.outputs["variant"],
            model_name=model_name, channel=channel, bucket=bucket,
            min_app_version=min_app_version)
        publish_task.set_caching_options(False)
    with dsl.Else(name="gate-refused"):
        refused = step("not-published", decision=select_task.outputs["decision"])
        refused.set_caching_options(False)


def build_pipeline(plan: resources.ResourcePlan | None = None, *, cpu_image: str | None = None,
                   gpu_image: str | None = None):
    """The pipeline function for ``plan`` (default: the cpu profile), with the steps that have a
    GPU on ``gpu_image`` (default: derived from ``cpu_image``) and the others on ``cpu_image``."""
    plan = plan or resources.resolve()
    cpu_image = cpu_image or DEFAULT_IMAGE
    step = Placement(plan, cpu_image, gpu_image or gpu_image_for(cpu_image))

    @dsl.pipeline(name=PIPELINE_NAME, description="Train, QAT, quantize, evaluate, gate and "
                                                  "publish an on-device detector.")
    def edgeship_pipeline(
        data_uri: str = DATA.data_uri, model_name: str = PUBLISH.model_name,
        channel: str = PUBLISH.channel, bucket: str = PUBLISH.bucket,
        input_size: int = DATA.image_size, epochs: int = PIPELINE_TRAIN.epochs,
        learning_rate: float = PIPELINE_TRAIN.learning_rate, qat_epochs: int = PIPELINE_QAT.epochs,
        accuracy_budget: str = SELECT.accuracy_budget,
        latency_budget_ms: float = SELECT.latency_budget_ms,
        tolerance: float = SELECT.tolerance, force_promote: bool = SELECT.force_promote,
        min_map: float = SELECT.min_map, min_map50: float = SELECT.min_map50,
        min_app_version: str = PUBLISH.min_app_version,
        auto_quantize: bool = False, early_stop: str = PIPELINE_TRAIN.early_stop,
        autoquant_max_candidates: int = AUTOQUANT.max_candidates,
        autoquant_max_seconds: float = AUTOQUANT.max_seconds,
        alpha: float = PIPELINE_TRAIN.alpha, patience: int = PIPELINE_TRAIN.patience,
        anchors: str = PIPELINE_TRAIN.anchors, backbone_weights: str = PIPELINE_TRAIN.backbone_weights,
        frozen_epochs: int = PIPELINE_TRAIN.frozen_epochs, init_from: str = PIPELINE_TRAIN.init_from,
        head: str = PIPELINE_TRAIN.head, train_min_steps: int = PIPELINE_TRAIN.min_steps,
        seed: int = PIPELINE_TRAIN.seed, qat_objective: str = PIPELINE_QAT.objective,
    ):
        """Args:
        data_uri: dataset folder or gs:// prefix in the contract's layout; "" = the embedded data.
        model_name, channel, bucket: where it is published (gs://bucket/models/model_name/) and
            which channel's current release is the champion.
        input_size: square input side in pixels. epochs: float training epochs. learning_rate:
            its peak (warm-up, then cosine to 1%). qat_epochs: quantization-aware fine-tuning epochs.
        accuracy_budget: max ΔmAP@[.5:.95] vs float, in points; "none" = not configured.
        latency_budget_ms: max 1-thread median latency (0 = none). tolerance: max mAP drop vs the
            champion, points. force_promote: publish even when the gate fails (recorded).
        min_map, min_map50: quality floor (mAP@[.5:.95], mAP@.5 in 0..1) every release, the first
            one too, must pass; 0 = off. min_app_version: the lowest app version that can run it.
        auto_quantize: candidates from the autoquant search (fastest within accuracy_budget, with
            selective int8) instead of the fixed set; autoquant_max_candidates and
            autoquant_max_seconds limit it (0 s = no limit; then the best so far, marked partial).
        alpha, patience, anchors ("fit" | "default"), backbone_weights ("none" | "imagenet" | a
            weights URI), frozen_epochs, init_from, head ("ssd" | "fpn"), early_stop ("val_loss" |
            "val_map" | "none"): the train step's.
        train_min_steps: a small train split's epochs are raised to reach this many optimizer steps
            (patience alike; 0 = epochs exactly): 151 photos get 300 epochs, the embedded data 40.
        seed: the train and QAT steps' seed (the data step's carved splits keep their own).
            qat_objective: what QAT fine-tunes towards, "both" | "distill" | "labels".
        """
        dataset = step("data", data_uri=data_uri, image_size=input_size).outputs["dataset"]

        train_task = step("train", dataset=dataset, input_size=input_size, epochs=epochs, alpha=alpha,
                          learning_rate=learning_rate, patience=patience, anchors=anchors,
                          backbone_weights=backbone_weights, frozen_epochs=frozen_epochs,
                          init_from=init_from, head=head, min_steps=train_min_steps, seed=seed,
                          early_stop=early_stop)
        float_model = train_task.outputs["model"]

        qat_model = step("qat", dataset=dataset, float_model=float_model, epochs=qat_epochs,
                         seed=seed, objective=qat_objective).outputs["model"]

        gate = dict(dataset=dataset, float_model=float_model, model_name=model_name,
                    channel=channel, bucket=bucket, accuracy_budget=accuracy_budget,
                    latency_budget_ms=latency_budget_ms, tolerance=tolerance,
                    force_promote=force_promote, min_app_version=min_app_version,
                    min_map=min_map, min_map50=min_map50)
        with dsl.If(auto_quantize == False, name="fixed-variants"):  # noqa: E712
            quantize_task = step("quantize", dataset=dataset, float_model=float_model,
                                 qat_model=qat_model)
            evaluate_gate_publish(step, variants=quantize_task.outputs["variants"], **gate)
        with dsl.Else(name="auto-quantize"):
            autoquant_task = step(
                "autoquant", dataset=dataset, float_model=float_model, qat_model=qat_model,
                accuracy_budget=accuracy_budget, max_latency_ms=latency_budget_ms,
                max_candidates=autoquant_max_candidates, max_seconds=autoquant_max_seconds)
            evaluate_gate_publish(step, variants=autoquant_task.outputs["result"], diagnose=False, **gate)

    return edgeship_pipeline


edgeship_pipeline = build_pipeline()

"""KFP interface of the qat step (logic in components/qat/core.py)."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def qat(
    float_model: Input[Model],
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    epochs: int = 3,
    batch_size: int = 16,
    learning_rate: float = 0.0002,
    seed: int = 0,
    min_steps: int = 25,
    freeze_bn: bool = True,
    freeze_ranges: bool = True,
    objective: str = "both",
    deterministic: bool = True,
):
    """Quantization-aware fine-tuning (tfmot) of the whole float detector.

    Args:
        float_model: the train step's Model artifact. dataset: the Dataset artifact.
        epochs: a minimum, raised when it gives fewer than min_steps optimizer steps (0: exactly epochs).
        batch_size, learning_rate (peak: 5 % warm-up, then cosine decay; lower than float training), seed.
        freeze_bn: BatchNorm statistics frozen (gamma/beta train). freeze_ranges: activation ranges
        kept at their calibrated values. objective: "distill" (towards the float model's own
        outputs), "labels" or "both" (the two losses summed). deterministic: TensorFlow's deterministic ops.
    Outputs: model (the train layout with fine-tuned float-layout weights.h5, plus qat_weights.h5
    and qat_saved_model/; rebuild with components.qat.core.load_qat_model), metrics (final
    losses, the epochs and steps run, float vs QAT step time measured in this run, their ratio,
    val mAP).
    """
    from components._kfp import log_metrics
    from components.qat import core

    result = core.qat(float_model.path, dataset.path, model.path, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, seed=seed, min_steps=min_steps, freeze_bn=freeze_bn,
                      freeze_ranges=freeze_ranges, objective=objective, deterministic=deterministic,
                      progress=False)
    h = result.history
    log_metrics(metrics, (("loss", h["loss"][-1]), ("val_loss", result.best_val_loss),
                          ("epochs_run", result.epochs_run), ("total_steps", result.schedule.get("total_steps")),
                          ("float_ms_per_image", result.float_ms_per_image),
                          ("qat_ms_per_image", result.qat_ms_per_image),
                          ("step_time_ratio", result.step_time_ratio),
                          ("step_time_ratio_same_bn", h["step_time"].get("ratio_same_bn")),
                          ("qat_seconds", result.qat_seconds),
                          ("val_map", result.val_map), ("val_map50", result.val_map50)))
    model.metadata.update({"framework": "tf_keras+tfmot", "qat": True, "load_with": "components.qat.core.load_qat_model"})

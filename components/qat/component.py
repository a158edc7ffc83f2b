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
):
    """Quantization-aware fine-tuning (tfmot) of the whole float detector.

    Args:
        float_model: the train step's Model artifact. dataset: the Dataset artifact.
        epochs, batch_size, learning_rate (constant-then-cosine, lower than float training), seed.
    Outputs: model (the train layout with fine-tuned float-layout weights.h5, plus qat_weights.h5
    and qat_saved_model/; rebuild with components.qat.core.load_qat_model), metrics (final
    losses, float vs QAT step time measured in this run, their ratio, val mAP).
    """
    from components._kfp import log_metrics
    from components.qat import core

    result = core.qat(float_model.path, dataset.path, model.path, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, seed=seed, progress=False)
    h = result.history
    log_metrics(metrics, (("loss", h["loss"][-1]), ("val_loss", result.best_val_loss),
                          ("float_ms_per_image", result.float_ms_per_image),
                          ("qat_ms_per_image", result.qat_ms_per_image),
                          ("step_time_ratio", result.step_time_ratio), ("qat_seconds", result.qat_seconds),
                          ("val_map", result.val_map), ("val_map50", result.val_map50)))
    model.metadata.update({"framework": "tf_keras+tfmot", "qat": True, "load_with": "components.qat.core.load_qat_model"})

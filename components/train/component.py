"""KFP interface of the train step (logic in components/train/core.py)."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    epochs: int = 60,
    batch_size: int = 16,
    alpha: float = 0.35,
    input_size: int = 0,
    learning_rate: float = 0.006,
    seed: int = 0,
    patience: int = 8,
    anchors: str = "fit",
    backbone_weights: str = "none",
    frozen_epochs: int = 0,
    init_from: str = "",
    head: str = "ssd",
    deterministic: bool = True,
    min_steps: int = 0,
    early_stop: str = "val_loss",
):
    """Train the SSDLite MobileNetV2 detector on the Dataset artifact (from scratch or warm-started).

    Args:
        dataset: the data step's Dataset artifact. epochs: maximum epochs (see early_stop).
        batch_size, alpha (MobileNetV2 width), learning_rate (peak, warm-up + cosine), seed.
        input_size: square model input side, a multiple of 32 (0 = the dataset's image size).
        patience: early-stopping patience in epochs. anchors: "fit" (clustered on
        the training boxes, a stride-8 level for small objects) or "default".
        backbone_weights: "none", "imagenet" (downloads) or a weights file / Model artifact
        (local or gs://). frozen_epochs: epochs with that backbone frozen first. init_from: an
        earlier Model artifact to continue from (backbone only when the labels changed).
        head: "ssd" (a head per level) or "fpn" (FPN-lite top-down merge, 64 channels, first).
        deterministic: TensorFlow's deterministic ops (the same seed gives the same model).
        min_steps: on a small train split, raise the epochs (and patience alike) until the run
            makes this many optimizer steps (0 = epochs exactly; history.json "schedule").
        early_stop: which epoch is kept and ends the run after `patience` epochs without a better
            one: "val_loss", "val_map" (the Keras model's val mAP after each epoch) or "none".
    Outputs: model (weights.h5, model_config.json, anchors.npy, saved_model/, history.json, and
    TensorBoard logs in logs/), metrics (final losses, val mAP of the Keras model, step time).
    """
    from components._kfp import log_metrics
    from components.train import core

    result = core.train(dataset.path, model.path, epochs=epochs, batch_size=batch_size, alpha=alpha,
                        input_size=(input_size, input_size) if input_size else None,
                        learning_rate=learning_rate, seed=seed, patience=patience, anchors=anchors,
                        backbone_weights=backbone_weights, frozen_epochs=frozen_epochs,
                        init_from=init_from, head=head, deterministic=deterministic, min_steps=min_steps,
                        early_stop=early_stop, progress=False)
    h = result.history
    log_metrics(metrics, (("loss", h["loss"][-1]), ("val_loss", result.best_val_loss),
                          ("epochs", result.epochs_run), ("train_seconds", result.train_seconds),
                          ("ms_per_image", result.ms_per_image), ("val_map", result.val_map),
                          ("val_map50", result.val_map50)))
    model.metadata.update({"framework": "tf_keras", "alpha": alpha, "input_size": result.config["input_size"],
                           "num_classes": result.config["num_classes"], "tensorboard_logs": "logs/"})

"""The detector's training loop: the loss, the learning-rate schedule, the train/val step functions,
``fit`` (epochs, early stopping, checkpoints, TensorBoard, progress), Keras-model mAP, and the
Model artifact export."""
from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgeship.contracts import model as model_contract
from edgeship.detection.model import (
    ModelConfig,
    decode_and_nms,
    model_outputs,
)
from edgeship.detection.train_data import (
    LossConfig,
    TrainData,
)

log = logging.getLogger(__name__)


@contextmanager
def op_determinism(enabled: bool) -> Iterator[bool]:
    """TensorFlow's deterministic ops (and tf.data's deterministic order) while inside, when
    ``enabled``, and gradient sums in a fixed order (edgeship.base.gradient_sums: TF's AddN adds
    3+ gradients in an order that follows thread timing): the same seed then gives the same
    losses and weights, bit for bit, on the same machine and TensorFlow build (measured: ~2-4 %
    slower on 2 CPU cores). Restored on exit, so a process that trains more than once (tests,
    notebooks) is not left changed. Yields whether TF's op determinism is on."""
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism is not public

    from edgeship.base.gradient_sums import ordered_gradient_sums

    turn_on = enabled and not tf_config.is_op_determinism_enabled()
    if turn_on:
        tf_config.enable_op_determinism()
    try:
        with ordered_gradient_sums() if enabled else nullcontext():
            yield tf_config.is_op_determinism_enabled()
    finally:
        if turn_on:
            tf_config.disable_op_determinism()


def deterministic_by_default(default: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a step's core function so that it runs under :func:`op_determinism` of its
    ``deterministic`` keyword argument (``default`` when not given), and receives it too."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, deterministic: bool = default, **kwargs: Any) -> Any:
            with op_determinism(deterministic):
                return func(*args, deterministic=deterministic, **kwargs)
        return wrapper
    return decorate


def lr_schedule(base_lr: float, total_steps: int, warmup_steps: int) -> Any:
    """Linear warm-up then cosine decay to 1% of ``base_lr``."""
    from edgeship.base.tfcompat import keras, tf

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = base_lr * (step + 1) / max(1, warmup_steps)
            frac = tf.clip_by_value((step - warmup_steps) / max(1, total_steps - warmup_steps), 0.0, 1.0)
            cos = base_lr * (0.01 + 0.99 * 0.5 * (1 + tf.cos(math.pi * frac)))
            return tf.where(step < warmup_steps, warm, cos)

        def get_config(self):
            return {"base_lr": base_lr, "total_steps": total_steps, "warmup_steps": warmup_steps}

    return WarmupCosine()


def configure_devices() -> str:
    """Use a GPU when one is present (memory growth on); return a description of the device."""
    from edgeship.base.tfcompat import tf

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:  # already initialized
            pass
    return f"GPU x{len(gpus)} ({gpus[0].name})" if gpus else "CPU"


def _mean_epoch(seconds: list[float]) -> float:
    """Mean epoch wall time for the ETA, leaving out epoch 1 (it also traces tf.functions) when possible."""
    basis = seconds[1:] or seconds
    return sum(basis) / len(basis)


def _build_optimizer(model: Any, schedule: Any, dist: Any, weight_decay: float) -> tuple[Any, Any]:
    """Create the AdamW optimizer and its checkpoint under the strategy's scope."""
    from edgeship.base.tfcompat import keras, tf
    from edgeship.detection import distribute

    with dist.scope():
        optimizer = distribute.wrap_optimizer(keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=weight_decay, clipnorm=10.0), dist.precision)
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return optimizer, ckpt


def _checkpoint_manager(ckpt: Any, out_dir: Path, dist: Any, resume: bool) -> tuple[Any, int]:
    """Set up the checkpoint manager, restoring the newest checkpoint when resuming; return it and the first epoch."""
    from edgeship.base.tfcompat import tf
    from edgeship.detection import distribute

    read_dir, write_dir = distribute.checkpoint_dirs(out_dir / "checkpoints", dist)
    manager = tf.train.CheckpointManager(ckpt, str(write_dir), max_to_keep=2)
    first_epoch = distribute.restore_latest(ckpt, read_dir) + 1 if resume else 1
    return manager, first_epoch


def _new_history() -> dict[str, list]:
    """The empty per-epoch history dict."""
    return {"epoch": [], "loss": [], "cls_loss": [], "box_loss": [], "val_loss": [],
            "val_cls_loss": [], "val_box_loss": [], "lr": [], "epoch_seconds": [],
            "ms_per_image": []}


def _progress_columns() -> list[Any]:
    """The rich progress bar's columns."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]


@dataclass
class _FitRun:
    """The fixed pieces of one fit call that the per-epoch helpers share."""

    report: Any
    bar: Any
    task: Any
    epochs: int
    steps_per_epoch: int
    batch_size: int
    total: int
    title: str
    history: dict[str, list]
    epoch_seconds: list[float]
    writers: dict[str, Any]
    manager: Any
    schedule: Any


def _train_epoch(run: _FitRun, batches: Any, train_step: Any, epoch: int, t0: float,
                 step: int) -> tuple[np.ndarray, int, float | None, int]:
    """Run one epoch's training steps with bar updates and progress reports; return (sums, n, t_first, step)."""
    sums, n, t_first = np.zeros(2), 0, None
    for images, targets in batches:
        c, b = train_step(images, targets)
        sums += (float(c), float(b))
        n += 1
        step += 1
        if t_first is None:
            t_first = time.perf_counter()
        run.bar.update(run.task, advance=1, info=f"epoch {epoch}/{run.epochs} loss {sums.sum() / n:.3f}")
        if n > 1:
            now = time.perf_counter()
            per_step = (now - t_first) / (n - 1)
            if run.epoch_seconds:
                mean = _mean_epoch(run.epoch_seconds)
                eta = max(0.0, mean - (now - t0)) + mean * (run.epochs - epoch)
            else:
                eta = per_step * (run.total - step)
            run.report(epoch=epoch, epochs=run.epochs, batch=n, batches=run.steps_per_epoch,
                       loss=float(sums.sum() / n),
                       val_loss=run.history["val_loss"][-1] if run.history["val_loss"] else None,
                       img_s=run.batch_size / per_step if per_step > 0 else None, eta_s=eta)
    return sums, n, t_first, step


def _validate(val_ds: Any, eval_step: Any) -> tuple[np.ndarray, int]:
    """Sum the example-weighted (cls, box) val losses; return the sums and the example count."""
    vs, vn = np.zeros(2), 0
    for images, targets in val_ds:
        c, b = eval_step(images, targets)
        k = int(images.shape[0])
        vs += (float(c) * k, float(b) * k)
        vn += k
    return vs, vn


def _record_epoch(run: _FitRun, epoch: int, tr: np.ndarray, va: np.ndarray, lr: float, seconds: float,
                  steady: float) -> None:
    """Append the epoch's figures to the history and write its TensorBoard scalars."""
    from edgeship.base.tfcompat import tf

    for key, val in (("epoch", epoch), ("loss", tr.sum()), ("cls_loss", tr[0]), ("box_loss", tr[1]),
                     ("val_loss", va.sum()), ("val_cls_loss", va[0]), ("val_box_loss", va[1]),
                     ("lr", lr), ("epoch_seconds", seconds), ("ms_per_image", 1000 * steady / run.batch_size)):
        run.history[key].append(float(val))
    with run.writers["train"].as_default():
        tf.summary.scalar("loss", tr.sum(), step=epoch)
        tf.summary.scalar("cls_loss", tr[0], step=epoch)
        tf.summary.scalar("box_loss", tr[1], step=epoch)
        tf.summary.scalar("learning_rate", lr, step=epoch)
    with run.writers["val"].as_default():
        tf.summary.scalar("loss", va.sum(), step=epoch)
        tf.summary.scalar("cls_loss", va[0], step=epoch)
        tf.summary.scalar("box_loss", va[1], step=epoch)


def _end_epoch(run: _FitRun, val_ds: Any, eval_step: Any, epoch: int, t0: float, step: int,
               sums: np.ndarray, n: int, t_first: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate, record, checkpoint, report and log a finished epoch; return its (train, val) mean losses."""
    t1 = time.perf_counter()
    steady = (t1 - t_first) / max(1, n - 1) if n > 1 else (t1 - t0)
    run.report(force=True, epoch=epoch, epochs=run.epochs, phase="validating", loss=float(sums.sum() / max(1, n)))
    vs, vn = _validate(val_ds, eval_step)
    tr, va = sums / max(1, n), vs / max(1, vn)
    lr = float(run.schedule(step))
    _record_epoch(run, epoch, tr, va, lr, t1 - t0, steady)
    run.manager.save(checkpoint_number=epoch)
    run.epoch_seconds.append(time.perf_counter() - t0)
    mean = _mean_epoch(run.epoch_seconds)
    run.report(force=True, mark=True, epoch=epoch, epochs=run.epochs, loss=float(tr.sum()),
               val_loss=float(va.sum()), img_s=run.batch_size / steady if steady > 0 else None,
               eta_s=mean * (run.epochs - epoch))
    log.info("%s epoch %d/%d: loss %.4f (cls %.4f box %.4f) val %.4f, %.1f s, %.2f ms/image",
             run.title, epoch, run.epochs, tr.sum(), tr[0], tr[1], va.sum(), t1 - t0,
             1000 * steady / run.batch_size)
    return tr, va


def epoch_schedule(train_images: int, global_batch: int, *, epochs: int, min_steps: int, patience: int,
                   max_raised_epochs: int) -> dict[str, Any]:
    """A training run's length from the data (train and qat). An epoch is one pass over the train
    split (``train_images // global_batch`` steps, at least 1). When ``epochs`` gives fewer than
    ``min_steps`` optimizer steps, the epochs are raised to reach them, to at most
    ``max(epochs, max_raised_epochs)``; past that each epoch covers more than one pass (a tiny
    split would otherwise validate and checkpoint after every step or two). A large dataset is
    never made longer than asked. ``patience`` (epochs) is stretched by the same factor as the
    epochs, so early stopping waits for the same share of the run. ``min_steps`` = 0: exactly
    ``epochs`` passes. Returns what is used and why (history.json "schedule")."""
    if epochs < 1 or global_batch < 1 or min_steps < 0 or patience < 1:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, min_steps >= 0, patience >= 1; got epochs={epochs}, "
                         f"batch {global_batch}, min_steps={min_steps}, patience={patience}")
    pass_steps = max(1, train_images // global_batch)
    run_epochs, steps_per_epoch = epochs, pass_steps
    if epochs * pass_steps < min_steps:
        run_epochs = min(math.ceil(min_steps / pass_steps), max(epochs, max_raised_epochs))
        steps_per_epoch = max(pass_steps, math.ceil(min_steps / run_epochs))
    stretch = run_epochs / epochs
    total = run_epochs * steps_per_epoch
    passes = steps_per_epoch / pass_steps
    if run_epochs == epochs and steps_per_epoch == pass_steps:
        reason = f"{epochs} epochs as asked: {total} steps >= min_steps={min_steps}"
    else:
        reason = (f"{epochs} epochs of {pass_steps} steps ({train_images} train images, batch {global_batch}) are "
                  f"fewer than min_steps={min_steps}: raised to {run_epochs} epochs of {steps_per_epoch} steps "
                  f"({passes:.3g} passes each), patience x{stretch:.3g}")
    return {"epochs_requested": epochs, "min_steps": min_steps, "epochs": run_epochs,
            "steps_per_epoch": steps_per_epoch, "passes_per_epoch": passes, "total_steps": total,
            "patience_requested": patience, "patience": max(patience, math.ceil(patience * stretch)),
            "reason": reason}


def fit(model: Any, train_ds: Any, val_ds: Any, *, epochs: int, steps_per_epoch: int, batch_size: int,
        learning_rate: float, num_classes: int, out_dir: Path, loss_config: LossConfig,
        patience: int = 8, warmup_epochs: float = 1.0, weight_decay: float = 1e-4,
        progress: bool = True, title: str = "train", distribution: Any = None,
        resume: bool = False, loss: Any = None, early_stop: str = "val_loss",
        val_map: Callable[[Any], float] | None = None) -> dict[str, Any]:
    """The training loop shared by train and qat. Writes TensorBoard logs to ``out_dir/logs``,
    checkpoints to ``out_dir/checkpoints``, and keeps the weights of the best epoch by
    ``early_stop`` (edgeship.detection.early_stop: "val_loss", "val_map" with ``val_map`` the
    model's val mAP, or "none"), set on ``model`` at the end. Returns the history dict (per-epoch
    losses, "val_maps" when measured, lr, step times).
    ``distribution`` (edgeship.detection.distribute; default one device): the strategy the model
    was built under and its precision; ``batch_size`` is then the global batch. ``resume``:
    continue after the newest checkpoint in ``out_dir/checkpoints``. ``loss``: what to train and
    validate on (``loss.step_loss``: the detection loss by default, or distillation)."""
    from rich.progress import Progress

    from edgeship.base.progress import Reporter
    from edgeship.base.tfcompat import tf
    from edgeship.detection import distribute
    from edgeship.detection.early_stop import EarlyStop

    stop = EarlyStop(early_stop, patience, val_map, best_weights=model.get_weights())  # kept if no epoch scores
    report = Reporter(interval=1.0)  # EDGESHIP_PROGRESS lines for the main job (when asked for)
    epoch_seconds: list[float] = []  # wall time of each finished epoch, validation included
    total = max(1, epochs * steps_per_epoch)
    schedule = lr_schedule(learning_rate, total, int(warmup_epochs * steps_per_epoch))
    dist = distribution or distribute.one_device()
    optimizer, ckpt = _build_optimizer(model, schedule, dist, weight_decay)
    train_step, eval_step = distribute.make_distributed_step_fns(dist, model, optimizer, num_classes,
                                                                 loss_config, loss=loss)
    manager, first_epoch = _checkpoint_manager(ckpt, out_dir, dist, resume)
    writers = {k: tf.summary.create_file_writer(str(out_dir / "logs" / k)) for k in ("train", "val")}
    history = _new_history()
    with Progress(*_progress_columns(), disable=not progress, transient=False) as bar:
        task = bar.add_task(title, total=total, info="")
        run = _FitRun(report, bar, task, epochs, steps_per_epoch, batch_size, total, title, history,
                      epoch_seconds, writers, manager, schedule)
        step = (first_epoch - 1) * steps_per_epoch
        bar.update(task, completed=step)
        # a repeated stream is iterated once across epochs (no restart, no shuffle-buffer refill
        # at each epoch); a finite one is started again every epoch
        endless = int(train_ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
        train_iter = iter(train_ds) if endless else None
        for epoch in range(first_epoch, epochs + 1):
            t0 = time.perf_counter()
            batches = itertools.islice(train_iter, steps_per_epoch) if endless else train_ds.take(steps_per_epoch)
            sums, n, t_first, step = _train_epoch(run, batches, train_step, epoch, t0, step)
            tr, va = _end_epoch(run, val_ds, eval_step, epoch, t0, step, sums, n, t_first)
            if stop.epoch_end(model, epoch, float(va.sum())):
                report(force=True, mark=True, epoch=epoch, epochs=epochs, phase=f"early stop ({stop.describe()})")
                log.info("early stop: %s has not improved for %d epochs (best %s)", early_stop, patience,
                         stop.describe())
                break
            if stop.val_maps:
                with writers["val"].as_default():
                    tf.summary.scalar("map", stop.val_maps[-1], step=epoch)
    for w in writers.values():
        w.flush()
    model.set_weights(stop.best_weights)
    history.update(stop.record())  # type: ignore[arg-type]
    return history


def predict_detections(model: Any, images: np.ndarray, config: ModelConfig, anchors: np.ndarray,
                       batch_size: int = 32, score_threshold: float = 0.01) -> list[Any]:
    """Run the Keras model and decode_and_nms over images → per-image Detections (class ids 1..K)."""
    from edgeship.detection.coco import Detections

    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size].astype(np.float32)
        r = decode_and_nms(*model_outputs(model(batch, training=False)), anchors, config,
                           score_threshold=score_threshold)
        for b in range(len(batch)):
            n = int(r["count"][b])
            out.append(Detections(np.clip(r["boxes"][b, :n], 0, 1), r["classes"][b, :n].astype(np.int32) + 1,
                                  r["scores"][b, :n]))
    return out


@dataclass
class _GroundTruth:
    """What coco_evaluate reads of an Example: id, image size (a zero-stride view: no pixels are
    kept), target boxes and labels."""

    image_id: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def evaluate_map(model: Any, data: TrainData | Any, config: ModelConfig, anchors: np.ndarray) -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@.5 of the Keras model (pycocotools) on ``data``: a TrainData, or
    a stream of (images, {"image_id", "boxes", "labels"}) batches (edgeship.detection.stream
    .eval_dataset; ground truth on the input, as the images). A stream keeps only each image's
    boxes, labels and detections, never its pixels."""
    from edgeship.detection.coco import coco_evaluate

    if isinstance(data, TrainData):
        dets = predict_detections(model, data.images, config, anchors)
        res = coco_evaluate(data.examples, dets, config.labels, validate=False)
        return {"map": float(res.map), "map50": float(res.map50)}
    truths, dets = [], []
    for images, gt in data:
        images = np.asarray(images, np.float32)
        dets.extend(predict_detections(model, images, config, anchors, batch_size=len(images)))
        shape = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), images.shape[1:])
        for image_id, boxes, labels in zip(gt["image_id"].numpy(), gt["boxes"].numpy(), gt["labels"].numpy()):
            keep = labels > 0
            truths.append(_GroundTruth(image_id.decode(), shape, boxes[keep], labels[keep]))
    res = coco_evaluate(truths, dets, config.labels, validate=False)
    return {"map": float(res.map), "map50": float(res.map50)}


def export_model(model: Any, config: ModelConfig, anchors: np.ndarray, out_dir: Path,
                 history: dict, *, saved_model: bool = True) -> None:
    """Write the Model artifact files (see docs/contracts.md) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out_dir / "weights.h5"))
    config.save(out_dir / model_contract.CONFIG_FILE)
    model_contract.write_anchors(out_dir, anchors)
    if saved_model:
        model.save(str(out_dir / "saved_model"), include_optimizer=False, save_format="tf")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2, default=float) + "\n")

"""The detection loss (focal classification + smooth-L1 boxes over positive anchors) and the
train/eval step functions built on it, shared by ``training.fit`` and ``distribute``."""
from __future__ import annotations

from typing import Any, Callable

from edgeship.detection.model import (
    model_outputs,
)
from edgeship.detection.train_data import (
    LossConfig,
)


def _smooth_l1(diff: Any, delta: float) -> Any:
    """Elementwise smooth-L1 (Huber) of ``diff``: quadratic below ``delta``, linear above."""
    from edgeship.base.tfcompat import tf

    diff = tf.abs(diff)
    return tf.where(diff < delta, 0.5 * diff * diff / delta, diff - 0.5 * delta)


def detection_loss(outputs: Any, targets: dict[str, Any], num_classes: int,
                   loss_config: LossConfig | None = None) -> tuple[Any, Any]:
    """(classification, box) losses of a batch, each summed and divided by the positive count:
    sigmoid focal loss over the K+1 columns (background column included) and smooth-L1 on the
    encodings of positive anchors."""
    from edgeship.base.tfcompat import tf

    lc = loss_config or LossConfig()
    box_pred, logits = model_outputs(outputs)
    cls = targets["cls"]
    onehot = tf.one_hot(cls, num_classes + 1, dtype=tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits)
    p = tf.sigmoid(logits)
    p_t = onehot * p + (1 - onehot) * (1 - p)
    alpha_t = onehot * lc.focal_alpha + (1 - onehot) * (1 - lc.focal_alpha)
    focal = tf.reduce_sum(alpha_t * tf.pow(1 - p_t, lc.focal_gamma) * ce, -1) * targets["weight"]
    pos = tf.cast(cls > 0, tf.float32)
    npos = tf.maximum(tf.reduce_sum(pos), 1.0)
    box = tf.reduce_sum(tf.reduce_sum(_smooth_l1(box_pred - targets["box"], lc.huber_delta), -1) * pos)
    return tf.reduce_sum(focal) / npos, lc.box_weight * box / npos


def distillation_loss(outputs: Any, teacher_outputs: Any, targets: dict[str, Any], num_classes: int,
                      loss_config: LossConfig | None = None) -> tuple[Any, Any]:
    """(classification, box) distances of a batch's outputs from a teacher's on the same images
    (QAT fine-tuned towards the float model it started from, not towards the labels again).

    Classification: the binary KL divergence from the teacher's sigmoid probabilities, every anchor
    and column (zero where they agree; its gradient is ``p - p_teacher``); boxes:
    smooth-L1 to the teacher's encodings, each anchor weighted by the teacher's
    highest foreground probability (the anchors that become detections). Both are divided by the
    batch's positive count, as :func:`detection_loss` is, so the two are on the same scale."""
    from edgeship.base.tfcompat import tf

    lc = loss_config or LossConfig()
    box_pred, logits = model_outputs(outputs)
    box_t, logits_t = model_outputs(teacher_outputs)
    logits_t = tf.stop_gradient(tf.cast(logits_t, tf.float32))
    p_teacher = tf.sigmoid(logits_t)
    kl = (tf.nn.sigmoid_cross_entropy_with_logits(labels=p_teacher, logits=logits)
          - tf.nn.sigmoid_cross_entropy_with_logits(labels=p_teacher, logits=logits_t))
    cls = tf.reduce_sum(tf.maximum(kl, 0.0))
    npos = tf.maximum(tf.reduce_sum(tf.cast(targets["cls"] > 0, tf.float32)), 1.0)
    confidence = tf.reduce_max(p_teacher[..., 1:], -1)
    huber = _smooth_l1(box_pred - tf.stop_gradient(tf.cast(box_t, tf.float32)), lc.huber_delta)
    box = tf.reduce_sum(tf.reduce_sum(huber, -1) * confidence)
    return cls / npos, lc.box_weight * box / npos


def step_loss(teacher: Any = None, labels_too: bool = False) -> Callable:
    """loss(outputs, images, targets, num_classes, loss_config) → (cls, box): the detection loss;
    with a ``teacher`` model the distillation loss against its outputs on the same images, plus
    the detection loss when ``labels_too``."""
    if teacher is None:
        return lambda outputs, images, targets, k, lc: detection_loss(outputs, targets, k, lc)

    def loss(outputs, images, targets, k, lc):
        cls, box = distillation_loss(outputs, teacher(images, training=False), targets, k, lc)
        if labels_too:
            cls_l, box_l = detection_loss(outputs, targets, k, lc)
            cls, box = cls + cls_l, box + box_l
        return cls, box

    return loss


def make_step_fns(model: Any, optimizer: Any, num_classes: int, loss_config: LossConfig, *,
                  loss: Callable | None = None) -> tuple[Callable, Callable]:
    """(train_step, eval_step) tf.functions returning (cls_loss, box_loss) of ``loss`` (a
    :func:`step_loss`; default the detection loss)."""
    from edgeship.base.tfcompat import tf

    loss = loss or step_loss()

    @tf.function
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            cls_loss, box_loss = loss(outputs, images, targets, num_classes, loss_config)
            total = cls_loss + box_loss + (tf.add_n(model.losses) if model.losses else 0.0)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return cls_loss, box_loss

    @tf.function
    def eval_step(images, targets):
        outputs = model(images, training=False)
        return loss(outputs, images, targets, num_classes, loss_config)

    return train_step, eval_step

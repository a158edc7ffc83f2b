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
    diff = tf.abs(box_pred - targets["box"])
    d = lc.huber_delta
    huber = tf.where(diff < d, 0.5 * diff * diff / d, diff - 0.5 * d)
    box = tf.reduce_sum(tf.reduce_sum(huber, -1) * pos)
    return tf.reduce_sum(focal) / npos, lc.box_weight * box / npos


def make_step_fns(model: Any, optimizer: Any, num_classes: int, loss_config: LossConfig) -> tuple[Callable, Callable]:
    """(train_step, eval_step) tf.functions returning (cls_loss, box_loss)."""
    from edgeship.base.tfcompat import tf

    @tf.function
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            cls_loss, box_loss = detection_loss(outputs, targets, num_classes, loss_config)
            total = cls_loss + box_loss + (tf.add_n(model.losses) if model.losses else 0.0)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return cls_loss, box_loss

    @tf.function
    def eval_step(images, targets):
        outputs = model(images, training=False)
        return detection_loss(outputs, targets, num_classes, loss_config)

    return train_step, eval_step

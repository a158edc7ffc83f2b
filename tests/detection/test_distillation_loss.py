"""The QAT distillation loss: zero exactly where the student matches the float teacher, larger
the further it is, and its gradient pulls the student towards the teacher."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.base.tfcompat import keras, tf
from edgeship.detection.loss import detection_loss, distillation_loss

A, K = 40, 2  # anchors, classes (K + 1 logit columns: background first)


def _batch(seed: int):
    rng = np.random.default_rng(seed)
    box = tf.constant(rng.normal(size=(2, A, 4)), tf.float32)
    logits = tf.constant(rng.normal(scale=3.0, size=(2, A, K + 1)), tf.float32)
    cls = rng.integers(0, K + 1, size=(2, A)).astype(np.int32)
    targets = {"cls": tf.constant(cls), "weight": tf.ones((2, A)), "box": tf.zeros((2, A, 4))}
    return (box, logits), targets


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.05, 3.0))
def test_zero_at_the_teacher_and_growing_with_the_distance(seed, scale):
    teacher, targets = _batch(seed)
    cls0, box0 = distillation_loss(teacher, teacher, targets, K)
    assert float(cls0) < 1e-6 and float(box0) < 1e-6
    noise = np.random.default_rng(seed + 1)
    near = tuple(t + scale * tf.constant(noise.normal(size=t.shape), tf.float32) for t in teacher)
    far = tuple(t + 2 * scale * tf.constant(noise.normal(size=t.shape), tf.float32) for t in teacher)
    cls1, box1 = distillation_loss(near, teacher, targets, K)
    cls2, box2 = distillation_loss(far, teacher, targets, K)
    assert 0 < float(cls1) and 0 < float(box1)
    assert float(cls1) + float(box1) < float(cls2) + float(box2)


def test_its_gradient_moves_the_student_towards_the_teacher_not_the_labels():
    teacher, targets = _batch(7)
    student = [tf.Variable(t + 0.5) for t in teacher]

    def distance(s):  # boxes: encodings; classes: probabilities
        return (float(tf.reduce_mean(tf.abs(s[0] - teacher[0]))),
                float(tf.reduce_mean(tf.abs(tf.sigmoid(s[1]) - tf.sigmoid(teacher[1])))))

    start = distance(student)
    opt = keras.optimizers.Adam(0.02)
    for _ in range(200):
        with tf.GradientTape() as tape:
            loss = tf.add_n(distillation_loss(tuple(student), teacher, targets, K))
        opt.apply_gradients(zip(tape.gradient(loss, student), student))
    end = distance(student)
    assert end[0] < 0.5 * start[0] and end[1] < 0.5 * start[1], (start, end)
    # the labels' loss is not what it minimised: matching the teacher is not matching the labels
    assert float(tf.add_n(detection_loss(tuple(student), targets, K))) > 0.1

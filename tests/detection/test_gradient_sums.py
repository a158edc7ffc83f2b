"""Gradient sums in a fixed order (edgeship.base.gradient_sums): under the train step's
determinism no AddN adds three or more gradients (its order follows thread timing on the CPU),
the gradients keep their values, and TensorFlow's own summation comes back on exit."""
from __future__ import annotations

import numpy as np
import pytest

from edgeship.base.gradient_sums import ordered_gradient_sums
from edgeship.base.tfcompat import keras, tf
from edgeship.detection.loss import make_step_fns, step_loss
from edgeship.detection.model import ModelConfig, build_detector, make_anchors
from edgeship.detection.train_data import LossConfig
from edgeship.detection.training import op_determinism


def _addn_widths(graph) -> list[int]:
    """Input counts of every AddN in a graph and the functions it calls."""
    widths = [len(op.inputs) for op in graph.get_operations() if op.type == "AddN"]
    for fn in graph._functions.values():  # noqa: SLF001 (nested functions of the trace)
        widths += [len(op.inputs) for op in fn.graph.get_operations() if op.type == "AddN"]
    return widths


def _four_uses():
    x = tf.Variable(np.linspace(-2.0, 2.0, 64, dtype=np.float32))

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(3.0 * x + tf.sin(x) + x * x)  # x reaches y four ways (x * x: two)
        return tape.gradient(y, x)

    return x, grad


def test_four_gradients_are_summed_by_one_reduction_with_the_same_values():
    x, grad = _four_uses()
    plain = grad.get_concrete_function()
    assert max(_addn_widths(plain.graph)) >= 3  # TensorFlow's own: one AddN of all of them
    with ordered_gradient_sums() as active:
        assert active
        _, grad2 = _four_uses()
        fixed = grad2.get_concrete_function()
        assert max(_addn_widths(fixed.graph), default=0) <= 2
        values = [grad2().numpy() for _ in range(5)]
    expected = 3.0 + np.cos(x.numpy().astype(np.float64)) + 2.0 * x.numpy()
    np.testing.assert_allclose(values[0], expected, rtol=1e-6, atol=1e-6)
    assert all(np.array_equal(v, values[0]) for v in values[1:])
    np.testing.assert_allclose(values[0], grad().numpy(), rtol=1e-6, atol=1e-7)


def test_nested_use_restores_tensorflows_summation_only_on_the_last_exit():
    with ordered_gradient_sums():
        with ordered_gradient_sums():
            pass
        _, inner = _four_uses()
        assert max(_addn_widths(inner.get_concrete_function().graph), default=0) <= 2  # still fixed
    _, after = _four_uses()
    assert max(_addn_widths(after.get_concrete_function().graph)) >= 3


def test_an_error_inside_still_restores():
    with pytest.raises(RuntimeError, match="boom"):
        with op_determinism(True):
            raise RuntimeError("boom")
    _, after = _four_uses()
    assert max(_addn_widths(after.get_concrete_function().graph)) >= 3


@pytest.mark.parametrize("head,teacher", [("ssd", False), ("fpn", False), ("ssd", True)],
                         ids=["ssd", "fpn", "ssd-distillation"])
def test_the_train_step_adds_at_most_two_gradients_per_addn_under_determinism(head, teacher):
    """The detector's train step (focal loss: 5 terms reach the logits; smooth-L1: 3; a feature
    map feeding two heads and the next level: 3) has wider AddNs without the fixed order and none
    with it, for both heads and the QAT step's distillation loss."""
    config = ModelConfig(input_size=(96, 96), num_classes=2, labels=["a", "b"], strides=(8, 16, 32),
                         anchor_scales=((0.1,), (0.3,), (0.6,)), fpn_channels=32 if head == "fpn" else 0)
    anchors = make_anchors(config)
    images = tf.TensorSpec([2, 96, 96, 3], tf.float32)
    targets = {"cls": tf.TensorSpec([2, len(anchors)], tf.int32),
               "box": tf.TensorSpec([2, len(anchors), 4], tf.float32),
               "weight": tf.TensorSpec([2, len(anchors)], tf.float32)}

    def widths(deterministic: bool) -> list[int]:
        with op_determinism(deterministic):
            model = build_detector(config)
            loss = step_loss(build_detector(config, name="teacher"), labels_too=True) if teacher else None
            train_step, _ = make_step_fns(model, keras.optimizers.SGD(0.01), 2, LossConfig(), loss=loss)
            return _addn_widths(train_step.get_concrete_function(images, targets).graph)

    assert max(widths(False)) >= 3
    assert max(widths(True), default=0) <= 2

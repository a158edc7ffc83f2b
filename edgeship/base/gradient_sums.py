"""Gradient sums in a fixed order, for training that gives the same weights on every run.

TensorFlow's gradient tape adds up the gradients that reach one tensor from several consumers
with one ``AddN`` op. On the CPU, ``AddN`` accumulates into the first input whose buffer it may
reuse, and moves that input to the front of the sum; which input that is depends on which
tensors the executor has already released, that is on thread timing. With three or more inputs
the order of a floating-point sum then changes from call to call: the focal loss's gradient
w.r.t. the logits (five terms) changed in its last bits on ~10 % of the calls made with the same
weights and batch while another process kept the two CPUs busy, and two raccoon trainings with
the same seed parted after ~100 steps. ``tf.config.experimental.enable_op_determinism`` (TF 2.21)
does not cover it. Sums of two are exact either way (a + b == b + a).

While inside :func:`ordered_gradient_sums`, the tape adds three or more dense gradients as
``reduce_sum(stack(grads), 0)``: one reduction over a fixed axis, in the same order every call.
The gradient tape's aggregation hook is not public API: if this TensorFlow lacks it, the context
warns and changes nothing (``tests/detection/test_gradient_sums.py`` checks the hook works).
"""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

_lock = threading.Lock()
_depth = 0


def ordered_sum(default_aggregate: Any) -> Any:
    """An aggregate function for the tape: three or more dense gradients summed by one
    reduction over their stack; anything else (one, two, IndexedSlices) as TensorFlow does."""
    def aggregate(gradients: list[Any]) -> Any:
        from edgeship.base.tfcompat import tf

        if len(gradients) >= 3 and all(isinstance(g, tf.Tensor) for g in gradients):
            return tf.reduce_sum(tf.stack(gradients), axis=0)
        return default_aggregate(gradients)
    return aggregate


def _tape_hooks() -> tuple[Any, Any] | None:
    """(the tape's default vector space, its register function), or None where missing."""
    try:
        from tensorflow.python import pywrap_tfe
        from tensorflow.python.eager import backprop

        space = backprop._default_vspace
        return (space, pywrap_tfe.TFE_Py_RegisterVSpace) if hasattr(space, "aggregate_fn") else None
    except (ImportError, AttributeError):
        return None


@contextmanager
def ordered_gradient_sums() -> Iterator[bool]:
    """While inside, gradient tapes traced or run sum 3+ gradients in a fixed order (see the
    module docstring). Re-entrant; restores TensorFlow's own summation on the last exit.
    Yields whether the fixed order is in effect."""
    global _depth
    from edgeship.base.tfcompat import tf  # noqa: F401  (registers TensorFlow's own space first)

    hooks = _tape_hooks()
    if hooks is None:
        warnings.warn("this TensorFlow has no gradient-tape aggregation hook: sums of three or more "
                      "gradients keep AddN's timing-dependent order (training may differ run to run)",
                      RuntimeWarning, stacklevel=3)
        yield False
        return
    space, register = hooks
    with _lock:
        if _depth == 0:
            register(space._replace(aggregate_fn=ordered_sum(space.aggregate_fn)))
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                register(space)

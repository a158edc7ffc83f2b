"""Import TensorFlow with Keras 2.

tensorflow-model-optimization needs Keras 2 (the ``tf_keras`` package); TensorFlow 2.21 only
routes ``tf.keras`` there when TF_USE_LEGACY_KERAS=1 is set *before* TensorFlow is imported.
Every edgeship module that needs TensorFlow imports it from here:

    from edgeship.base.tfcompat import tf, keras

Importing this module sets those two environment variables (only if unset) and imports
TensorFlow; that is its whole purpose, so import it lazily, inside the functions that need it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]

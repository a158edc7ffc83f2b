"""TFLiteDetector on a .tflite with the real fused TFLite_Detection_PostProcess op, built with the
quantize step's post-processing module and output map (skipped until that module exists)."""
import numpy as np
import pytest

postprocess = pytest.importorskip("edgeship.detection.postprocess")
op_report = pytest.importorskip("edgeship.detection.op_report")

ANCHORS = np.array([[0.3, 0.3, 0.4, 0.4], [0.7, 0.7, 0.3, 0.3], [0.5, 0.2, 0.2, 0.2]], np.float32)
K = 3


@pytest.fixture(scope="module")
def fused_tflite(tmp_path_factory):
    """A tiny tf_keras 'detector' whose box encodings are 0 (boxes = anchors) and whose logits pick
    one class per anchor, wrapped with the fused post-processing op and converted to fp32 .tflite."""
    from edgeship.base.tfcompat import keras, tf

    anchors = len(ANCHORS)
    bias = np.full((anchors, K + 1), -6.0, np.float32)
    bias[0, 1], bias[1, 3], bias[2, 2] = 3.0, 2.0, 1.0  # anchor → (class id, logit)
    image = keras.Input([32, 32, 3], name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    boxes = keras.layers.Reshape([anchors, 4])(keras.layers.Dense(anchors * 4, kernel_initializer="zeros")(pooled))
    logits = keras.layers.Reshape([anchors, K + 1])(keras.layers.Dense(
        anchors * (K + 1), kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(bias.reshape(-1)))(pooled))
    model = keras.Model(image, [boxes, logits])
    module = postprocess.detection_module(model, ANCHORS, K, (32, 32))
    saved = tmp_path_factory.mktemp("saved")
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.detect.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.allow_custom_ops = True
    path = tmp_path_factory.mktemp("fused") / "fp32.tflite"
    path.write_bytes(converter.convert())
    return path


def test_detector_reads_the_fused_op_through_its_output_map(fused_tflite):
    from edgeship.detection.runners import TFLiteDetector

    mapping = op_report.output_map(op_report._interpreter(fused_tflite))
    det = TFLiteDetector(fused_tflite, num_threads=1, output_map=mapping, num_classes=K)
    out = det(np.zeros((50, 40, 3), np.uint8))
    order = np.argsort(-out.scores)
    np.testing.assert_array_equal(out.labels[order], [1, 3, 2])
    np.testing.assert_allclose(out.scores[order], 1 / (1 + np.exp(-np.array([3.0, 2.0, 1.0]))), atol=1e-5)
    yc, xc, h, w = ANCHORS.T
    expected = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    np.testing.assert_allclose(out.boxes[order], expected, atol=1e-5)

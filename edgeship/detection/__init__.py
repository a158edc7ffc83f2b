"""The detector library: model and anchors, post-processing, conversion, runners (.tflite and Keras), COCO metrics, latency, dataset reading and training loops."""

"""A tiny model where full int8 fails a tight budget and keeping one named layer float fixes it.

``head`` outputs 9 channels: channel 0 is an outlier (weights x1000, range ~±2000) and channels
1..8 are small logits (~±0.1). Per-tensor int8 of ``head``'s output has a step of ~16, so the
logits all round to the zero point and their argmax is lost. Kept float, ``head`` is exact.
The metric is the accuracy of argmax(channels 1..8) against the float model's own argmax.
"""
from __future__ import annotations

import numpy as np

from components.autoquant.search import CandidateSpec, Measurement

N_IN, N_FEAT, N_OUT = 8, 16, 9


def outlier_model(seed: int = 0):
    from edgeship.base.tfcompat import keras

    rng = np.random.default_rng(seed)
    inp = keras.Input((N_IN,), name="x")
    feat = keras.layers.Dense(N_FEAT, activation="relu", name="feat")(inp)
    head = keras.layers.Dense(N_OUT, name="head")(feat)
    model = keras.Model(inp, head)
    w1 = rng.normal(0, 0.5, (N_IN, N_FEAT)).astype(np.float32)
    w2 = rng.normal(0, 0.05, (N_FEAT, N_OUT)).astype(np.float32)
    w2[:, 0] = np.abs(rng.normal(0, 1.0, N_FEAT)) * 1000.0  # the outlier channel
    model.get_layer("feat").set_weights([w1, np.zeros(N_FEAT, np.float32)])
    model.get_layer("head").set_weights([w2, np.zeros(N_OUT, np.float32)])
    return model


def inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, N_IN)).astype(np.float32)


def representative(n: int = 32, seed: int = 1):
    data = inputs(n, seed)

    def gen():
        for row in data:
            yield [row[None]]
    return gen


def accuracy_measure(model, n_val: int = 200, seed: int = 2, latency_runs: int = 5):
    """measure(tflite, spec) → Measurement(accuracy of the small logits' argmax, latency, size)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeship.detection.latency import time_calls

    x = inputs(n_val, seed)
    labels = np.argmax(model.predict(x, verbose=0)[:, 1:], axis=1)

    def measure(blob: bytes, spec: CandidateSpec) -> Measurement:
        interp = Interpreter(model_content=blob, num_threads=1)
        interp.allocate_tensors()
        i, o = interp.get_input_details()[0], interp.get_output_details()[0]
        preds = []
        for row in x:
            feed = row[None]
            if np.dtype(i["dtype"]) != np.float32:
                s, z = i["quantization"]
                feed = np.clip(np.rint(feed / s + z), -128, 127).astype(i["dtype"])
            interp.set_tensor(i["index"], feed)
            interp.invoke()
            out = interp.get_tensor(o["index"]).astype(np.float32)
            if np.dtype(o["dtype"]) != np.float32:
                s, z = o["quantization"]
                out = (out - z) * s
            preds.append(int(np.argmax(out[0, 1:])))
        acc = float(np.mean(np.asarray(preds) == labels))
        lat = time_calls(interp.invoke, runs=latency_runs, warmup=1)
        return Measurement(metric=acc, latency_ms=lat.median, size_bytes=len(blob))
    return measure

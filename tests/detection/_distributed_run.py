"""Body of the distributed-training tests, run in a fresh process (``python -m
tests.detection._distributed_run OUT.json``): logical devices can only be configured before
TensorFlow's runtime starts, which other tests in the session may already have done.

It splits the CPU into two logical devices and trains the tiny detector (64x64, alpha 0.35,
3 classes) from the same initial weights on the same fixed batches (no augmentation):

- ``one_device``: the default strategy with ``loss.make_step_fns`` (today's training);
- ``mirrored``: MirroredStrategy on the two logical devices with
  ``distribute.make_distributed_step_fns``;
- ``*_dup``: both again on batches whose second half repeats the first, where per-replica
  BatchNormalization sees exactly the statistics of the whole batch, so the two must agree to
  rounding;
- ``resume``: mirrored, checkpointed with tf.train.CheckpointManager after K steps, restored
  into a freshly built model and optimizer, continued to 2K, against an uninterrupted 2K run.

``--worker INDEX --ports P0,P1`` runs one of two MultiWorkerMirroredStrategy workers on this
machine (TF_CONFIG on localhost, as Vertex AI sets it on a CustomJob's replicas); the chief also
trains the same steps on one device for reference.

``--measure`` instead times training steps of the real-size detector (160x160, batch 16) on one
device and mirrored over two logical devices.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LR, WARMUP, TOTAL = 0.002, 2, 40  # fit's optimizer, at a learning rate where 8 steps stay smooth
SGD_LR = 0.01


def setup(devices: int) -> None:
    from edgeship.base.tfcompat import keras, tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    keras.utils.set_random_seed(0)


def batches_for(config, count: int, batch: int, seed: int, *, duplicate_halves: bool = False):
    """``count`` fixed (images, targets) batches: random pixels, 1-3 random boxes per image."""
    from edgeship.detection.model import make_anchors
    from edgeship.detection.train_data import TrainData, make_dataset
    from edgeship.detection.training import LossConfig

    rng = np.random.default_rng(seed)
    n, (h, w) = count * batch, config.input_size
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    boxes = np.zeros((n, 3, 4), np.float32)
    labels = np.zeros((n, 3), np.int32)
    for i in range(n):
        for j in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            sh, sw = rng.uniform(0.1, 0.4, 2)
            boxes[i, j] = [cy - sh / 2, cx - sw / 2, cy + sh / 2, cx + sw / 2]
            labels[i, j] = int(rng.integers(1, config.num_classes + 1))
    if duplicate_halves:
        for b in range(count):
            s, half = b * batch, batch // 2
            for arr in (images, boxes, labels):
                arr[s + half:s + batch] = arr[s:s + half]
    ds = make_dataset(TrainData(images, boxes, labels), make_anchors(config), config,
                      batch_size=batch, training=False, loss_config=LossConfig())
    return list(ds)


def optimizer_like_fit(keras, sgd: bool = False):
    """The optimizer `training.fit` builds (AdamW, warm-up + cosine, clipnorm 10), or plain SGD:
    linear in the gradients, so rounding differences stay rounding-sized (Adam's first steps
    turn the sign of near-zero gradient components into full-size updates)."""
    from edgeship.detection.training import lr_schedule

    if sgd:
        return keras.optimizers.SGD(learning_rate=SGD_LR)
    return keras.optimizers.AdamW(learning_rate=lr_schedule(LR, TOTAL, WARMUP), weight_decay=1e-4,
                                  clipnorm=10.0)


def train(dist, config, init, batches, *, steps: range, reference: bool = False, sgd: bool = False,
          ckpt_dir: Path | None = None, save_at: int | None = None, restore: bool = False,
          qat: bool = False, teacher_weights=None):
    """Per-step total losses over ``steps``, the optimizer's iteration count at the end, and
    (not written out) the final trainable weights. ``init``: the float weights, or with ``qat``
    the QAT model's weights; ``teacher_weights``: distil towards a float model with these."""
    from edgeship.base.tfcompat import keras, tf
    from edgeship.detection import distribute
    from edgeship.detection.loss import make_step_fns, step_loss
    from edgeship.detection.model import build_detector
    from edgeship.detection.qat import quantize_detector
    from edgeship.detection.training import LossConfig

    with dist.scope():
        model = build_detector(config)
        if qat:  # as the qat step would: the QAT model built under the strategy's scope
            model = quantize_detector(model)
        model.set_weights(init)
        optimizer = optimizer_like_fit(keras, sgd)
        teacher = None
        if teacher_weights is not None:
            teacher = build_detector(config)
            teacher.set_weights(teacher_weights)
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    if reference:
        step_fn, _ = make_step_fns(model, optimizer, config.num_classes, LossConfig(), loss=step_loss(teacher))
    else:
        step_fn, _ = distribute.make_distributed_step_fns(dist, model, optimizer, config.num_classes,
                                                          LossConfig(), loss=step_loss(teacher))
    start = steps.start
    if restore:
        read_dir, _ = distribute.checkpoint_dirs(ckpt_dir, dist)
        start = distribute.restore_latest(ckpt, read_dir)
    manager = None
    if ckpt_dir is not None and save_at:
        _, write_dir = distribute.checkpoint_dirs(ckpt_dir, dist)
        manager = tf.train.CheckpointManager(ckpt, str(write_dir), max_to_keep=2)
    losses, t0 = [], time.perf_counter()
    for i in range(start, steps.stop):
        c, b = step_fn(*batches[i])
        losses.append(float(c) + float(b))
        if manager is not None and i + 1 == save_at:
            manager.save(checkpoint_number=i + 1)
    return {"losses": losses, "start": start, "iterations": int(optimizer.iterations.numpy()),
            "seconds": time.perf_counter() - t0}, [v.numpy() for v in model.trainable_variables]


def relative_update_difference(init, after_a, after_b) -> float:
    """||Δa − Δb|| / ||Δa|| over all weights (Δ = after − init)."""
    num = sum(float(np.sum(((a - i) - (b - i)) ** 2)) for i, a, b in zip(init, after_a, after_b))
    den = sum(float(np.sum((a - i) ** 2)) for i, a in zip(init, after_a))
    return (num / den) ** 0.5


def trainable_mask(config) -> list[bool]:
    """For each entry of get_weights(): whether it is a trainable variable."""
    from edgeship.detection.model import build_detector

    model = build_detector(config)
    trainable = {id(v) for v in model.trainable_variables}
    return [id(v) in trainable for v in model.weights]


def run_checks(steps: int) -> dict:
    setup(2)
    from edgeship.base.tfcompat import tf
    from edgeship.detection import distribute
    from edgeship.detection.model import ModelConfig, build_detector

    config = ModelConfig(input_size=(64, 64), alpha=0.35, num_classes=3, labels=["a", "b", "c"])
    init = build_detector(config).get_weights()
    one = distribute.Distribution(distribute.plan_devices(["/device:CPU:0"], device_type="CPU"),
                                  tf.distribute.get_strategy())
    mirrored = distribute.choose_strategy(tf_config="")
    out = {"plan": distribute.describe(mirrored), "line": distribute.device_line(mirrored)}
    k = steps
    batches = batches_for(config, 2 * k, 16, seed=1)
    dup = batches_for(config, 2, 16, seed=2, duplicate_halves=True)
    out["one_device"], _ = train(one, config, init, batches, steps=range(0, 2 * k), reference=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoints"
        # mirrored, 2K steps without a break (a checkpoint written after step K on the way)
        out["mirrored"], _ = train(mirrored, config, init, batches, steps=range(0, 2 * k),
                                   ckpt_dir=ckpt, save_at=k)
        fresh = build_detector(config).get_weights()  # not init: the restore must bring the weights
        out["resumed"], _ = train(mirrored, config, fresh, batches, steps=range(0, 2 * k),
                                  ckpt_dir=ckpt, restore=True)
        out["checkpoints"] = sorted(p.name for p in ckpt.iterdir())
    # one SGD step on a batch whose halves are equal: the same loss, the same update
    out["one_device_dup"], w_one = train(one, config, init, dup, steps=range(0, 1), reference=True,
                                         sgd=True)
    out["mirrored_dup"], w_mir = train(mirrored, config, init, dup, steps=range(0, 1), sgd=True)
    start = [w for w, v in zip(init, trainable_mask(config)) if v]
    out["update_relative_difference"] = relative_update_difference(start, w_one, w_mir)
    out["update_relative_difference_if_averaged"] = relative_update_difference(
        start, w_one, [i + (m - i) / 2 for i, m in zip(start, w_mir)])
    # QAT: the fake-quant model built under MirroredStrategy trains like on one device
    from edgeship.detection.qat import quantize_detector

    qinit = quantize_detector(build_detector(config)).get_weights()
    out["qat_one_device"], _ = train(one, config, qinit, dup, steps=range(0, 2), reference=True,
                                     sgd=True, qat=True)
    out["qat_mirrored"], _ = train(mirrored, config, qinit, dup, steps=range(0, 2), sgd=True, qat=True)
    # QAT distilled towards the float model: the teacher runs inside each replica's step
    out["distill_one_device"], _ = train(one, config, qinit, dup, steps=range(0, 2), reference=True,
                                         sgd=True, qat=True, teacher_weights=init)
    out["distill_mirrored"], _ = train(mirrored, config, qinit, dup, steps=range(0, 2), sgd=True, qat=True,
                                       teacher_weights=init)
    out["mixed"] = mixed_precision_path(config, init, dup)
    return out


def mixed_precision_path(config, init, batches) -> dict:
    """The GPU float-training path, forced on CPU (slow there, but the same code): built under
    mixed_float16, loss-scaled, two steps, then exported through a float32 copy."""
    from edgeship.base.tfcompat import keras
    from edgeship.detection import distribute
    from edgeship.detection.model import build_detector
    from edgeship.detection.training import LossConfig

    dist = distribute.one_device()
    dist.precision = distribute.MIXED
    with distribute.precision_scope(dist.precision), dist.scope():
        model = build_detector(config)
    model.set_weights(init)
    optimizer = distribute.wrap_optimizer(optimizer_like_fit(keras), dist.precision)
    step_fn, eval_fn = distribute.make_distributed_step_fns(dist, model, optimizer, config.num_classes,
                                                            LossConfig())
    losses = [sum(float(v) for v in step_fn(*batches[i])) for i in range(2)]
    val = sum(float(v) for v in eval_fn(*batches[0]))
    exported = distribute.float32_copy(model, lambda: build_detector(config))
    return {"losses": losses, "val": val, "compute_dtype": model.layers[3].compute_dtype,
            "output_dtype": str(model.outputs[0].dtype.name),
            "exported_policy": exported.layers[3].dtype_policy.name,
            "exported_output_dtype": str(exported.outputs[0].dtype.name),
            "loss_scale": float(optimizer.loss_scale.numpy()),
            "weights_equal": all(bool((a == b).all()) for a, b in
                                 zip(model.get_weights(), exported.get_weights())),
            "global_policy_after": keras.mixed_precision.global_policy().name}


def measure(steps: int, warmup: int = 3) -> dict:
    setup(2)
    from edgeship.base.tfcompat import keras, tf
    from edgeship.detection import distribute
    from edgeship.detection.loss import make_step_fns
    from edgeship.detection.model import ModelConfig, build_detector
    from edgeship.detection.training import LossConfig

    config = ModelConfig()  # the pipeline's detector: 160x160, alpha 0.35, 5 classes
    init = build_detector(config).get_weights()
    batches = batches_for(config, warmup + steps, 16, seed=3)
    one = distribute.Distribution(distribute.plan_devices(["/device:CPU:0"], device_type="CPU"),
                                  tf.distribute.get_strategy())
    mirrored = distribute.choose_strategy(tf_config="")
    out = {}
    for name, dist in (("one_device", one), ("mirrored_2_logical", mirrored)):
        with dist.scope():
            model = build_detector(config)
            model.set_weights(init)
            optimizer = optimizer_like_fit(keras)
        if name == "one_device":
            step_fn, _ = make_step_fns(model, optimizer, config.num_classes, LossConfig())
        else:
            step_fn, _ = distribute.make_distributed_step_fns(dist, model, optimizer, config.num_classes,
                                                              LossConfig())
        times = []
        for i, (images, targets) in enumerate(batches):
            t0 = time.perf_counter()
            c, b = step_fn(images, targets)
            float(c) + float(b)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[name] = {"median_ms": 1000 * statistics.median(times), "steps": len(times),
                     "min_ms": 1000 * min(times), "max_ms": 1000 * max(times), "global_batch": 16}
    out["ratio_mirrored_over_one"] = out["mirrored_2_logical"]["median_ms"] / out["one_device"]["median_ms"]
    return out


def run_worker(index: int, ports: list[int], steps: int, ckpt: str) -> dict:
    """One replica of a two-worker MultiWorkerMirroredStrategy cluster on localhost."""
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"chief": [f"localhost:{ports[0]}"], "worker": [f"localhost:{ports[1]}"]},
        "task": {"type": "chief" if index == 0 else "worker", "index": 0}})
    from edgeship.base.tfcompat import keras
    from edgeship.detection import distribute
    from edgeship.detection.model import ModelConfig, build_detector

    dist = distribute.choose_strategy()  # before anything else starts TensorFlow's runtime
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=(64, 64), alpha=0.35, num_classes=3, labels=["a", "b", "c"])
    init = build_detector(config).get_weights()
    batches = batches_for(config, steps, 16, seed=1)
    out = {"plan": distribute.describe(dist), "line": distribute.device_line(dist),
           "write_dir": str(distribute.checkpoint_dirs(ckpt, dist)[1])}
    out["multi_worker"], _ = train(dist, config, init, batches, steps=range(0, steps),
                                   ckpt_dir=Path(ckpt), save_at=steps)
    if dist.is_chief:
        out["one_device"], _ = train(distribute.one_device(), config, init, batches,
                                     steps=range(0, steps), reference=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--worker", type=int, default=None)
    parser.add_argument("--ports", default="")
    parser.add_argument("--checkpoints", default="")
    args = parser.parse_args()
    if args.worker is not None:
        result = run_worker(args.worker, [int(p) for p in args.ports.split(",")], args.steps,
                            args.checkpoints)
    else:
        result = measure(args.steps) if args.measure else run_checks(args.steps)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

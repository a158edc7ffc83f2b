"""Benchmark (not a test): the detector's training step on this machine's CPU, per image, under the
settings that could make it faster: XLA (``jit_compile``), bfloat16 mixed precision (oneDNN uses
AVX-512 BF16 where the CPU has it), the batch size, and TensorFlow's deterministic ops.

Each configuration runs in its own process (a precision policy and determinism are process-wide),
on the same random batch (pixels 0..255, targets for every anchor), after warm-up steps; the
table gives the median and best ms per image and the ratio to the first row, measured in this run.

    python -m benchmarks.train_step                      # 0.35 @ 160, the main job's model
    python -m benchmarks.train_step --alpha 1.0 --size 320 --steps 5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CONFIGS = (  # (name, jit, bf16, batch, deterministic)
    ("float32, batch 16 (the main job)", False, False, 16, True),
    ("float32, batch 16, non-deterministic", False, False, 16, False),
    ("float32, batch 32", False, False, 32, True),
    ("bfloat16 mixed precision, batch 16", False, True, 16, True),
    ("XLA jit_compile, batch 16", True, False, 16, False),
)


def measure(jit: bool, bf16: bool, batch: int, deterministic: bool, alpha: float, size: int, steps: int) -> dict:
    """ms per image of ``steps`` training steps (after 3 warm-up steps), in this process;
    ``deterministic`` as the train step has it (edgeship.detection.training.op_determinism:
    TF's deterministic ops and gradient sums in a fixed order)."""
    from edgeship.detection.training import op_determinism

    with op_determinism(deterministic):
        return _measure(jit, bf16, batch, alpha, size, steps)


def _measure(jit: bool, bf16: bool, batch: int, alpha: float, size: int, steps: int) -> dict:
    import numpy as np

    from edgeship.base.tfcompat import keras, tf
    from edgeship.detection.loss import detection_loss
    from edgeship.detection.model import ModelConfig, build_detector, make_anchors
    from edgeship.detection.train_data import LossConfig

    if bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cfg = ModelConfig(input_size=(size, size), alpha=alpha, num_classes=5, labels=[f"c{i}" for i in range(5)])
    model, anchors = build_detector(cfg), make_anchors(cfg)
    optimizer, loss_config = keras.optimizers.AdamW(1e-3), LossConfig()

    @tf.function(jit_compile=jit or None)
    def step(images, targets):
        with tf.GradientTape() as tape:
            out = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), model(images, training=True))
            cls_loss, box_loss = detection_loss(out, targets, cfg.num_classes, loss_config)
            total = cls_loss + box_loss
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return cls_loss

    rng = np.random.default_rng(0)
    a = len(anchors)
    images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    targets = {"cls": tf.constant(rng.integers(0, cfg.num_classes + 1, (batch, a)).astype(np.int32)),
               "weight": tf.ones((batch, a)), "box": tf.constant(rng.normal(size=(batch, a, 4)).astype(np.float32))}
    for _ in range(3):
        float(step(images, targets))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        float(step(images, targets))
        times.append((time.perf_counter() - t0) * 1000 / batch)
    return {"median_ms": float(np.median(times)), "best_ms": float(min(times))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alpha", type=float, default=0.35)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--steps", type=int, default=12, help="timed steps per configuration and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every configuration, in turns")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args(argv)
    if args.one:
        jit, bf16, batch, det = json.loads(args.one)
        print(json.dumps(measure(jit, bf16, batch, det, args.alpha, args.size, args.steps)))
        return 0
    runs: dict[str, list[dict]] = {name: [] for name, *_ in CONFIGS}
    for round_ in range(args.rounds):  # configurations in turns: a busy machine slows them alike
        for name, jit, bf16, batch, det in CONFIGS:
            print(f"round {round_ + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "benchmarks.train_step", "--alpha", str(args.alpha), "--size",
                   str(args.size), "--steps", str(args.steps), "--one", json.dumps([jit, bf16, batch, det])]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = [(name, {"median_ms": sorted(r["median_ms"] for r in rs)[len(rs) // 2],
                    "best_ms": min(r["best_ms"] for r in rs)}) for name, rs in runs.items()]
    base = rows[0][1]["median_ms"]
    print(f"\nTraining step, MobileNetV2 {args.alpha} @ {args.size}: {args.rounds} rounds of {args.steps} "
          f"timed steps per configuration (median over rounds of each round's median)\n")
    print("| configuration | ms / image (median) | best | img/s | ÷ first row |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['median_ms']:.2f} | {r['best_ms']:.2f} | {1000 / r['median_ms']:.0f} | "
              f"{r['median_ms'] / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

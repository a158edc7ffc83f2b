"""Delivery latency on the local stack: from "manifest uploaded" to "client holds the verified model".

    .venv/bin/python benchmarks/delivery_latency.py [--n 50] [--model-kb 600]

Starts its own local stack (fake-gcs-server behind the relay, the Firestore emulator, the
register_model function under functions-framework) on free ports in a temp dir, starts a
ModelClient on the channel, then publishes N versions one after another. For each version:

  t0  publish() returned, i.e. the manifest upload (the commit point, written last) completed;
  t1  the client's Firestore listener first reported the new release record;
  t2  the client swapped in the model: downloaded, size + sha256 verified, LiteRT smoke check.

Prints p50 / p90 / p99 / max of t2 - t0 (the goal: p99 <= 1 s), and the split t1 - t0 (relay +
function + Firestore + listener) and t2 - t1 (download + verify + LiteRT). The model is a real
.tflite with a ~model-kb constant so download and hashing cost what a small detector costs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_model(path: Path, kb: int) -> Path:
    """A real .tflite whose weights are ~kb KiB (input [1, 8, 8, 3] float32)."""
    import numpy as np

    from edgeship.base.tfcompat import tf

    cols = max(1, kb * 1024 // (192 * 4))
    weights = tf.constant(np.random.default_rng(0).standard_normal((192, cols)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        y = tf.matmul(tf.reshape(x, [1, 192]), weights)
        return {"scores": tf.reduce_max(y, axis=1, keepdims=True)}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path.write_bytes(conv.convert())
    return path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="sequential publishes (default 50)")
    parser.add_argument("--model-kb", type=int, default=600, help="model size in KiB (default 600)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-version wait, seconds")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from edgeship.localcloud import stack as local_stack

    sys.path.insert(0, str(ROOT / "tests" / "functions"))
    import delivery_support  # the variants-artifact helper shared with the tests

    console = Console()
    work = Path(tempfile.mkdtemp(prefix="edgeship-bench-"))
    console.print(f"building a {args.model_kb} KiB .tflite …")
    model = build_model(work / "bench.tflite", args.model_kb)
    vdir = delivery_support.make_variants_dir(work / "art", model)
    edir = vdir.parent / "evaluation"
    config = local_stack.StackConfig(
        gcs_port=local_stack.free_port(), firestore_port=local_stack.free_port(),
        function_port=local_stack.free_port(), state_dir=work / "stack")
    console.print("starting the local stack …")
    local_stack.up(config)
    os.environ.update(config.env())
    from components.publish import core
    from edgeship.delivery.client import ModelClient

    client = ModelClient("bench", "stable", work / "phone").start()
    total, notify, install, failures = [], [], [], 0
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("publish → client holds the verified model", total=args.n)
            for _ in range(args.n):
                result = core.publish(vdir, "fp32", bucket=config.buckets[0], model="bench",
                                      channel="stable", report_dir=edir, parent_version=None)
                t0 = time.time()
                held = client.wait_for(result.version, args.timeout)
                if held is None:
                    failures += 1
                    console.print(f"[red]{result.version} not held within {args.timeout} s: {client.last_error}")
                else:
                    t2 = next(h["t"] for h in reversed(client.history)
                              if h["event"] == "swapped" and h["version"] == result.version)
                    t1 = client.seen_at.get(result.version, t2)
                    total.append(t2 - t0)
                    notify.append(t1 - t0)
                    install.append(t2 - t1)
                progress.advance(task)
    finally:
        client.stop()
        local_stack.down(config)

    if not total:
        console.print("[red]no version was delivered")
        return 1
    table = Table(title=f"delivery latency, {len(total)} sequential publishes, "
                        f"{model.stat().st_size / 1024:.0f} KiB model (ms)")
    for col in ("stage", "p50", "p90", "p99", "max", "mean"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, values in (("manifest uploaded → client holds verified model", total),
                         ("  manifest uploaded → listener notified", notify),
                         ("  notified → downloaded, verified, LiteRT-checked, swapped", install)):
        table.add_row(name, *(f"{1000 * v:.0f}" for v in (
            percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values),
            statistics.fmean(values))))
    console.print(table)
    p99 = percentile(total, 99)
    verdict = "[green]meets" if p99 <= 1.0 else "[red]misses"
    console.print(f"p50 {1000 * percentile(total, 50):.0f} ms, p99 {1000 * p99:.0f} ms: {verdict} the "
                  f"p99 <= 1 s goal[/]; {failures} not delivered")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

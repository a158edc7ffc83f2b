"""Benchmark (figures, not a test): the data path at growing dataset sizes, streaming.

For each size (total images; 75 % train, 15 % val, 10 % calibration, as the embedded default):

1. generate the shapes dataset (a subprocess, reused when already in --work), keep only its COCO
   part (annotations + JPEGs: what a user's COCO export looks like);
2. import it in a fresh subprocess (``import_dataset``: the artifact with TFRecord shards);
3. train in another fresh subprocess: one full epoch of the train split through the training
   input pipeline alone (read, decode, resize, augmentation, anchor matching, batching; no model),
   then training steps of the 0.35 @ 160 detector fed by the same stream, alternating with steps
   on one cached batch (the model's own step rate): ``--rounds`` rounds of ``--steps``, medians.

Peak RSS is each subprocess's ``ru_maxrss``. Prints a table; writes docs/results/data_scale.md
and data_scale.png.

    .venv/bin/python -m benchmarks.data_scale                      # 2,000 and 20,000 images
    .venv/bin/python -m benchmarks.data_scale --sizes 2000,20000,50000 --work /tmp/data_scale
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from edgeship.detection import loss

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _split_sizes(total: int) -> dict[str, int]:
    val, cal = round(total * 0.15), round(total * 0.10)
    return {"train": total - val - cal, "val": val, "calibration": cal}


def _generate(total: int, work: Path, workers: int) -> float:
    """The COCO part of a generated dataset in ``work/src_{total}``; seconds it took (remembered
    in ``work/src_{total}.seconds`` when the source is reused)."""
    src, seconds = work / f"src_{total}", work / f"src_{total}.seconds"
    if (src / "coco" / "annotations" / "train.json").is_file() and seconds.is_file():
        return float(seconds.read_text())
    from components.data.core import generate_dataset

    t0 = time.perf_counter()
    generate_dataset(src, seed=0, workers=workers, **_split_sizes(total))
    for name in ("dataset.json", "labels.txt"):
        (src / name).unlink()
    shutil.rmtree(src / "tfrecord")
    took = time.perf_counter() - t0
    seconds.write_text(f"{took:.1f}\n")
    return took


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import(total: int, work: Path) -> dict:
    from edgeship.detection.sources.importer import ImportOptions, import_dataset

    out = work / f"artifact_{total}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    info = import_dataset(str(work / f"src_{total}"), str(out), ImportOptions(seed=0, input_size=160))
    return {"import_s": time.perf_counter() - t0, "rss_import_mb": _peak_mb(),
            "train_images": info.images("train"), "shards": len(info.shards("train"))}


def _train(total: int, work: Path, steps: int, rounds: int, batch: int) -> dict:
    """Input-pipeline epoch, then stream-fed and cached-batch training steps."""
    import numpy as np

    from edgeship.base.tfcompat import keras, tf
    from edgeship.contracts.dataset import read_dataset_info
    from edgeship.detection import stream, train_data, training
    from edgeship.detection.model import ModelConfig, build_detector, make_anchors

    uri = str(work / f"artifact_{total}")
    info = read_dataset_info(uri)
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(input_size=(160, 160), alpha=0.35, num_classes=info.num_classes, labels=info.class_names)
    anchors, src = make_anchors(cfg), stream.open_split(uri, "train")
    it = iter(stream.training_dataset(src, anchors, cfg, batch_size=batch, training=True, seed=0))
    next(it)
    t0, n = time.perf_counter(), 0
    for _ in it:
        n += 1
    res = {"input_img_s": n * batch / (time.perf_counter() - t0), "input_epoch_s": time.perf_counter() - t0}
    model = build_detector(cfg)
    step, _ = loss.make_step_fns(model, keras.optimizers.AdamW(1e-3), cfg.num_classes,
                                     train_data.LossConfig())
    stream_it = iter(stream.training_dataset(src, anchors, cfg, batch_size=batch, training=True,
                                             seed=0, repeat=True))
    cached = next(stream_it)
    streamed, alone = [], []   # alternating rounds: a change in the machine's load hits both
    for _ in range(rounds):
        streamed.append(_steps(step, lambda: next(stream_it), steps, batch))
        alone.append(_steps(step, lambda: cached, steps, batch))
    res.update(step_img_s=float(np.median(streamed)), model_img_s=float(np.median(alone)),
               rss_train_mb=_peak_mb(), load_avg=os.getloadavg()[0], tf=tf.__version__)
    return res


def _steps(step, batch_fn, steps: int, batch: int) -> float:
    """img/s of ``steps`` training steps (after 3 warm-up steps)."""
    for _ in range(3):
        c, _ = step(*batch_fn())
    float(c)
    t0 = time.perf_counter()
    for _ in range(steps):
        c, _ = step(*batch_fn())
    float(c)
    return steps * batch / (time.perf_counter() - t0)


def _table(rows: list[dict], steps: int, batch: int) -> str:
    head = ("| images | train images (shards) | generate s | import s | peak RSS MB, import "
            "| peak RSS MB, epoch + steps | input pipeline img/s (full epoch, no model) "
            "| training img/s (stream + model) | model step img/s (cached batch) | load avg |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['images']:,} | {r['train_images']:,} ({r['shards']}) | {r['generate_s']:.0f} "
                     f"| {r['import_s']:.0f} | {r['rss_import_mb']:.0f} | {r['rss_train_mb']:.0f} "
                     f"| {r['input_img_s']:.0f} | {r['step_img_s']:.0f} | {r['model_img_s']:.0f} "
                     f"| {r['load_avg']:.1f} |")
    base = rows[0]

    def growth(key: str) -> str:
        return ", ".join(f"{r['images']:,}: {100 * (r[key] / base[key] - 1):+.1f} %" for r in rows[1:])

    text = "\n".join(lines)
    if len(rows) > 1:
        text += (f"\n\nPeak RSS vs {base['images']:,} images, training process: {growth('rss_train_mb')}; "
                 f"import process: {growth('rss_import_mb')}.")
    text += ("\n\nThe in-memory path (load_training_data) held the decoded split twice (Examples at "
             "source size + uint8 arrays at the input): at least " + ", ".join(
                 f"{r['train_images'] * 160 * 160 * 3 * 2 / 2**20:,.0f} MB for {r['images']:,}" for r in rows)
             + " images, before TensorFlow copied the arrays into from_tensor_slices.")
    text += (f"\n\nModel: SSD MobileNetV2 alpha 0.35 @ 160, batch {batch}, {steps} timed steps each way "
             f"(median of alternating rounds, 3 warm-up steps per round); TF {base['tf']}, "
             f"{os.cpu_count()} CPUs shared with other work (load average in the table).")
    return text


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["images"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(xs, [r["rss_train_mb"] for r in rows], "o-", label="training process (epoch + steps)")
    a.plot(xs, [r["rss_import_mb"] for r in rows], "s--", label="import process")
    a.set(xscale="log", xlabel="dataset images", ylabel="peak RSS (MB)", title="memory", ylim=(0, None))
    a.legend(fontsize=8)
    for key, label in (("input_img_s", "input pipeline alone"), ("step_img_s", "training (stream + model)"),
                       ("model_img_s", "model step (cached batch)")):
        b.plot(xs, [r[key] for r in rows], "o-", label=label)
    b.set(xscale="log", yscale="log", xlabel="dataset images", ylabel="images / s", title="throughput")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _child(args: argparse.Namespace, phase: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.data_scale", "--phase", phase, "--size", str(args.size),
           "--work", args.work, "--steps", str(args.steps), "--rounds", str(args.rounds),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode:
        raise RuntimeError(f"{phase} for {args.size} images failed:\n{run.stderr[-4000:]}")
    return json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT"))[7:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,20000")
    p.add_argument("--work", default=str(ROOT / "runs" / "data_scale"))
    p.add_argument("--steps", type=int, default=25, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=4, help="rounds of stream-fed and cached-batch steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="generator processes")
    p.add_argument("--out", default=str(RESULTS / "data_scale"))
    p.add_argument("--phase", choices=("generate", "import", "train"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    if args.phase:
        result = {"generate": lambda: {"generate_s": _generate(args.size, work, args.workers)},
                  "import": lambda: _import(args.size, work),
                  "train": lambda: _train(args.size, work, args.steps, args.rounds, args.batch_size)}
        print("RESULT " + json.dumps(result[args.phase]()), flush=True)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        args.size = size
        row = {"images": size}
        for phase in ("generate", "import", "train"):
            row.update(_child(args, phase))
        rows.append(row)
        print(json.dumps(row), flush=True)
    text = _table(rows, args.steps * args.rounds, args.batch_size)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("# Data at scale (benchmarks/data_scale.py)\n\n" + text + "\n")
    _plot(rows, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): which epoch should the float training keep? (the train step's
``early_stop``: val_loss, val_map or none; edgeship.detection.early_stop).

For each seed the main job's train step runs its whole schedule on a Dataset artifact (the
pipeline's settings: 40 epochs raised to ``min_steps`` optimizer steps, its learning rate), with
the Keras model's mAP measured after every epoch on the val split (which decides) and on the
calibration split (held out: it only judges). Each rule is then replayed on the recorded
figures with the pipeline's stretched patience: the epoch it would stop at, the epoch it would
keep, and that epoch's held-out mAP. The val figures of the kept epoch are biased upwards for
val_map (it picked the maximum of them); the held-out ones are not.

    python -m benchmarks.early_stop --data RUN_ROOT/.../data/dataset --seeds 0 1 2 --out /tmp/es
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

RULES = ("val_loss", "val_map", "none")


def train_recording(data: str, out: Path, seed: int, epochs: int, min_steps: int) -> dict[str, Any]:
    """Train one seed for the whole schedule (no early stop), recording the held-out mAP of
    every epoch next to the val figures the training records itself."""
    import components.train.core as train_core
    from components.train.settings import PIPELINE_TRAIN
    from edgeship.contracts.dataset import read_dataset_info
    from edgeship.detection import stream
    from edgeship.detection.training import evaluate_map

    info = read_dataset_info(data)
    held = stream.open_split(data, "calibration", num_classes=info.num_classes,
                             policy=info.resize.get("policy", "stretch"))
    held_out: list[dict[str, float]] = []
    val_map = train_core._val_map  # instrumented: the same call, plus the held-out split

    def recording(model: Any, *, val_src: Any, size: tuple, config: Any, anchors: Any) -> float:
        held_out.append(evaluate_map(model, stream.eval_dataset(held, size), config, anchors))
        return val_map(model, val_src=val_src, size=size, config=config, anchors=anchors)

    train_core._val_map = recording
    try:
        r = train_core.train(data, out / f"seed{seed}", epochs=epochs,
                             learning_rate=PIPELINE_TRAIN.learning_rate, min_steps=min_steps,
                             patience=10**6, early_stop="val_map", seed=seed, saved_model=False,
                             progress=False)
    finally:
        train_core._val_map = val_map
    h = r.history
    stretch = h["schedule"]["epochs"] / h["schedule"]["epochs_requested"]  # the pipeline's patience, stretched
    patience = max(PIPELINE_TRAIN.patience, math.ceil(PIPELINE_TRAIN.patience * stretch))
    return {"seed": seed, "patience": patience, "val_loss": h["val_loss"], "val_map": h["val_maps"],
            "held_map": [m["map"] for m in held_out], "held_map50": [m["map50"] for m in held_out],
            "train_seconds": r.train_seconds, "val_images": h.get("val_images")}


def replay(run: dict[str, Any], rule: str) -> dict[str, Any]:
    """The epoch ``rule`` would stop at and the one it would keep, on the recorded figures."""
    from edgeship.detection.early_stop import EarlyStop

    class Epoch:  # the weights stand-in: which epoch set them
        n = 0

        def get_weights(self) -> list:
            return [self.n]

    maps = iter(run["val_map"])
    stop, model = EarlyStop(rule, run["patience"], val_map=lambda _m: next(maps)), Epoch()
    stopped_at = len(run["val_loss"])
    for epoch, loss in enumerate(run["val_loss"], start=1):
        model.n = epoch
        if stop.epoch_end(model, epoch, loss):
            stopped_at = epoch
            break
    k = stop.best_epoch - 1
    return {"rule": rule, "seed": run["seed"], "stopped_at": stopped_at, "kept": stop.best_epoch,
            "val_map": run["val_map"][k], "held_map": run["held_map"][k], "held_map50": run["held_map50"][k]}


def table(rows: list[dict[str, Any]], epochs: int) -> str:
    """Markdown: one row per rule and seed, then the mean over seeds."""
    lines = ["| rule | seed | stops at | keeps | val mAP (kept) | held-out mAP | held-out mAP@.5 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['seed']} | {r['stopped_at']}/{epochs} | {r['kept']} | "
                     f"{r['val_map']:.3f} | {r['held_map']:.3f} | {r['held_map50']:.3f} |")
    for rule in RULES:
        sel = [r for r in rows if r["rule"] == rule]
        mean = {k: sum(r[k] for r in sel) / len(sel) for k in ("stopped_at", "val_map", "held_map", "held_map50")}
        lines.append(f"| **{rule}, mean** | {len(sel)} seeds | {mean['stopped_at']:.0f} | | {mean['val_map']:.3f} | "
                     f"**{mean['held_map']:.3f}** | {mean['held_map50']:.3f} |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> None:
    """Val and held-out mAP per epoch for each seed, with each rule's kept epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    marks = {"val_loss": "v", "val_map": "^", "none": "s"}
    for ax, run in zip(axes[0], runs):
        x = range(1, len(run["val_map"]) + 1)
        ax.plot(x, run["val_map"], lw=0.8, label="val mAP (decides)")
        ax.plot(x, run["held_map"], lw=0.8, label="held-out mAP (judges)")
        for r in (r for r in rows if r["seed"] == run["seed"]):
            ax.plot(r["kept"], r["held_map"], marks[r["rule"]], ms=8, label=f"{r['rule']} keeps {r['kept']}")
        ax.set(title=f"seed {run['seed']}", xlabel="epoch", ylabel="mAP@[.5:.95]")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a Dataset artifact (the data step's output) with a calibration split")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("early_stop_bench"))
    p.add_argument("--epochs", type=int, help="default: the pipeline's")
    p.add_argument("--min-steps", type=int, help="default: the pipeline's")
    p.add_argument("--replay", type=Path, help="a runs.json of an earlier run: table and plot only")
    args = p.parse_args(argv)
    from components.train.settings import PIPELINE_TRAIN

    epochs = args.epochs or PIPELINE_TRAIN.epochs
    min_steps = PIPELINE_TRAIN.min_steps if args.min_steps is None else args.min_steps
    args.out.mkdir(parents=True, exist_ok=True)
    runs = json.loads(args.replay.read_text()) if args.replay else []
    for seed in [] if args.replay else args.seeds:
        runs.append(train_recording(args.data, args.out, seed, epochs, min_steps))
        (args.out / "runs.json").write_text(json.dumps(runs, indent=1))
        print(f"seed {seed}: {len(runs[-1]['val_loss'])} epochs in {runs[-1]['train_seconds']:.0f} s", flush=True)
    rows = [replay(run, rule) for rule in RULES for run in runs]
    text = table(rows, len(runs[0]["val_loss"]))
    (args.out / "early_stop.md").write_text(text + "\n")
    plot(runs, rows, args.out / "early_stop.png")
    print(text)
    print(f"figures: {args.out / 'early_stop.md'}, {args.out / 'early_stop.png'}, {args.out / 'runs.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

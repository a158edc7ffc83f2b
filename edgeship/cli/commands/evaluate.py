"""`edgeship evaluate`: score every variant (and the float model) on the val split."""
from __future__ import annotations

import argparse

from components.evaluate.settings import EVALUATE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="COCO mAP, size, latency, robustness and calibration of every variant",
        description="Run every .tflite variant in LiteRT (and the float Keras model) on the val "
                    "split; write report.json, report.md, report.html and tradeoff.png.")
    p.add_argument("--variants", required=True, help="the quantize step's output directory (variants.json)")
    p.add_argument("--data", required=True, help="dataset directory or gs:// prefix")
    p.add_argument("--float-model", help="the train step's model directory (adds the Keras float row)")
    p.add_argument("--out", required=True, help="output directory for the reports")
    p.add_argument("--split", default=EVALUATE.split, help="split to evaluate")
    p.add_argument("--latency-runs", type=int, default=EVALUATE.latency_runs, help="timed runs per thread setting")
    p.add_argument("--latency-warmup", type=int, default=EVALUATE.latency_warmup, help="untimed warm-up runs")
    p.add_argument("--threads", type=int, help="thread count for the N-thread figure (default: all cores)")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--only", action="append", metavar="VARIANT", help="evaluate only this variant (repeatable)")
    p.add_argument("--slices", default="dark,bright,blurred,occluded",
                   help="comma-separated robustness slices ('' = none)")
    p.add_argument("--accuracy-budget", default="",
                   help="the gate's ΔmAP budget in points: when no int8 variant is provably within it, "
                        "the per-layer diagnosis runs and selective-int8 candidates are measured too")
    p.add_argument("--views", type=int, default=EVALUATE.views,
                   help="views per val photo for the gate's ΔmAP (photo, mirror, centre crop, both; "
                        "resampled by photo): -1 = auto, up to 4 until 200 images are scored; 1 = photos only")
    p.add_argument("--no-diagnose", dest="diagnose", action="store_false", default=EVALUATE.diagnose,
                   help="skip the per-layer diagnosis even when int8 misses the budget")
    p.add_argument("--champion-of", metavar="BUCKET/MODEL/CHANNEL",
                   help="re-score the model this channel serves now on the same images (same labels "
                        "only) and give every variant a paired ΔmAP against it; e.g. edgeship/raccoon/stable")
    p.set_defaults(func=_evaluate)


def _champion_of(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    parts = value.removeprefix("gs://").split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--champion-of must be BUCKET/MODEL/CHANNEL, got {value!r}")
    return dict(zip(("bucket", "model_name", "channel"), parts))


def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from components.evaluate import core
    from components.evaluate.report import COLUMNS, table_rows

    if args.latency_runs < 1:
        raise ValueError(f"--latency-runs must be >= 1, got {args.latency_runs}")
    slices = [s.strip() for s in args.slices.split(",") if s.strip()]
    report = core.evaluate(args.variants, args.data, args.out, float_model_dir=args.float_model,
                           split=args.split, latency_runs=args.latency_runs,
                           latency_warmup=args.latency_warmup, threads=args.threads, slices=slices,
                           max_images=args.max_images, variants=args.only,
                           accuracy_budget=args.accuracy_budget, diagnose=args.diagnose,
                           views=args.views, **_champion_of(args.champion_of))
    from rich.table import Table

    table = Table(title=f"{report.split} split: {report.images} images, {report.objects} objects")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in table_rows(report.to_dict()):
        table.add_row(*row)
    console = Console(width=max(Console().width, 150))
    console.print(table)
    for name, path in report.files.items():
        console.print(f"{name}: {path}")
    return 0

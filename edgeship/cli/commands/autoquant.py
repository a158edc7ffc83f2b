"""`edgeship autoquant`: the fastest .tflite whose mAP loss vs float fits a budget."""
from __future__ import annotations

import argparse

from components.autoquant.settings import AUTOQUANT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "autoquant", help="search QAT/full/selective int8, 16x8, float16, fp32 for the fastest within a mAP budget",
        description="Convert and measure candidates in order of expected speed (QAT int8, full int8, "
                    "selective int8 with the worst layers kept float, 16x8, float16, fp32) and stop at the "
                    "first whose ΔmAP@[.5:.95] vs fp32 is within --budget (and latency/size limits). Writes "
                    "the chosen .tflite + variants.json, the trade-off curve (json/md/png) and the per-layer "
                    "quantization error report.")
    p.add_argument("--model", required=True, help="float Model artifact dir (train step)")
    p.add_argument("--qat-model", help="QAT Model artifact dir (qat step); omit to skip qat_int8")
    p.add_argument("--data", required=True, help="dataset dir or gs:// prefix (calibration + val splits)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--budget", type=float, required=True, help="max ΔmAP@[.5:.95] vs fp32, in points (e.g. 1.0)")
    p.add_argument("--max-latency-ms", type=float, help="also require 1-thread median latency <= this")
    p.add_argument("--max-size-bytes", type=int, help="also require file size <= this")
    p.add_argument("--max-candidates", type=int, default=AUTOQUANT.max_candidates, help="candidates after the fp32 reference")
    p.add_argument("--max-seconds", type=float, help="time limit; on hit the best so far is returned, marked partial")
    p.add_argument("--step", type=int, default=AUTOQUANT.step, help="layers kept float added per selective round")
    p.add_argument("--max-float-layers", type=int, default=AUTOQUANT.max_float_layers, help="most layers kept float")
    p.add_argument("--calibration-images", type=int, default=AUTOQUANT.calibration_images, help="calibration images")
    p.add_argument("--max-images", type=int, help="measure mAP on the first N val images only")
    p.add_argument("--latency-runs", type=int, default=AUTOQUANT.latency_runs, help="timed runs per candidate")
    p.add_argument("--seed", type=int, default=AUTOQUANT.seed, help="seed for the calibration sample")
    p.set_defaults(func=_autoquant)


def _autoquant(args: argparse.Namespace) -> int:
    from components.autoquant.search import validate_budget

    validate_budget(args.budget, args.max_latency_ms, args.max_size_bytes)  # before any heavy import
    from rich.console import Console
    from rich.table import Table

    from components.autoquant import core

    result = core.autoquant(args.model, args.qat_model, args.data, args.out, budget_pt=args.budget,
                            max_latency_ms=args.max_latency_ms, max_size_bytes=args.max_size_bytes,
                            max_candidates=args.max_candidates, max_seconds=args.max_seconds,
                            seed=args.seed, step=args.step, max_float_layers=args.max_float_layers,
                            num_calibration=args.calibration_images, max_val_images=args.max_images,
                            latency_runs=args.latency_runs)
    table = Table(title=f"autoquant: budget {args.budget:.2f} pt")
    for col in ("variant", "float layers", "size (B)", "latency (ms)", "mAP", "ΔmAP (pt)", "fits"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for c in result.candidates:
        mark = " ←" if result.chosen is not None and c.name == result.chosen.name else ""
        table.add_row(c.name + mark, str(len(c.float_layers)), str(c.size_bytes or "n/a"),
                      "n/a" if c.latency_ms is None else f"{c.latency_ms:.2f}",
                      "n/a" if c.metric is None else f"{c.metric:.4f}",
                      "n/a" if c.delta_pt is None else f"{c.delta_pt:.2f}",
                      "yes" if c.fits else (c.error or "; ".join(c.misses))[:60])
    console = Console(width=140)  # long layer names: do not squeeze the table into 80 columns
    console.print(table)
    print(result.message)
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
    return 0 if result.met_budget else 1

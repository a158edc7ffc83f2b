"""`edgeship quantize`: every TFLite scheme (post-processing inside), op reports and Core ML."""
from __future__ import annotations

import argparse

from components.quantize.settings import QUANTIZE

ALL_SCHEMES = QUANTIZE.schemes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="convert the detector to every TFLite scheme and Core ML",
        description="Convert the float (and QAT) model to fp32, dynamic_int8, float16, full_int8, "
                    "int16x8 and qat_int8 .tflite files with TFLite_Detection_PostProcess inside; "
                    "write op reports, parity checks, variants.json and Core ML packages.")
    p.add_argument("--model", required=True, help="the train step's model directory")
    p.add_argument("--qat-model", help="the qat step's model directory (adds qat_int8)")
    p.add_argument("--data", help="dataset directory or gs:// prefix (its calibration split; "
                                  "needed by full_int8 and int16x8)")
    p.add_argument("--out", required=True, help="output directory (variants.json, *.tflite, ...)")
    p.add_argument("--schemes", nargs="+", choices=ALL_SCHEMES, metavar="SCHEME",
                   help=f"variants to build (default: all; qat_int8 only with --qat-model): {', '.join(ALL_SCHEMES)}")
    p.add_argument("--num-calibration", type=int, default=QUANTIZE.num_calibration, help="calibration images")
    p.add_argument("--no-coreml", action="store_true", help="skip the Core ML packages")
    p.add_argument("--no-strict-parity", action="store_true",
                   help="record a parity miss in variants.json instead of failing")
    p.set_defaults(func=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from components.quantize import core

    if args.num_calibration < 1:
        raise ValueError(f"--num-calibration must be >= 1, got {args.num_calibration}")
    result = core.quantize(args.model, args.out, qat_model_dir=args.qat_model, calibration=args.data,
                           num_calibration=args.num_calibration, schemes=args.schemes,
                           coreml=not args.no_coreml, strict_parity=not args.no_strict_parity)
    fp32 = result.sizes().get("fp32")
    table = Table(title=f"variants in {result.out_dir}")
    for col in ("variant", "input", "size", "÷ fp32", "int8 compute", "float ops", "parity"):
        table.add_column(col, justify="left" if col in ("variant", "input") else "right")
    for v in result.variants:
        s, p = v["op_summary"], v["parity"]
        table.add_row(v["name"], v["input"]["dtype"], f"{v['size_bytes'] / 1e6:.3f} MB",
                      f"{v['size_bytes'] / fp32:.2f}" if fp32 else "-", "yes" if s["int8_compute"] else "no",
                      str(s["float_ops_outside_postprocess"]),
                      ("ok" if p["passed"] else "MISS") + f" (Δscore≤{p['score_max_abs']:.3g})")
    for c in result.coreml:
        table.add_row(c["name"], "image", f"{c['size_bytes'] / 1e6:.3f} MB",
                      f"{c['size_bytes'] / fp32:.2f}" if fp32 else "-", "-", "-", "spec ok")
    console = Console()
    console.print(table)
    for s in result.skipped:
        console.print(f"[yellow]skipped {s['name']}[/]: {s['error']}")
    console.print(f"variants.json: {result.index_path}")
    return 0

"""Benchmark (not a test): the model chain data → train → qat → quantize → evaluate, end to end.

Runs every step's core function on the embedded default dataset in one process, then prints one
table (variant, size, size ÷ fp32, mAP, ΔmAP vs float, latency 1-thread and N-thread, latency ÷
fp32, all measured in this run) and checks the issue's targets:

- float detector mAP@.5 >= 0.80 on val;
- QAT int8 ΔmAP@[.5:.95] <= 0.5 pt vs float; PTQ full int8 <= 1.0 pt;
- full int8 size <= 0.30 × fp32 .tflite; full int8 1-thread latency <= 0.50 × fp32;
- QAT step time <= 1.5 × float step time (from the qat step's history, measured in its run).

    python -m benchmarks.model_chain                        # the full default run (long)
    python -m benchmarks.model_chain --epochs 1 --qat-epochs 0.2 --latency-runs 10 --max-images 20
    python -m benchmarks.model_chain --reuse-from runs/bench   # re-evaluate existing artifacts

Writes the table and the verdicts to a Markdown file (default: <work>/model_chain.md) beside the
steps' artifacts (default work dir: runs/model_chain/).
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger("benchmarks.model_chain")

ORDER = ("fp32", "dynamic_int8", "float16", "full_int8", "full_int8_pt", "int16x8", "qat_int8")


@dataclass(frozen=True)
class Target:
    """One target of the issue and what this run measured for it."""

    name: str
    limit: str
    measured: float | None
    met: bool | None  # None = could not be measured in this run
    detail: str = ""


def _lat(row: Mapping[str, Any] | None, key: str = "threads_1") -> float | None:
    try:
        return float(row["latency_ms"][key]["median"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def chain_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: variant, size, size ÷ fp32, mAP, mAP@.5, ΔmAP vs float (pt), latency
    1-thread and N-thread (median, ms), latency ÷ fp32 (1 thread)."""
    variants = report.get("variants") or {}
    fp32 = variants.get("fp32") or {}
    n = next((((r.get("latency_ms") or {}).get("N")) for r in variants.values() if r.get("latency_ms")), "N")
    header = ["variant", "size (KB)", "size ÷ fp32", "mAP@[.5:.95]", "mAP@.5", "ΔmAP vs float (pt)",
              "latency 1T (ms)", f"latency {n}T (ms)", "latency ÷ fp32"]
    rows = []
    keras_row = report.get("float_keras")
    if isinstance(keras_row, Mapping):
        rows.append(["float (Keras)", "—", "—", _fmt(keras_row.get("map"), ".4f"),
                     _fmt(keras_row.get("map50"), ".4f"), "+0.00 (ref)", "—", "—", "—"])
    names = [v for v in ORDER if v in variants] + sorted(set(variants) - set(ORDER))
    fp32_size, fp32_lat = fp32.get("size_bytes"), _lat(fp32)
    for name in names:
        row = variants[name]
        size, lat1, latn = row.get("size_bytes"), _lat(row), _lat(row, "threads_N")
        rows.append([
            name,
            _fmt(size / 1024 if size else None, ".1f"),
            _fmt(size / fp32_size if size and fp32_size else None, ".3f"),
            _fmt(row.get("map"), ".4f"),
            _fmt(row.get("map50"), ".4f"),
            _fmt(row.get("delta_map_vs_float"), "+.2f"),
            _fmt(lat1, ".3f"),
            _fmt(latn, ".3f"),
            _fmt(lat1 / fp32_lat if lat1 and fp32_lat else None, ".3f"),
        ])
    return header, rows


def qat_step_ratio(qat_model_dir: str | Path | None) -> tuple[float | None, str]:
    """QAT step time ÷ float step time from the qat step's history.json (both measured in its run).

    Looks for a ratio the qat step recorded, else for the two step times. Returns (None, why)
    when the history does not hold them.
    """
    if qat_model_dir is None:
        return None, "no QAT model"
    path = Path(qat_model_dir) / "history.json"
    if not path.is_file():
        return None, f"{path} not found"
    history = json.loads(path.read_text())
    found: dict[str, float] = {}

    def walk(node: Any, prefix: str = "") -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            found[prefix] = float(node)

    walk(history)
    for key, value in found.items():
        low = key.lower()
        if "ratio" in low and "step" in low:
            return value, f"{key} in {path.name}"
    qat = [v for k, v in found.items() if "step" in k.lower() and "qat" in k.lower() and "time" in k.lower()]
    flt = [v for k, v in found.items() if "step" in k.lower() and "float" in k.lower() and "time" in k.lower()]
    if qat and flt and flt[0] > 0:
        return qat[0] / flt[0], f"QAT {qat[0]:.4g} ÷ float {flt[0]:.4g} (from {path.name})"
    return None, f"no step-time figures in {path} (keys: {sorted(found)[:12]})"


def check_targets(report: Mapping[str, Any], qat_ratio: float | None, qat_detail: str = "") -> list[Target]:
    """The issue's targets against this run's report."""
    variants = report.get("variants") or {}
    fp32 = variants.get("fp32") or {}
    ref = report.get("float_keras") if isinstance(report.get("float_keras"), Mapping) else fp32
    out = []
    map50 = ref.get("map50") if ref else None
    out.append(Target("float detector mAP@.5 on val", ">= 0.80", map50,
                      None if map50 is None else map50 >= 0.80,
                      "Keras float model" if ref is report.get("float_keras") else "fp32 .tflite"))
    for name, label, limit in (("qat_int8", "QAT int8 ΔmAP@[.5:.95] vs float (pt)", 0.5),
                               ("full_int8", "PTQ full int8 ΔmAP@[.5:.95] vs float (pt)", 1.0)):
        row = variants.get(name)
        delta = row.get("delta_map_vs_float") if row else None
        out.append(Target(label, f"<= {limit}", delta, None if delta is None else delta <= limit))
    lat_fp32 = _lat(fp32)
    # both full-int8 flavours: per-channel weight scales (TFLite's default) and per-tensor
    for name, flavour in (("full_int8", "per-channel"), ("full_int8_pt", "per-tensor")):
        row = variants.get(name)
        if name == "full_int8_pt" and not row:
            continue  # an older variants artifact without the per-tensor flavour
        size_ratio = (row["size_bytes"] / fp32["size_bytes"]
                      if row and row.get("size_bytes") and fp32.get("size_bytes") else None)
        out.append(Target(f"full int8 size ÷ fp32 .tflite ({flavour}: {name})", "<= 0.30", size_ratio,
                          None if size_ratio is None else size_ratio <= 0.30))
        lat = _lat(row)
        lat_ratio = lat / lat_fp32 if lat and lat_fp32 else None
        out.append(Target(f"full int8 1-thread latency ÷ fp32 ({flavour}: {name})", "<= 0.50", lat_ratio,
                          None if lat_ratio is None else lat_ratio <= 0.50))
        if name == "full_int8_pt":
            delta = row.get("delta_map_vs_float")
            out.append(Target("PTQ full int8 per-tensor ΔmAP@[.5:.95] vs float (pt)", "<= 1.0", delta,
                              None if delta is None else delta <= 1.0))
    out.append(Target("QAT step time ÷ float step time", "<= 1.5", qat_ratio,
                      None if qat_ratio is None else qat_ratio <= 1.5, qat_detail))
    return out


def render(report: Mapping[str, Any], targets: list[Target], settings: Mapping[str, Any],
           timings: Mapping[str, float]) -> str:
    """The benchmark's Markdown: settings, the table, the targets, the step times."""
    header, rows = chain_table(report)
    lines = ["# edgeship model-chain benchmark", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             f"val split: {report.get('images', '?')} images, {report.get('objects', '?')} objects; "
             f"dataset {report.get('dataset_fingerprint')}. ΔmAP = (float − variant) × 100 in mAP points "
             "(positive = accuracy lost); latency = LiteRT/XNNPACK median of "
             f"{report.get('latency_runs', '?')} runs on this machine.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Targets", "", "| target | limit | measured | verdict |", "|---|---|---|---|"]
    for t in targets:
        verdict = "not measured" if t.met is None else ("met" if t.met else "**not met**")
        detail = f" ({t.detail})" if t.detail else ""
        lines.append(f"| {t.name}{detail} | {t.limit} | {_fmt(t.measured, '.3f')} | {verdict} |")
    if timings:
        lines += ["", "Step wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def print_rich(report: Mapping[str, Any], targets: list[Target]) -> None:
    """The table and targets on the terminal."""
    from rich.console import Console
    from rich.table import Table

    header, rows = chain_table(report)
    table = Table(title="model chain: every variant measured in this run (val split, LiteRT)")
    for col in header:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in rows:
        table.add_row(*row)
    tt = Table(title="targets")
    for col in ("target", "limit", "measured", "verdict"):
        tt.add_column(col)
    for t in targets:
        verdict = ("[yellow]not measured" if t.met is None else "[green]met" if t.met else "[bold red]not met")
        tt.add_row(t.name + (f" ({t.detail})" if t.detail else ""), t.limit, _fmt(t.measured, ".3f"), verdict)
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print(tt)


# --------------------------------------------------------------------------- running the chain

def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a step's core function with the keyword arguments it accepts (others are logged and
    dropped, so a parameter one step does not offer does not break the whole benchmark)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        dropped = sorted(k for k in kwargs if k not in params)
        if dropped:
            log.warning("%s does not take %s; not passed", fn.__qualname__, dropped)
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _step(name: str, timings: dict[str, float], done: Path, reuse: bool, run: Callable[[], Any]) -> None:
    from rich.console import Console

    console = Console()
    if reuse and done.exists():
        console.print(f"[dim]{name}: reusing {done.parent}[/]")
        return
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    run()
    timings[name] = time.perf_counter() - t0
    console.print(f"{name}: {timings[name]:.0f} s")


def run_chain(args: argparse.Namespace) -> int:
    """data → train → qat → quantize → evaluate into ``args.work``; print and write the table."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir, float_dir, qat_dir = work / "data", work / "float_model", work / "qat_model"
    variants_dir, eval_dir = work / "variants", work / "evaluation"
    timings: dict[str, float] = {}
    reuse = bool(args.reuse)

    data_uri = args.data or str(data_dir)
    if not args.data:
        from components.data import core as data

        sizes = {k: v for k, v in (("train", args.train_images), ("val", args.val_images),
                                   ("calibration", args.calibration_images),
                                   ("image_size", args.image_size)) if v}
        _step("data", timings, data_dir / "dataset.json", reuse,
              lambda: _call(data.generate_dataset, data_dir, seed=args.seed, progress=True, **sizes))

    from components.train import core as train

    _step("train", timings, float_dir / "weights.h5", reuse,
          lambda: _call(train.train, data_uri, float_dir, epochs=args.epochs, seed=args.seed,
                        input_size=(args.input_size, args.input_size) if args.input_size else None,
                        progress=True))

    have_qat = True
    try:
        from components.qat import core as qat
    except ImportError as exc:
        log.warning("no QAT step (%s): qat_int8 and the QAT step-time target are skipped", exc)
        have_qat = False
    if have_qat and args.qat_epochs > 0:
        _step("qat", timings, qat_dir / "weights.h5", reuse,
              lambda: _call(qat.qat, float_dir, data_uri, qat_dir,
                            epochs=int(args.qat_epochs) if float(args.qat_epochs).is_integer() else args.qat_epochs,
                            seed=args.seed, progress=True))
    else:
        have_qat = False

    from components.quantize import core as quantize

    _step("quantize", timings, variants_dir / "variants.json", reuse,
          lambda: _call(quantize.quantize, float_dir, variants_dir,
                        qat_model_dir=qat_dir if have_qat else None, calibration=data_uri,
                        num_calibration=args.num_calibration, coreml=args.coreml, progress=True))

    from components.evaluate import core as evaluate

    t0 = time.perf_counter()
    report = evaluate.evaluate(variants_dir, data_uri, eval_dir, float_model_dir=float_dir,
                               latency_runs=args.latency_runs, max_images=args.max_images,
                               threads=args.threads)
    timings["evaluate"] = time.perf_counter() - t0

    doc = report.to_dict()
    ratio, detail = qat_step_ratio(qat_dir if have_qat else None)
    targets = check_targets(doc, ratio, detail)
    settings = {"epochs": args.epochs, "qat_epochs": args.qat_epochs, "input_size": args.input_size or "dataset's",
                "latency_runs": args.latency_runs, "max_images": args.max_images or "all",
                "num_calibration": args.num_calibration, "seed": args.seed, "data": data_uri}
    if reuse:
        settings["reused"] = "steps with existing artifacts were not rerun; their own settings apply"
    print_rich(doc, targets)
    out_md = Path(args.out) if args.out else work / "model_chain.md"
    out_md.write_text(render(doc, targets, settings, timings), encoding="utf-8")
    print(f"table written to {out_md}; reports in {eval_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_chain", description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/model_chain", help="directory for every step's artifacts")
    p.add_argument("--data", help="use this dataset instead of generating the embedded default")
    p.add_argument("--train-images", type=int, help="generated train split size (default: the generator's)")
    p.add_argument("--val-images", type=int, help="generated val split size")
    p.add_argument("--calibration-images", type=int, help="generated calibration split size")
    p.add_argument("--image-size", type=int, help="generated image side (default: the generator's)")
    p.add_argument("--epochs", type=int, default=150,
                   help="float training epochs (default 150: mAP@.5 0.865, ~25 min here; the pipeline's is 40)")
    p.add_argument("--qat-epochs", type=float, default=2.0, help="QAT epochs (0 = skip QAT)")
    p.add_argument("--input-size", type=int, help="square input side (default: the dataset's image size)")
    p.add_argument("--num-calibration", type=int, default=200, help="full-int8 calibration images")
    p.add_argument("--coreml", action="store_true", help="also convert to Core ML (not measured here)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed runs per thread setting")
    p.add_argument("--threads", type=int, help="the N of the N-thread latency (default: all cores)")
    p.add_argument("--max-images", type=int, help="evaluate only the first N val images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="skip steps whose artifacts already exist in --work")
    p.add_argument("--out", help="Markdown file for the table (default: <work>/model_chain.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.latency_runs < 1:
        print(f"--latency-runs must be >= 1, got {args.latency_runs}", file=sys.stderr)
        return 2
    return run_chain(args)


if __name__ == "__main__":
    sys.exit(main())

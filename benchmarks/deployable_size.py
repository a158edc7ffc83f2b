"""Benchmark (figures, not a test): full int8 ÷ fp32 at the default and at a deployable model size.

The model-chain benchmark measures the default detector (MobileNetV2 alpha 0.35 @ 160), where
int8's latency gain on x86 is small; it grows with the model. For each configuration (default:
alpha 0.35 @ 160 and alpha 1.0 @ 320) this:

1. generates a small embedded shapes dataset at the configuration's input size;
2. trains the detector briefly with the train step's own ``train()`` (a size / latency comparison
   needs the real graph and realistic activation ranges, not a good model);
3. converts each variant with the project's converter (``convert_variant``, post-processing op
   inside, as the quantize step does), calibrating full int8 on real calibration-split images;
4. times every variant with LiteRT/XNNPACK: 1 thread with the variants timed in turns, N threads
   one at a time, each with the block-bootstrap interval of the median (detection/latency.py).

Prints one table (size, size ÷ fp32, latency, latency ÷ fp32 per configuration) and writes it as
Markdown with the machine, the versions, the date and the command.

    .venv/bin/python -m benchmarks.deployable_size
    .venv/bin/python -m benchmarks.deployable_size --configs 0.35@160,1.0@320 --latency-runs 40
    .venv/bin/python -m benchmarks.deployable_size --reuse   # re-time the files already in --work
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship.detection.latency import LatencyStats

log = logging.getLogger("benchmarks.deployable_size")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "model_chain_deployable.md"
DEFAULT_CONFIGS = "0.35@160,1.0@320"
DEFAULT_VARIANTS = "fp32,float16,full_int8,full_int8_pt"
NOTES = (
    ("Models trained only briefly: sizes and latencies are the real graphs', accuracy is not "
     "measured. Anchors: ModelConfig's default layout unless --anchors fit (fitting on a few dozen "
     "images gives a noisy layout, and the anchor count sets the float post-processing cost)."),
    ("Latency: LiteRT/XNNPACK, the median of the timed runs on one real image; 1 thread with the "
     "variants of a configuration timed in turns (10 rounds, order rotated), N threads one variant "
     "at a time; interval = 95% block bootstrap of the median over 10 blocks (latency.py)."),
    ("Ratios are to the fp32 .tflite of the same configuration (post-processing op inside every "
     "variant). int8 compute: every compute op outside post-processing runs in int8."),
)


@dataclass(frozen=True)
class ModelSize:
    """One detector configuration: the MobileNetV2 width and the square input side."""

    alpha: float
    input_size: int

    @property
    def label(self) -> str:
        return f"α {self.alpha:g} @ {self.input_size}"


@dataclass(frozen=True)
class Measured:
    """One variant of one configuration, as measured in this run."""

    config: str
    variant: str
    size_bytes: int
    latency_1: LatencyStats
    latency_n: LatencyStats
    int8_compute: bool | None = None  # every compute op outside post-processing is int8


def parse_configs(text: str) -> list[ModelSize]:
    """``"0.35@160,1.0@320"`` → configurations; ValueError naming a malformed entry."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        alpha, sep, size = part.partition("@")
        try:
            if not sep:
                raise ValueError
            out.append(ModelSize(float(alpha), int(size)))
        except ValueError:
            raise ValueError(f"configuration {part!r}: expected ALPHA@INPUT, e.g. 1.0@320") \
                from None
    if not out:
        raise ValueError("no configuration given")
    return out


def parse_variants(text: str) -> list[str]:
    """``"fp32,full_int8"`` → schemes, fp32 first (the reference of every ratio); ValueError for
    a scheme this benchmark cannot build (unknown, or qat_int8, which needs a QAT model)."""
    from edgeship.detection.convert import SCHEMES

    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if SCHEMES.get(v, ("qat",))[0] != "float"]
    if bad:
        known = [k for k, v in SCHEMES.items() if v[0] == "float"]
        raise ValueError(f"variants {bad}: use schemes of the float model, {known}")
    return ["fp32"] + [v for v in dict.fromkeys(names) if v != "fp32"]


def _ms(stats: LatencyStats) -> str:
    if not stats.ci:
        return f"{stats.median:.3f}"
    return f"{stats.median:.3f} [{stats.ci[0]:.3f}, {stats.ci[1]:.3f}]"


def _ratio(value: float, ref: float | None) -> str:
    return f"{value / ref:.3f}" if ref else "—"


def table(rows: Sequence[Measured]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: config, variant, size KB, size ÷ fp32, 1-thread ms [interval], latency ÷
    fp32 (1 thread), N-thread ms [interval], N-thread ÷ fp32, int8 compute. Ratios are to the
    fp32 variant of the same configuration (— when it was not measured)."""
    n = rows[0].latency_n.threads if rows else "N"
    header = ["config", "variant", "size (KB)", "size ÷ fp32", "1T ms [95% interval]", "1T ÷ fp32",
              f"{n}T ms [95% interval]", f"{n}T ÷ fp32", "int8 compute"]
    fp32 = {r.config: r for r in rows if r.variant == "fp32"}
    out = []
    for r in rows:
        ref = fp32.get(r.config)
        size, lat1, latn = ((ref.size_bytes, ref.latency_1.median, ref.latency_n.median) if ref
                            else (None, None, None))
        out.append([r.config, r.variant, f"{r.size_bytes / 1024:.1f}", _ratio(r.size_bytes, size),
                    _ms(r.latency_1), _ratio(r.latency_1.median, lat1),
                    _ms(r.latency_n), _ratio(r.latency_n.median, latn),
                    "—" if r.int8_compute is None else ("yes" if r.int8_compute else "no")])
    return header, out


def cpu_model(cpuinfo: str) -> str:
    """The CPU's model name from /proc/cpuinfo's text ("unknown" when absent)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown"


def render_markdown(rows: Sequence[Measured], *, machine: Mapping[str, str], command: str,
                    settings: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """The benchmark's Markdown: what was measured, where, the table, and the notes."""
    header, body = table(rows)
    title = "# Model chain at deployable sizes: full int8 ÷ fp32 (benchmarks/deployable_size.py)"
    lines = [title, "",
             "Command: `" + command + "`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- measuring


def _stage(what: str, t0: float) -> None:
    log.info("%s (%.0f s elapsed)", what, time.perf_counter() - t0)


def _dataset(work: Path, size: int, args: argparse.Namespace) -> Path:
    """A small embedded shapes dataset at ``size`` px in ``work/data_<size>`` (--reuse keeps it)."""
    from components.data.core import generate_dataset

    out = work / f"data_{size}"
    if not (args.reuse and (out / "dataset.json").is_file()):
        generate_dataset(out, seed=args.seed, train=args.train_images, val=args.val_images,
                         calibration=args.calibration_images, image_size=size)
    return out


def _train(data: Path, out: Path, config: ModelSize, args: argparse.Namespace) -> Path:
    """The train step's ``train()`` for ``args.epochs`` epoch(s): a Model artifact in ``out``."""
    from components.train.core import train
    from edgeship.base.tfcompat import keras

    if args.reuse and (out / "weights.h5").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)  # train() resumes from checkpoints it finds there
    keras.backend.clear_session()
    train(str(data), out, epochs=args.epochs, batch_size=args.batch_size, alpha=config.alpha,
          input_size=(config.input_size, config.input_size), anchors=args.anchors, seed=args.seed,
          evaluate=False, saved_model=False, progress=False)
    return out


def _convert(model_dir: Path, data: Path, out: Path, variants: Sequence[str],
             args: argparse.Namespace) -> tuple[dict[str, Path], Any, dict[str, bool | None], str]:
    """Convert every variant with the project's converter; (paths, a real uint8 image for the
    latency input, int8 compute per variant, the model in words)."""
    from edgeship.detection.convert import (
        INT8_SCHEMES,
        convert_variant,
        load_model_artifact,
        representative_dataset,
        select_calibration,
    )
    from edgeship.detection.op_report import write_op_report

    loaded = load_model_artifact(model_dir)
    chosen = select_calibration(str(data), loaded.input_size, args.num_calibration, seed=args.seed,
                                resize=loaded.config.get("resize", "stretch"))
    if not chosen.images:
        raise ValueError(f"no calibration images: {chosen.where}")
    rep = representative_dataset(chosen.images)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    int8: dict[str, bool | None] = dict.fromkeys(variants)
    for name in variants:
        t0 = time.perf_counter()
        path = out / f"{name}.tflite"
        if not (args.reuse and path.is_file()):
            path.write_bytes(convert_variant(loaded, name, representative=rep))
        if name in INT8_SCHEMES:
            int8[name] = bool(write_op_report(path, out, name)["int8_compute"])
        paths[name] = path
        log.info("  %s: %.1f KB in %.0f s", name, path.stat().st_size / 1024,
                 time.perf_counter() - t0)
    what = (f"{loaded.model.count_params() / 1e6:.2f} M parameters, {len(loaded.anchors)} anchors "
            f"(strides {loaded.config.get('strides')})")
    return paths, chosen.images[-1], int8, what


def _latency(paths: Mapping[str, Path], image: Any, args: argparse.Namespace
             ) -> dict[str, tuple[LatencyStats, LatencyStats]]:
    """1 thread: the variants timed in turns; N threads: one at a time (latency.py says why)."""
    import numpy as np

    from edgeship.detection.convert import SCHEMES
    from edgeship.detection.latency import interleaved_tflite_latency, tflite_latency

    runs, warmup = args.latency_runs, args.warmup
    inputs = {name: (path, np.asarray(image)[None].astype(SCHEMES[name][1]))
              for name, path in paths.items()}
    one = interleaved_tflite_latency(inputs, threads=1, runs=runs, warmup=warmup)
    many = {name: tflite_latency(path, x, threads=args.threads, runs=runs, warmup=warmup)
            for name, (path, x) in inputs.items()}
    return {name: (one[name], many[name]) for name in paths}


def measure_config(config: ModelSize, work: Path, variants: Sequence[str], args: argparse.Namespace,
                   t0: float) -> tuple[list[Measured], str]:
    """data → train → convert → latency for one configuration; its rows and a description."""
    tag = f"a{config.alpha:g}_{config.input_size}"
    _stage(f"[{config.label}] data: {args.train_images}/{args.val_images}/"
           f"{args.calibration_images} images at {config.input_size} px", t0)
    data = _dataset(work, config.input_size, args)
    _stage(f"[{config.label}] train: {args.epochs} epoch(s), batch {args.batch_size}", t0)
    model_dir = _train(data, work / f"model_{tag}", config, args)
    _stage(f"[{config.label}] convert {', '.join(variants)} "
           f"(calibration: {args.num_calibration} images)", t0)
    paths, image, int8, what = _convert(model_dir, data, work / f"variants_{tag}", variants, args)
    _stage(f"[{config.label}] latency: {args.latency_runs} runs at 1 thread (in turns) "
           f"and {args.threads} threads", t0)
    lat = _latency(paths, image, args)
    rows = [Measured(config.label, name, paths[name].stat().st_size, *lat[name], int8[name])
            for name in variants]
    for r in rows:
        log.info("  %s %s: 1T %s ms, %dT %s ms", r.config, r.variant, _ms(r.latency_1),
                 r.latency_n.threads, _ms(r.latency_n))
    return rows, f"{config.label}: {what}"


def machine_info() -> dict[str, str]:
    """CPU model, core count, TF and LiteRT versions, Python, date (UTC)."""
    from datetime import UTC, datetime
    from importlib import metadata

    try:
        cpu = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = "unknown"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"CPU": cpu, "cores": str(os.cpu_count()),
            "TensorFlow": version("tensorflow"),
            "LiteRT (ai-edge-litert)": version("ai-edge-litert"),
            "Python": sys.version.split()[0],
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def run(args: argparse.Namespace, command: str) -> int:
    """Measure every configuration, print the table and write the Markdown."""
    variants = parse_variants(args.variants)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    rows: list[Measured] = []
    described = []
    for config in parse_configs(args.configs):
        got, what = measure_config(config, work, variants, args, t0)
        rows += got
        described.append(what)
    _stage("done", t0)
    images = f"{args.train_images}/{args.val_images}/{args.calibration_images}"
    settings = {"epochs": args.epochs, "batch": args.batch_size, "anchors": args.anchors,
                "images train/val/calibration": images, "num_calibration": args.num_calibration,
                "latency_runs": args.latency_runs, "warmup": args.warmup, "seed": args.seed}
    wall = (f"Wall time of the whole run: {time.perf_counter() - t0:.0f} s; load average (1 min): "
            f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.")
    notes = [*described, *NOTES, wall]
    _print(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(rows, machine=machine_info(), command=command,
                                   settings=settings, notes=notes), encoding="utf-8")
    print(f"table written to {out}")
    return 0


def _print(rows: Sequence[Measured]) -> None:
    from rich.console import Console
    from rich.table import Table

    header, body = table(rows)
    t = Table(title="full int8 ÷ fp32 at the default and a deployable size (LiteRT, this machine)")
    for col in header:
        t.add_column(col, justify="left" if col in ("config", "variant") else "right")
    for row in body:
        t.add_row(*row)
    Console(width=max(Console().width, 160)).print(t)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.deployable_size",
                                description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="ALPHA@INPUT, comma-separated")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="schemes to convert (fp32 always)")
    p.add_argument("--work", default="runs/deployable_size",
                   help="directory for datasets, models, variants")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file for the table")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per configuration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--anchors", choices=("default", "fit"), default="default",
                   help="ModelConfig's anchors (strides 16, 32) or fitted to the train boxes")
    p.add_argument("--train-images", type=int, default=48, help="generated train split size")
    p.add_argument("--val-images", type=int, default=16, help="generated val split size")
    p.add_argument("--calibration-images", type=int, default=32,
                   help="generated calibration split size")
    p.add_argument("--num-calibration", type=int, default=32, help="full-int8 calibration images")
    p.add_argument("--latency-runs", type=int, default=50,
                   help="timed runs per variant and thread setting")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument("--threads", type=int, help="the N of the N-thread latency (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true",
                   help="keep the datasets, models and .tflite files found in --work")
    return p


def main(argv: list[str] | None = None) -> int:
    from edgeship.detection.latency import all_threads

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.threads = args.threads or all_threads()
    if args.latency_runs < 1 or args.epochs < 1 or args.threads < 1:
        print("--latency-runs, --epochs and --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        parse_configs(args.configs)
        parse_variants(args.variants)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    venv = ROOT / ".venv" / "bin"
    exe = ".venv/bin/python" if Path(sys.executable).parent == venv else "python"
    return run(args, " ".join([exe, "-m", "benchmarks.deployable_size", *argv]))


if __name__ == "__main__":
    sys.exit(main())

"""`edgeship data generate | import | inspect | upload`."""
from __future__ import annotations

import json

from components.data.settings import DATA


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="generate, import, inspect and upload datasets")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    g = sub.add_parser("generate", help="write the embedded synthetic dataset")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--seed", type=int, default=DATA.seed, help="generator seed")
    g.add_argument("--train", type=int, default=DATA.train_images, help="train images")
    g.add_argument("--val", type=int, default=DATA.val_images, help="val images")
    g.add_argument("--calibration", type=int, default=DATA.calibration_images, help="calibration images")
    g.add_argument("--image-size", type=int, default=DATA.image_size, help="image side in pixels")
    g.add_argument("--workers", type=int, default=0,
                   help="processes drawing images (default: up to 2; same bytes for any value)")
    g.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override a generator knob (components/data/generate.py GeneratorConfig), "
                        "e.g. --set min_size=24 --set occlusion_prob=0.2; repeatable")
    g.set_defaults(func=_generate)

    _register_import(sub)

    i = sub.add_parser("inspect", help="check a dataset (local dir or gs://) and print its metadata")
    i.add_argument("uri")
    i.add_argument("--format", choices=("coco", "tfrecord"), default="coco")
    i.add_argument("--grid", metavar="PNG", help="also draw the first 16 images of --split with their boxes here")
    i.add_argument("--split", default="train", help="split for --grid (default: train)")
    i.set_defaults(func=_inspect)

    u = sub.add_parser("upload", help="upload a dataset directory to a gs:// prefix (create-only)")
    u.add_argument("dir")
    u.add_argument("uri", help="gs://bucket/prefix")
    u.add_argument("--overwrite", action="store_true", help="replace objects that already exist")
    u.set_defaults(func=_upload)


def _register_import(sub) -> None:
    m = sub.add_parser("import", help="import your COCO, Pascal VOC or TF OD API dataset (local or "
                                      "gs://) as a Dataset artifact, with a data report")
    m.add_argument("src", help="the source: a folder, a COCO JSON file or a gs:// prefix")
    m.add_argument("--out", required=True, help="output directory (new, or an earlier dataset to "
                                                "replace) or gs:// prefix (must be empty)")
    m.add_argument("--format", choices=("auto", "coco", "voc", "tfod"), default=DATA.source_format,
                   help="source format (auto: detected)")
    m.add_argument("--val-fraction", type=float, default=DATA.val_fraction,
                   help="share of train carved as val when the source has no val split")
    m.add_argument("--calibration-fraction", type=float, default=DATA.calibration_fraction,
                   help="share of train carved as calibration when the source has none")
    m.add_argument("--seed", type=int, default=DATA.seed, help="seed of the carved splits")
    m.add_argument("--strict", action="store_true", default=DATA.strict,
                   help="refuse boxes outside the image, zero-area or inverted boxes and VOC files "
                        "without a size, instead of clipping/dropping them with a warning")
    m.add_argument("--input-size", type=int, default=DATA.image_size,
                   help="model input side the data is meant for (dataset.json image_size; the "
                        "tiny-box check)")
    m.add_argument("--resize", choices=("stretch", "letterbox"), default=DATA.resize,
                   help="how images reach the model input (recorded in dataset.json)")
    m.add_argument("--max-side", type=int, default=DATA.max_image_side,
                   help="shrink images whose longer side is above this (0 = keep every size)")
    m.add_argument("--tiny-box-px", type=float, default=DATA.tiny_box_px,
                   help="warn for boxes with a side under this many pixels at the input")
    m.add_argument("--name", default="", help="dataset name (default: the source folder's name)")
    m.add_argument("--report", metavar="FILE", help="also write the data report (text) here")
    m.set_defaults(func=_import)


def _import(args) -> int:
    import time
    from pathlib import Path

    from components.data import core
    from edgeship.detection.sources.report import report_text

    options = core.import_options(
        format=args.format, val_fraction=args.val_fraction,
        calibration_fraction=args.calibration_fraction, seed=args.seed, strict=args.strict,
        input_size=args.input_size, resize=args.resize, max_image_side=args.max_side,
        tiny_box_px=args.tiny_box_px, name=args.name)
    t0 = time.perf_counter()
    info = core.import_dataset(args.src, args.out, options)
    text = report_text(info.raw["report"])
    print(text)
    source = info.raw["source"]
    print(f"imported {source['format']} from {args.src} into {args.out} in "
          f"{time.perf_counter() - t0:.1f} s")
    print("classes (training id: name [your id]): " + ", ".join(
        f"{c['id']}: {c['name']}" + (f" [{c['source_id']}]" if c.get("source_id") is not None else "")
        for c in info.classes))
    print(f"fingerprint {info.fingerprint}")
    if args.report:
        Path(args.report).write_text(text + "\n")
        print(f"report: {args.report}")
    return 0


def _generate(args) -> int:
    import os
    import time
    from pathlib import Path

    from components.data import core

    workers = args.workers or min(2, os.cpu_count() or 1)
    config = _generator_config(args.set)
    t0 = time.perf_counter()
    info = core.generate_dataset(args.out, seed=args.seed, train=args.train, val=args.val,
                                 calibration=args.calibration, image_size=args.image_size,
                                 progress=True, workers=workers, config=config)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s ({size / 1e6:.1f} MB)")
    print(f"fingerprint {info.fingerprint}")
    for split, meta in info.splits.items():
        print(f"  {split:12s} {meta['images']:5d} images {meta['objects']:5d} objects  {meta['per_class']}")
    return 0


def _generator_config(pairs: list[str]):
    """GeneratorConfig with ``KNOB=VALUE`` overrides; ValueError naming a bad knob or value."""
    import dataclasses

    from components.data.generate import GeneratorConfig

    fields = {f.name: f for f in dataclasses.fields(GeneratorConfig)}
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields or key in ("image_size", "classes"):
            knobs = sorted(set(fields) - {"image_size", "classes"})
            raise ValueError(f"--set {pair!r}: expected KNOB=VALUE with KNOB one of {knobs}")
        kind = type(getattr(GeneratorConfig(), key))
        try:
            changes[key] = kind(value)
        except ValueError as exc:
            raise ValueError(f"--set {pair!r}: {key} takes a {kind.__name__}") from exc
    return GeneratorConfig(**changes)


def _inspect(args) -> int:
    from edgeship.detection import dataset as dataset_reader

    info = dataset_reader.validate(args.uri, fmt=args.format)
    described = dataset_reader.describe(args.uri)
    report = described.pop("report", None)
    print(json.dumps(described, indent=2))
    if report:
        from edgeship.detection.sources.report import report_text

        print(report_text(report))
    print(f"ok: every split of {info.uri} reads cleanly as {args.format}")
    if args.grid:
        from components.data.preview import save_grid

        print(f"grid: {save_grid(args.uri, args.grid, split=args.split, fmt=args.format)}")
    return 0


def _upload(args) -> int:
    from pathlib import Path

    from google.api_core import exceptions

    from edgeship.base import storage

    if not (Path(args.dir) / "dataset.json").is_file():
        raise FileNotFoundError(f"{args.dir} is not a dataset directory (no dataset.json)")
    try:
        uris = storage.upload_dir(args.dir, args.uri, overwrite=args.overwrite)
    except exceptions.PreconditionFailed as exc:
        raise ValueError(f"{args.uri} already holds some of these files (uploads are create-only; "
                         f"pass --overwrite to replace them): {exc.message}") from exc
    size = sum(p.stat().st_size for p in Path(args.dir).rglob("*") if p.is_file())
    print(f"uploaded {len(uris)} files ({size / 1e6:.1f} MB) to {args.uri}")
    return 0

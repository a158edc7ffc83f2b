"""`edgeship data generate | inspect | upload`."""
from __future__ import annotations

import json

from components.data.settings import DATA


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="generate, inspect and upload datasets")
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
    print(json.dumps(dataset_reader.describe(args.uri), indent=2))
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

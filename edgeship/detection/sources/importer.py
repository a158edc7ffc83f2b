"""`edgeship data import`: detect a user's dataset (COCO, Pascal VOC, TF OD API TFRecords; local
or gs://), read and check it, carve the splits it lacks, and write the Dataset artifact
(docs/contracts.md) with a ``source`` block and a data report in dataset.json.

Training ids are 1..K in the order of the user's ids (COCO, TF OD API) or of their class list
(VOC: labels.txt/classes.txt, else names sorted); ``source.mapping`` maps each original id (VOC:
name) to its training id, and every class in dataset.json keeps its ``source_id``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeship.contracts.dataset import (
    FORMAT_VERSION,
    RESIZE_POLICIES,
    SPLITS,
    DatasetInfo,
    read_dataset_info,
)
from edgeship.detection.sources import coco, tfod, voc
from edgeship.detection.sources.images import LETTERBOX_FILL
from edgeship.detection.sources.prepare import Prepared, prepare_all
from edgeship.detection.sources.records import Category, Issues, Source, SourceError
from edgeship.detection.sources.report import build_report
from edgeship.detection.sources.splits import METHOD, carve, check_fractions
from edgeship.detection.sources.tree import SourceTree
from edgeship.detection.sources.writer import check_target, publish, staging_dir, write_artifact

log = logging.getLogger(__name__)

FORMATS = ("auto", "coco", "voc", "tfod")
SPLIT_ORDER = (*SPLITS, "test")


@dataclass(frozen=True)
class ImportOptions:
    """How to import (components/data/settings.py DataSettings holds the step's defaults)."""

    format: str = "auto"
    val_fraction: float = 0.15          # of train, when the source gives no val split
    calibration_fraction: float = 0.1   # of train, when the source gives no calibration split
    seed: int = 0
    strict: bool = False                # refuse instead of clipping/dropping bad boxes
    input_size: int = 160               # the model input the report's tiny-box check is for
    resize: str = "stretch"             # stretch | letterbox (recorded for training/evaluation)
    max_image_side: int = 1024          # shrink longer sides to this (0 = keep every size)
    tiny_box_px: float = 8.0            # warn for boxes with a side under this at the input
    name: str = ""                      # dataset name (default: the source folder's name)

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown source format {self.format!r}; expected one of {list(FORMATS)}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {self.resize!r}; expected one of "
                             f"{list(RESIZE_POLICIES)}")
        check_fractions({"val": self.val_fraction, "calibration": self.calibration_fraction})
        if self.input_size < 32 or self.max_image_side < 0 or self.tiny_box_px < 0:
            raise ValueError(f"input_size must be ≥ 32 and max_image_side, tiny_box_px ≥ 0, got "
                             f"{self.input_size}, {self.max_image_side}, {self.tiny_box_px}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")


def detect_format(tree: SourceTree) -> tuple[str, object]:
    """("coco" | "voc" | "tfod", what was parsed on the way); raises SourceError when the source
    is an edgeship artifact, holds none of them, or holds several."""
    if tree.only is None and tree.find("dataset.json"):
        raise SourceError(f"{tree.uri} is already an edgeship Dataset artifact (it has dataset.json): "
                          "use it as it is")
    records, _ = tfod.find_tfod_files(tree)
    docs, broken = coco.find_coco_files(tree)
    xmls = voc.find_voc_files(tree)
    found = [(fmt, hit) for fmt, hit in (("coco", docs), ("voc", xmls), ("tfod", records)) if hit]
    if len(found) == 1:
        if found[0][0] == "coco" and broken:
            raise SourceError("JSON file(s) that do not parse: " + "; ".join(broken))
        return found[0]
    if not found:
        hint = f"; JSON files that do not parse: {'; '.join(broken)}" if broken else ""
        raise SourceError(f"found no COCO detection JSON, Pascal VOC XML or TFRecords (+ "
                          f"label_map.pbtxt) among the {len(tree.files)} files of {tree.uri}{hint}")
    raise SourceError(f"{tree.uri} holds several formats ({', '.join(f for f, _ in found)}): pass "
                      "--format")


def read_source(tree: SourceTree, fmt: str, issues: Issues) -> Source:
    parsed = None
    if fmt == "auto":
        fmt, parsed = detect_format(tree)
    if fmt == "coco":
        return coco.read_coco(tree, issues, parsed)
    if fmt == "voc":
        return voc.read_voc(tree, issues, parsed)
    return tfod.read_tfod(tree, issues)


def category_mapping(source: Source, issues: Issues) -> tuple[list[Category], dict]:
    """The training classes (1..K, the source's order) and {category key: training id}.
    A category no object uses is kept (its AP is undefined) with a warning."""
    used = {o.category for img in source.images for o in img.objects}
    for cat in source.categories:
        if cat.key not in used:
            issues.warn("class_without_objects", f"class {cat.name!r} (id {cat.source_id}) has no "
                        f"objects in {source.uri}")
    if not source.categories:
        raise SourceError(f"{source.uri}: no categories")
    return source.categories, {c.key: i + 1 for i, c in enumerate(source.categories)}


def assign_splits(items: list[Prepared], options: ImportOptions, issues: Issues) -> tuple[dict, dict]:
    """{split: [Prepared]} with val/calibration carved from train when the source lacks them, and
    the record of what was given and carved. An empty split raises naming it."""
    given = sorted({p.source.split for p in items}, key=SPLIT_ORDER.index)
    if "train" not in given:
        if len(given) != 1:
            raise SourceError(f"the source gives splits {given} but no train split")
        issues.warn("only_split", f"the source's only split is {given[0]!r}: used as train")
        for p in items:
            p.split = "train"
        given = ["train"]
    else:
        for p in items:
            p.split = p.source.split
    by_split = {s: [p for p in items if p.split == s] for s in given}
    record = {"given": {s: len(v) for s, v in by_split.items()}, "carved": {},
              "seed": options.seed, "method": METHOD}
    fractions = {s: f for s, f in (("val", options.val_fraction),
                                   ("calibration", options.calibration_fraction)) if s not in given}
    if fractions:
        train = by_split["train"]
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(train):
            groups.setdefault(p.sha256, []).append(i)
        units = list(groups.values())
        classes = [frozenset(train[i].labels[k] for i in u for k in train[i].targets()) for u in units]
        picked = carve(classes, fractions, options.seed)
        taken: set[int] = set()
        for split, unit_ids in picked.items():
            members = sorted(i for u in unit_ids for i in units[u])
            by_split[split] = [train[i] for i in members]
            for i in members:
                train[i].split = split
            taken.update(members)
            record["carved"][split] = {"from": "train", "fraction": fractions[split],
                                       "images": len(members)}
            _not_empty(split, len(members), f"after carving {fractions[split]} of {len(train)} "
                       f"train images; give a {split} split or raise the fraction")
        by_split["train"] = [p for i, p in enumerate(train) if i not in taken]
    for split in SPLIT_ORDER:
        if split in by_split:
            _not_empty(split, len(by_split[split]), "(every split needs at least one image)")
    return {s: by_split[s] for s in SPLIT_ORDER if s in by_split}, record


def _not_empty(split: str, n: int, detail: str) -> None:
    if n == 0:
        raise SourceError(f"split {split!r} is empty {detail}")


def _source_block(source: Source, categories: list[Category], mapping: dict, record: dict,
                  options: ImportOptions, issues: Issues, items: list[Prepared]) -> dict:
    return {
        "format": source.format, "uri": source.uri, "files": source.files[:50],
        "categories": [{"id": c.source_id, "name": c.name,
                        **({"display_name": c.display_name} if c.display_name else {})}
                       for c in categories],
        "mapping": {str(k): v for k, v in mapping.items()},
        "splits": record,
        "flags": {"iscrowd": sum(sum(p.iscrowd) for p in items),
                  "difficult": sum(sum(p.difficult) for p in items)},
        "options": {k: v for k, v in asdict(options).items() if k != "name"},
    }


def import_dataset(src: str | Path, out: str | Path, options: ImportOptions | None = None) -> DatasetInfo:
    """Import the dataset at ``src`` (local path or gs://) into the Dataset artifact at ``out``
    (local dir or gs:// prefix). Raises SourceError (a ValueError) or FileNotFoundError naming
    the file and annotation/record; on any error nothing is left at ``out``."""
    options = options or ImportOptions()
    options.check()
    src, out = str(src), str(out)
    check_target(out)
    issues = Issues(strict=options.strict)
    tree = SourceTree(src)
    source = read_source(tree, options.format, issues)
    categories, mapping = category_mapping(source, issues)
    log.info("read %s (%s): %d images, %d classes", tree.uri, source.format, len(source.images),
             len(categories))
    size = [options.input_size, options.input_size]
    with staging_dir(out) as tmp:
        items = prepare_all(tree, source, tmp / "staging", mapping=mapping,
                            max_side=options.max_image_side, issues=issues)
        by_split, record = assign_splits(items, options, issues)
        names = [c.name for c in categories]
        report = build_report(by_split, names, input_size=size, policy=options.resize,
                              tiny_box_px=options.tiny_box_px, issues=issues)
        meta = {"format_version": FORMAT_VERSION,
                "name": options.name or Path(tree.uri.rstrip("/")).name or "dataset",
                "image_size": size, "seed": options.seed,
                "classes": [{"id": i + 1, "name": c.name, "source_id": c.source_id}
                            for i, c in enumerate(categories)],
                "resize": {"policy": options.resize, "input_size": size, "fill": LETTERBOX_FILL},
                "source": _source_block(source, categories, mapping, record, options, issues, items),
                "report": report, "generator": None}
        root = tmp / "artifact"
        root.mkdir()
        meta = write_artifact(root, by_split, categories, meta)
        publish(root, out)
    log.info("imported %s into %s (%s)", src, out, meta["fingerprint"])
    return read_dataset_info(out)

"""The data report made at import: images and objects per class and split, box-size and aspect
histograms, images without objects, duplicates (same bytes), boxes tiny at the model's input,
the warnings. A dict (dataset.json "report", the artifact's metadata) and its text rendering."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from edgeship.detection.sources.images import box_side_at_input
from edgeship.detection.sources.prepare import Prepared
from edgeship.detection.sources.records import Issues

SIZE_EDGES = (0, 4, 8, 16, 32, 64, 128, 256)        # sqrt(w·h) in input pixels; last bin open
ASPECT_EDGES = (0, 0.25, 0.5, 0.8, 1.25, 2, 4)      # box width / height; last bin open
IMAGE_ASPECT_EDGES = (0, 0.6, 0.8, 0.95, 1.05, 1.4, 1.9)   # image width / height
EXAMPLES = 10


def _histogram(values: Sequence[float], edges: Sequence[float]) -> dict:
    counts = np.histogram(np.asarray(values, np.float64), bins=[*edges, np.inf])[0] if len(values) \
        else np.zeros(len(edges), int)
    return {"edges": list(edges), "counts": [int(c) for c in counts]}


def _split_stats(items: list[Prepared], names: list[str]) -> dict:
    objects, images = Counter(), Counter()
    for p in items:
        present = set()
        for k in p.targets():
            objects[p.labels[k]] += 1
            present.add(p.labels[k])
        images.update(present)
    return {"images": len(items), "objects": sum(objects.values()),
            "crowd": sum(sum(p.iscrowd) for p in items),
            "difficult": sum(sum(p.difficult) for p in items),
            "images_without_objects": sum(1 for p in items if not p.targets()),
            "per_class": {n: {"images": images[i + 1], "objects": objects[i + 1]}
                          for i, n in enumerate(names)}}


def _duplicates(by_split: dict[str, list[Prepared]]) -> dict:
    groups: dict[str, list[tuple[str, Prepared]]] = defaultdict(list)
    for split, items in by_split.items():
        for p in items:
            groups[p.sha256].append((split, p))
    dups = [g for g in groups.values() if len(g) > 1]
    return {"groups": len(dups), "images": sum(len(g) for g in dups),
            "across_splits": sum(1 for g in dups if len({s for s, _ in g}) > 1),
            "examples": [[f"{s}: {p.file}" for s, p in g] for g in dups[:EXAMPLES]]}


def build_report(by_split: dict[str, list[Prepared]], names: list[str], *, input_size: Sequence[int],
                 policy: str, tiny_box_px: float, issues: Issues) -> dict:
    """The report of the imported splits; tiny boxes become warnings in ``issues`` (so they are
    in the report's warnings too)."""
    sizes, aspects, image_aspects, tiny = [], [], [], []
    empty, image_sizes = [], Counter()
    for split, items in by_split.items():
        for p in items:
            image_sizes[(p.width, p.height)] += 1
            image_aspects.append(p.width / p.height)
            if not p.targets():
                empty.append(f"{split}: {p.file}")
            for k in p.targets():
                x0, y0, x1, y1 = p.boxes[k]
                w, h = box_side_at_input(x1 - x0, y1 - y0, (p.height, p.width), input_size, policy)
                sizes.append(float(np.sqrt(w * h)))
                aspects.append((x1 - x0) / max(y1 - y0, 1e-9))
                if min(w, h) < tiny_box_px:
                    tiny.append(f"{split}: {p.file} {names[p.labels[k] - 1]} {w:.1f}x{h:.1f}")
                    issues.warn("tiny_box", f"{p.wheres[k]}: a "
                                f"{names[p.labels[k] - 1]!r} box is {w:.1f}x{h:.1f} px at the "
                                f"{input_size[1]}x{input_size[0]} input ({policy}): below "
                                f"{tiny_box_px:g} px, hard to detect")
    all_items = [p for items in by_split.values() for p in items]
    (common, common_n), = image_sizes.most_common(1) or [((0, 0), 0)]
    return {
        "input_size": list(input_size), "resize": policy, "tiny_box_px": tiny_box_px,
        "splits": {s: _split_stats(items, names) for s, items in by_split.items()},
        "box_size_px": {**_histogram(sizes, SIZE_EDGES), "measure": "sqrt(w*h) at the input"},
        "box_aspect": {**_histogram(aspects, ASPECT_EDGES), "measure": "box width / height"},
        "images": {
            "count": len(all_items), "distinct_sizes": len(image_sizes),
            "most_common_size": [common[0], common[1], common_n],
            "min_side": min((min(p.width, p.height) for p in all_items), default=0),
            "max_side": max((max(p.width, p.height) for p in all_items), default=0),
            "aspect": {**_histogram(image_aspects, IMAGE_ASPECT_EDGES), "measure": "width / height"},
            "formats": dict(Counter(p.image.file_format for p in all_items)),
            "modes": dict(Counter(p.image.mode for p in all_items)),
            "reencoded": sum(p.image.reencoded for p in all_items),
            "exif_rotated": sum(p.image.orientation != 1 for p in all_items),
            "downscaled": sum(p.image.scale < 1 for p in all_items),
        },
        "images_without_objects": {"count": len(empty), "examples": empty[:EXAMPLES]},
        "duplicates": _duplicates(by_split),
        "tiny_boxes": {"count": len(tiny), "examples": tiny[:EXAMPLES]},
        "warnings": issues.to_json(),
    }


def _hist_line(h: dict, fmt: str = "{:g}") -> str:
    edges = list(h["edges"])
    labels = [f"{fmt.format(a)}-{fmt.format(b)}" for a, b in zip(edges, edges[1:])] + \
        [f"≥{fmt.format(edges[-1])}"]
    return "  ".join(f"{lab}: {c}" for lab, c in zip(labels, h["counts"]))


def report_text(report: dict) -> str:
    """The report as a few lines of text (printed by `edgeship data import` and `inspect`)."""
    lines = [f"data report (input {report['input_size'][1]}x{report['input_size'][0]}, "
             f"resize {report['resize']})"]
    for split, s in report["splits"].items():
        extra = "".join(f", {s[k]} {k}" for k in ("crowd", "difficult") if s[k])
        lines.append(f"  {split:11s} {s['images']:6d} images {s['objects']:7d} objects"
                     f"{extra}, {s['images_without_objects']} without objects")
        for name, c in s["per_class"].items():
            lines.append(f"      {name:20s} {c['images']:6d} images {c['objects']:7d} objects")
    im = report["images"]
    lines.append(f"  images: {im['count']}, {im['distinct_sizes']} sizes (most common "
                 f"{im['most_common_size'][0]}x{im['most_common_size'][1]}: "
                 f"{im['most_common_size'][2]}), sides {im['min_side']}..{im['max_side']} px; "
                 f"formats {im['formats']}, modes {im['modes']}; re-encoded {im['reencoded']}, "
                 f"EXIF-rotated {im['exif_rotated']}, downscaled {im['downscaled']}")
    lines.append(f"  image aspect (w/h)   {_hist_line(im['aspect'])}")
    lines.append(f"  box size (px at input, sqrt(w*h))  {_hist_line(report['box_size_px'])}")
    lines.append(f"  box aspect (w/h)     {_hist_line(report['box_aspect'])}")
    dup = report["duplicates"]
    lines.append(f"  images without objects: {report['images_without_objects']['count']}; "
                 f"duplicates (same bytes): {dup['images']} images in {dup['groups']} groups "
                 f"({dup['across_splits']} across splits)")
    lines.append(f"  tiny boxes (< {report['tiny_box_px']:g} px at the input): "
                 f"{report['tiny_boxes']['count']}")
    warnings = report["warnings"]
    lines.append(f"  warnings: {warnings['count']} {warnings['by_kind'] or ''}".rstrip())
    lines += [f"    {m}" for m in warnings["messages"][:20]]
    if warnings["count"] > 20:
        lines.append(f"    ... {warnings['count'] - 20} more in dataset.json (report.warnings)")
    return "\n".join(lines)

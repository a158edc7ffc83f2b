"""COCO detection JSON + image folders: one file per split (or one file), any category ids.

Layouts found by looking, not by name: Roboflow (``train/_annotations.coco.json`` with the images
beside it), CVAT (``annotations/instances_default.json`` + ``images/``), COCO 2017
(``annotations/instances_val2017.json`` + ``val2017/``), edgeship's own
(``coco/annotations/val.json`` + ``coco/images/val/``), or a single JSON file. A file's split
comes from its name or its folder's (train, val/valid/validation, test, calibration); a lone file
without one is train. ``file_name`` may hold sub-folders.
"""
from __future__ import annotations

import json
import posixpath

from edgeship.detection.sources.records import (
    Category,
    Issues,
    Source,
    SourceError,
    SourceImage,
    SourceObject,
)
from edgeship.detection.sources.splits import split_of_path
from edgeship.detection.sources.tree import SourceTree, resolve_image


def looks_like_coco(obj: object) -> bool:
    return isinstance(obj, dict) and all(isinstance(obj.get(k), list)
                                         for k in ("images", "annotations", "categories"))


def find_coco_files(tree: SourceTree) -> tuple[dict[str, dict], list[str]]:
    """{relative path: parsed JSON} of the COCO detection files, and the JSON files that do not
    parse (named in an error if the source turns out to be COCO)."""
    found, broken = {}, []
    for rel in tree.candidates((".json",)):
        if posixpath.basename(rel) == "dataset.json":
            continue
        try:
            obj = json.loads(tree.read(rel))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            broken.append(f"{tree.full(rel)}: {exc}")
            continue
        if looks_like_coco(obj):
            found[rel] = obj
    return found, broken


def _splits(files: list[str]) -> dict[str, str]:
    """{file: split}; a lone file without a split word is train; two files for one split raise."""
    out, seen = {}, {}
    for rel in files:
        found = split_of_path(rel)
        if found is None:
            if len(files) > 1:
                raise SourceError(f"cannot tell the split of {rel} (several COCO files: name each "
                                  "after its split: train, val, test, calibration)")
            found = ("train", "")
        split = found[0]
        if split in seen:
            raise SourceError(f"two COCO files for split {split!r}: {seen[split]} and {rel}")
        seen[split] = rel
        out[rel] = split
    return out


def _categories(docs: dict[str, dict]) -> list[Category]:
    """The union of the files' categories, by id; one id with two names (or one name with two
    ids) raises naming the files."""
    by_id: dict[int, tuple[str, str]] = {}
    for rel, doc in docs.items():
        for cat in doc["categories"]:
            if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
                raise SourceError(f"{rel}: category {cat!r} needs an 'id' and a 'name'")
            try:
                cid = int(cat["id"])
            except (TypeError, ValueError):
                raise SourceError(f"{rel}: category id {cat['id']!r} is not an integer") from None
            name = str(cat["name"]).strip()
            if cid in by_id and by_id[cid][0] != name:
                raise SourceError(f"category id {cid} is {by_id[cid][0]!r} in {by_id[cid][1]} but "
                                  f"{name!r} in {rel}")
            by_id.setdefault(cid, (name, rel))
    names: dict[str, int] = {}
    for cid, (name, rel) in sorted(by_id.items()):
        if name in names:
            raise SourceError(f"{rel}: category name {name!r} has two ids, {names[name]} and {cid}")
        names[name] = cid
    return [Category(cid, name) for cid, (name, _) in sorted(by_id.items())]


def drop_placeholder_categories(docs: dict[str, dict], categories: list[Category],
                                issues: Issues) -> list[Category]:
    """Roboflow's exports add one category named after the project, the supercategory of all the
    others, with no annotations: drop it (with a warning), keep every other category."""
    used = {int(a["category_id"]) for d in docs.values() for a in d["annotations"]
            if isinstance(a, dict) and isinstance(a.get("category_id"), int)}
    supers = {str(c.get("supercategory", "")).strip() for d in docs.values() for c in d["categories"]
              if isinstance(c, dict)}
    kept = []
    for cat in categories:
        if cat.source_id not in used and cat.name in supers and len(categories) > 1:
            issues.warn("placeholder_category", f"category {cat.source_id} {cat.name!r} has no "
                        "annotations and is the supercategory of the others (Roboflow adds one): "
                        "left out")
            continue
        kept.append(cat)
    return kept


def _image_bases(rel: str, split_token: str) -> list[str]:
    """Folders to look for a file's images in, nearest first."""
    folder = posixpath.dirname(rel)
    parent = posixpath.dirname(folder)
    stem = posixpath.basename(rel).split(".")[0]
    bases = [folder, posixpath.join(parent, "images", stem), posixpath.join(parent, "images")]
    for token in dict.fromkeys([split_token, stem] if split_token else [stem]):
        bases += [posixpath.join(parent, token), posixpath.join(parent, "images", token),
                  posixpath.join("images", token), token]
    bases += [posixpath.join(folder, "images"), "images", parent, ""]
    return list(dict.fromkeys(posixpath.normpath(b) if b else "" for b in bases))


def _read_images(tree: SourceTree, rel: str, doc: dict, split: str, token: str) -> dict:
    """{image id: SourceImage} of one file; a duplicate id or a missing file raises."""
    where = tree.full(rel)
    images: dict = {}
    bases = _image_bases(rel, token)
    for n, img in enumerate(doc["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise SourceError(f"{where}: images[{n}] needs an 'id' and a 'file_name', got {img!r}")
        iid = img["id"]
        if iid in images:
            raise SourceError(f"{where}: duplicate image id {iid!r} (images[{n}], file "
                              f"{img['file_name']!r}, and {images[iid].where})")
        here = f"{where} image {iid!r} ({img['file_name']})"
        file = resolve_image(tree, str(img["file_name"]), bases, (token, split), here)
        size = [img.get("width"), img.get("height")]
        if any(v is not None and (not isinstance(v, (int, float)) or v <= 0) for v in size):
            raise SourceError(f"{here}: width/height {size} are not positive numbers")
        images[iid] = SourceImage(source_id=str(iid), file=file, where=here, split=split,
                                  width=int(size[0]) if size[0] else None,
                                  height=int(size[1]) if size[1] else None)
    return images


def _read_annotations(where: str, doc: dict, images: dict, known: set[int]) -> None:
    """Attach every annotation to its image; unknown image or category ids, bad bboxes raise."""
    for n, ann in enumerate(doc["annotations"]):
        aid = ann.get("id", f"#{n}") if isinstance(ann, dict) else f"#{n}"
        here = f"{where} annotation {aid}"
        if not isinstance(ann, dict):
            raise SourceError(f"{here}: not an object: {ann!r}")
        if ann.get("image_id") not in images:
            raise SourceError(f"{here} refers to image id {ann.get('image_id')!r}, which is not in "
                              "its images")
        image = images[ann["image_id"]]
        cid = ann.get("category_id")
        if not isinstance(cid, int) or cid not in known:
            raise SourceError(f"{here} (image {image.source_id}, {image.file}): unknown category id "
                              f"{cid!r}; the categories are {sorted(known)}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) for v in bbox)):
            raise SourceError(f"{here}: bbox {bbox!r} is not [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        image.objects.append(SourceObject(category=cid, box=(x, y, x + w, y + h),
                                          where=f"{here} (image {image.file})",
                                          iscrowd=bool(ann.get("iscrowd", 0)),
                                          difficult=bool(ann.get("difficult", 0)),
                                          source_id=ann.get("id")))


def read_coco(tree: SourceTree, issues: Issues, docs: dict[str, dict] | None = None) -> Source:
    """Every COCO file of the source → one Source (images in file order, files sorted)."""
    if docs is None:
        docs, broken = find_coco_files(tree)
        if broken:
            raise SourceError("JSON file(s) that do not parse: " + "; ".join(broken))
    if not docs:
        raise SourceError(f"no COCO detection JSON (images, annotations, categories) in {tree.uri}")
    splits = _splits(sorted(docs))
    categories = drop_placeholder_categories(docs, _categories(docs), issues)
    known = {c.source_id for c in categories}
    out: list[SourceImage] = []
    for rel in sorted(docs):
        split = splits[rel]
        token = (split_of_path(rel) or ("", ""))[1]
        images = _read_images(tree, rel, docs[rel], split, token)
        _read_annotations(tree.full(rel), docs[rel], images, known)
        out.extend(images.values())
    return Source(format="coco", uri=tree.uri, categories=categories, images=out,
                  files=[tree.full(rel) for rel in sorted(docs)])

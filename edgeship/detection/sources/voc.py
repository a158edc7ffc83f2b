"""Pascal VOC: one XML per image (LabelImg, CVAT, the VOC challenge), with the images in
JPEGImages/, images/ or beside the XML files, and optional ImageSets/Main/{train,val,trainval,
test}.txt lists.

Classes have names, not ids: ordered by a ``labels.txt`` / ``classes.txt`` /
``predefined_classes.txt`` at the root when there is one (an object of another name is then an
error), else alphabetically. ``<bndbox>`` corners are taken as pixel edges, as TF OD API's
create_pascal_tf_record does (no −1 shift). ``<difficult>1`` is kept as a flag.
"""
from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET

from edgeship.detection.sources.records import (
    Category,
    Issues,
    Source,
    SourceError,
    SourceImage,
    SourceObject,
)
from edgeship.detection.sources.splits import SPLIT_WORDS
from edgeship.detection.sources.tree import IMAGE_EXTENSIONS, SourceTree, resolve_image

CLASS_FILES = ("labels.txt", "classes.txt", "predefined_classes.txt")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "JPEGimages", "img", "imgs")


def parse_xml(tree: SourceTree, rel: str) -> ET.Element | None:
    """The XML's root when it is a VOC ``<annotation>``, else None; bad XML raises naming the
    file, line and column."""
    try:
        root = ET.fromstring(tree.read(rel))
    except ET.ParseError as exc:
        line, col = exc.position
        raise SourceError(f"{tree.full(rel)} line {line} column {col}: not well-formed XML "
                          f"({exc})") from None
    return root if root.tag == "annotation" else None


def find_voc_files(tree: SourceTree) -> dict[str, ET.Element]:
    out = {}
    for rel in tree.candidates((".xml",)):
        root = parse_xml(tree, rel)
        if root is not None:
            out[rel] = root
    return out


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(str(text).strip())
    except ValueError:
        raise SourceError(f"{where}: <{tag}> is {text!r}, not a number") from None


def _size(root: ET.Element, where: str, issues: Issues) -> tuple[int | None, int | None]:
    size = root.find("size")
    try:
        w, h = (int(float(size.findtext(t))) for t in ("width", "height"))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        w = h = 0
    if w > 0 and h > 0:
        return w, h
    issues.warn("voc_no_size", f"{where}: no <size> with a positive width and height: the size is "
                               "read from the image")
    return None, None


def _image_file(tree: SourceTree, rel: str, root: ET.Element, where: str) -> str:
    folder = posixpath.dirname(rel)
    parent = posixpath.dirname(folder)
    bases = [posixpath.join(parent, d) for d in IMAGE_DIRS] + [folder] + list(IMAGE_DIRS) + [""]
    bases = list(dict.fromkeys(posixpath.normpath(b) if b else "" for b in bases))
    name = (root.findtext("filename") or "").strip()
    stem = posixpath.splitext(posixpath.basename(rel))[0]
    names = [name] if name and name.lower().endswith(IMAGE_EXTENSIONS) else []
    names += [(name or stem) + ext for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
    names += [stem + ext for ext in (".jpg", ".jpeg", ".png")]
    for candidate in dict.fromkeys(names):
        for base in bases:
            found = tree.find(posixpath.join(base, candidate) if base else candidate)
            if found:
                return found
    return resolve_image(tree, names[0], bases, (), where)


def _objects(root: ET.Element, where: str) -> list[SourceObject]:
    out = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        here = f"{where} object {k}" + (f" ({name!r})" if name else "")
        if not name:
            raise SourceError(f"{here}: no <name>")
        box = obj.find("bndbox")
        if box is None:
            raise SourceError(f"{here}: no <bndbox>")
        coords = tuple(_number(box, t, here) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false")
        out.append(SourceObject(category=name, box=coords, where=here, difficult=difficult))
    return out


def _image_sets(tree: SourceTree) -> dict[str, str]:
    """{image stem: split} from ImageSets/Main/*.txt (train.txt + val.txt, else trainval.txt)."""
    lists: dict[str, list[str]] = {}
    for rel in tree.files:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[-3:-1] == ["ImageSets", "Main"] and rel.endswith(".txt"):
            name = parts[-1][:-4]
            if name in SPLIT_WORDS:
                lists[name] = [ln.split()[0] for ln in tree.read(rel).decode().splitlines()
                               if ln.strip()]
    if "train" in lists or "val" in lists:
        lists.pop("trainval", None)
    out: dict[str, str] = {}
    for name, stems in sorted(lists.items()):
        for stem in stems:
            out.setdefault(stem, SPLIT_WORDS[name])
    return out


def _class_order(tree: SourceTree) -> tuple[list[str] | None, str | None]:
    for name in CLASS_FILES:
        if tree.find(name):
            lines = [ln.strip() for ln in tree.read(tree.find(name)).decode().splitlines()]
            return [ln for ln in lines if ln], tree.full(tree.find(name))
    return None, None


def read_voc(tree: SourceTree, issues: Issues, docs: dict[str, ET.Element] | None = None) -> Source:
    docs = find_voc_files(tree) if docs is None else docs
    if not docs:
        raise SourceError(f"no Pascal VOC XML (<annotation>) in {tree.uri}")
    sets = _image_sets(tree)
    order, order_file = _class_order(tree)
    images, files_seen = [], {}
    for rel in sorted(docs):
        where = tree.full(rel)
        root = docs[rel]
        width, height = _size(root, where, issues)
        file = _image_file(tree, rel, root, where)
        if file in files_seen:
            raise SourceError(f"{where} and {files_seen[file]} both annotate {file} (duplicate image)")
        files_seen[file] = where
        stem = posixpath.splitext(posixpath.basename(rel))[0]
        split = sets.get(stem) if sets else "train"
        if sets and split is None:
            issues.warn("image_not_listed", f"{where}: {stem!r} is in no ImageSets/Main list: left out")
            continue
        images.append(SourceImage(source_id=stem, file=file, where=where, split=split,
                                  width=width, height=height, objects=_objects(root, where)))
    missing = sorted(set(sets) - {posixpath.splitext(posixpath.basename(r))[0] for r in docs})
    if missing:
        raise SourceError(f"ImageSets/Main lists {len(missing)} image(s) without an annotation XML: "
                          f"{missing[:5]}")
    names = sorted({o.category for img in images for o in img.objects})
    if order is not None:
        unknown = [o for img in images for o in img.objects if o.category not in order]
        if unknown:
            raise SourceError(f"{unknown[0].where}: class {unknown[0].category!r} is not in "
                              f"{order_file} ({order})")
        names = list(dict.fromkeys(order))
    return Source(format="voc", uri=tree.uri, categories=[Category(None, n) for n in names],
                  images=images, files=[tree.full(r) for r in sorted(docs)])

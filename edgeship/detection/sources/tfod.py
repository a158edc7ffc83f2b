"""TF Object Detection API TFRecords (tf.train.Example with the ``image/...`` keys) and their
``label_map.pbtxt``.

Record files: ``*.tfrecord``, ``*.tfrecords``, ``*.record``, ``*.tfrec``, sharded
``name.record-00000-of-00010``; the split comes from the name (``train.record``,
``valid.tfrecord``; a lone file without a split word is train). Boxes are normalized and on the
stored pixels (TensorFlow's decoders ignore EXIF orientation). The label map must name every
label the records use, with the name the records' ``class/text`` gives (when they give one).
"""
from __future__ import annotations

import re

from edgeship.detection.sources.records import (
    Category,
    Issues,
    Source,
    SourceError,
    SourceImage,
    SourceObject,
)
from edgeship.detection.sources.splits import split_of_path
from edgeship.detection.sources.tree import SourceTree
from edgeship.detection.tfrecord import iter_records

RECORD_FILE = re.compile(r"\.(tfrecords?|record|tfrec)(-\d+-of-\d+)?$", re.IGNORECASE)
_TOKEN = re.compile(r"""(?P<comment>\#[^\n]*)|(?P<punct>[{}:;,])"""
                    r"""|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
                    r"""|(?P<word>[-+.\w]+)|(?P<space>\s+)|(?P<bad>.)""")


def _tokens(text: str, where: str) -> list[tuple[str, int]]:
    """(token, line) pairs of a protobuf text file, comments skipped; a stray character (an
    unclosed quote) raises naming the line."""
    out, line = [], 1
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "bad":
            raise SourceError(f"{where} line {line}: unexpected {m.group()!r}")
        if m.lastgroup not in ("comment", "space"):
            out.append((m.group(), line))
        line += m.group().count("\n")
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1]) if token[:1] in "\"'" else token


def parse_label_map(text: str, where: str) -> list[Category]:
    """``item { id: 1 name: 'cat' display_name: 'Cat' }`` blocks → Categories, in id order.

    Strict: an item without id or name, a repeated id or name, an unknown top-level field or a
    syntax error raises naming the file and line. Fields other than id/name/display_name inside
    an item (keypoints, frequency, ...) are skipped. ``id: 0`` named ``background`` is skipped
    (TF OD API's reserved background entry)."""
    toks = _tokens(text, where)
    items, i = [], 0

    def expect(value: str) -> None:
        nonlocal i
        if i >= len(toks) or toks[i][0] != value:
            got = f"{toks[i][0]!r} at line {toks[i][1]}" if i < len(toks) else "the end of the file"
            raise SourceError(f"{where}: expected {value!r}, got {got}")
        i += 1

    while i < len(toks):
        tok, line = toks[i]
        if tok != "item":
            raise SourceError(f"{where} line {line}: expected 'item {{', got {tok!r}")
        i += 1
        if i < len(toks) and toks[i][0] == ":":
            i += 1
        expect("{")
        fields, depth, start = {}, 1, line
        while depth:
            if i >= len(toks):
                raise SourceError(f"{where} line {start}: item {{ is never closed")
            tok, line = toks[i]
            i += 1
            if tok in ("{", "}"):
                depth += 1 if tok == "{" else -1
            elif tok not in (":", ";", ","):
                nxt = toks[i][0] if i < len(toks) else None
                if nxt == "{":
                    continue
                after = toks[i + 1][0] if i + 1 < len(toks) else None
                if nxt != ":" or after in (None, "}", ":", ";", ","):
                    raise SourceError(f"{where} line {line}: expected '{tok}: value' or "
                                      f"'{tok} {{ ... }}'")
                if after == "{":
                    i += 1
                    continue
                if depth == 1:
                    if tok in fields:
                        raise SourceError(f"{where} line {line}: {tok!r} given twice in one item")
                    fields[tok] = (_unquote(after), line)
                i += 2
        items.append((fields, start))
    return _categories(items, where)


def _categories(items: list, where: str) -> list[Category]:
    out, ids, names = [], {}, {}
    for fields, line in items:
        if "id" not in fields or "name" not in fields:
            raise SourceError(f"{where} line {line}: item needs an id and a name, has {sorted(fields)}")
        try:
            cid = int(fields["id"][0])
        except ValueError:
            raise SourceError(f"{where} line {fields['id'][1]}: id {fields['id'][0]!r} is not an "
                              "integer") from None
        name = fields["name"][0]
        if cid == 0 and name.lower() == "background":
            continue
        if cid in ids:
            raise SourceError(f"{where} line {line}: id {cid} already used at line {ids[cid]}")
        if name in names:
            raise SourceError(f"{where} line {line}: name {name!r} already used at line {names[name]}")
        ids[cid], names[name] = line, line
        display = fields.get("display_name", (None,))[0]
        out.append(Category(cid, name, display))
    if not out:
        raise SourceError(f"{where}: no items")
    return sorted(out, key=lambda c: c.source_id)


def find_tfod_files(tree: SourceTree) -> tuple[list[str], list[str]]:
    """(record files, label-map files) of the source."""
    records = [f for f in tree.candidates() if RECORD_FILE.search(f)]
    maps = [f for f in tree.files if f.lower().endswith(".pbtxt")]
    return records, maps


def _label_map(tree: SourceTree, maps: list[str]) -> tuple[list[Category], str]:
    if not maps:
        raise SourceError(f"TFRecords in {tree.uri} but no label_map.pbtxt beside them")
    if len(maps) > 1:
        named = [m for m in maps if m.lower().endswith("label_map.pbtxt")]
        if len(named) != 1:
            raise SourceError(f"several label maps in {tree.uri}: {maps}; keep one")
        maps = named
    where = tree.full(maps[0])
    return parse_label_map(tree.read(maps[0]).decode("utf-8"), where), where


def _record_image(ex, where: str, split: str, names: dict[int, Category], map_where: str) -> SourceImage:
    """One tf.train.Example → SourceImage; labels outside the map, or texts that disagree, raise."""
    f = ex.features.feature

    def values(key: str, kind: str) -> list:
        return list(getattr(f[key], kind).value) if key in f else []

    encoded = values("image/encoded", "bytes_list")
    if not encoded:
        raise SourceError(f"{where}: no image/encoded")
    filename = (values("image/filename", "bytes_list") or [b""])[0].decode("utf-8", "replace")
    source_id = (values("image/source_id", "bytes_list") or [b""])[0].decode("utf-8", "replace")
    here = f"{where} ({filename or source_id or 'no filename'})"
    box = [values(f"image/object/bbox/{k}", "float_list") for k in ("xmin", "ymin", "xmax", "ymax")]
    labels = values("image/object/class/label", "int64_list")
    texts = [t.decode("utf-8", "replace") for t in values("image/object/class/text", "bytes_list")]
    crowd = values("image/object/is_crowd", "int64_list")
    difficult = values("image/object/difficult", "int64_list")
    n = len(box[0])
    if any(len(v) != n for v in box) or len(labels) != n or (texts and len(texts) != n):
        raise SourceError(f"{here}: bbox, label and text lists have different lengths "
                          f"({[len(v) for v in box]}, {len(labels)}, {len(texts)})")
    objects = []
    for k in range(n):
        label, obj = int(labels[k]), f"{here} object {k}"
        if label not in names:
            raise SourceError(f"{obj}: label {label} is not in the label map {map_where} (ids "
                              f"{sorted(names)}): the label map disagrees with the records")
        cat = names[label]
        if texts and texts[k] not in (cat.name, cat.display_name):
            raise SourceError(f"{obj}: class/text {texts[k]!r} but {map_where} names id {label} "
                              f"{cat.name!r}: the label map disagrees with the records")
        objects.append(SourceObject(category=label, where=obj,
                                    box=(box[0][k], box[1][k], box[2][k], box[3][k]),
                                    iscrowd=bool(crowd[k]) if len(crowd) == n else False,
                                    difficult=bool(difficult[k]) if len(difficult) == n else False))
    height, width = ((values(f"image/{k}", "int64_list") or [0])[0] for k in ("height", "width"))
    return SourceImage(source_id=source_id or filename, file=None, where=here, split=split,
                       width=int(width) or None, height=int(height) or None, objects=objects,
                       data=encoded[0], frame="raw", normalized=True)


def read_tfod(tree: SourceTree, issues: Issues) -> Source:
    from edgeship.base.tfcompat import tf

    records, maps = find_tfod_files(tree)
    if not records:
        raise SourceError(f"no TFRecord files (*.tfrecord, *.record) in {tree.uri}")
    categories, map_where = _label_map(tree, maps)
    names = {c.source_id: c for c in categories}
    splits: dict[str, str] = {}
    for rel in records:
        found = split_of_path(RECORD_FILE.sub("", rel)) or split_of_path(rel)
        if found is None and len({RECORD_FILE.sub("", r) for r in records}) > 1:
            raise SourceError(f"cannot tell the split of {rel} (several record files: name each "
                              "after its split: train, val, test, calibration)")
        splits[rel] = found[0] if found else "train"
    images = []
    for rel in records:
        path = tree.full(rel)
        for n, record in enumerate(iter_records(tree.read(rel), path)):
            try:
                ex = tf.train.Example.FromString(record)
            except Exception as exc:  # protobuf DecodeError
                raise SourceError(f"{path} record {n}: not a tf.train.Example ({exc})") from exc
            images.append(_record_image(ex, f"{path} record {n}", splits[rel], names, map_where))
    return Source(format="tfod", uri=tree.uri, categories=categories, images=images,
                  files=[tree.full(r) for r in records] + [map_where])

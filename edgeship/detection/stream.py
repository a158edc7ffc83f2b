"""Streaming input for training and QAT: tf.data over a Dataset artifact's TFRecord shards (or its
COCO images), never a whole split in memory.

Pipeline (``training_dataset``): the split's shards (dataset.json ``splits.{split}.shards``; the
single ``tfrecord/{split}.tfrecord`` of older artifacts) → shuffled per epoch with the seed →
``interleave`` of ``TFRecordDataset`` over ``CYCLE_LENGTH`` shards at a time (parallel, ordered
for a given seed) → shuffle buffer of ``SHUFFLE_BUFFER`` *serialized* records (small: decoding
comes after) → one parallel map: parse, decode (JPEG: ``INTEGER_ACCURATE``, as Pillow decodes;
PNG and others: ``decode_image``), crowd regions dropped, resize under the dataset's policy
(``stretch`` | ``letterbox``, as edgeship.detection.sources.images does: bilinear, antialiased
when shrinking like Pillow's, letterbox placement and box mapping of ``resize_transform`` /
``boxes_to_input``), ``_augment`` (training), ``assign_targets`` → batch → prefetch. Evaluation
order (``training=False``) reads the shards one after another: the same order as ``load_split``.

Memory: the shuffle buffer (records), ``prefetch`` batches and the in-flight map calls; nothing
grows with the split. gs:// shards are read by TensorFlow's own GCS file system; with
``STORAGE_EMULATOR_HOST`` set (the local stack: TF's GCS client cannot be pointed at an emulator)
they are streamed through google-cloud-storage in a generator instead, one record at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edgeship.base import storage
from edgeship.contracts.dataset import join_uri, read_dataset_info
from edgeship.detection.dataset import open_shard, read_coco
from edgeship.detection.model import ModelConfig
from edgeship.detection.sources.images import LETTERBOX_FILL
from edgeship.detection.tfrecord import iter_record_stream
from edgeship.detection.train_data import LossConfig, _augment, assign_targets

SHUFFLE_BUFFER = 1024   # serialized records shuffled before decoding (~10 KB each at 160 px)
CYCLE_LENGTH = 4        # shards read at the same time while training


@dataclass
class SplitSource:
    """Where a split's records come from and how its images reach the model input."""

    uri: str
    split: str
    fmt: str                       # "tfrecord" | "coco"
    images: int                    # after max_images
    num_classes: int
    policy: str = "stretch"
    fill: int = LETTERBOX_FILL
    limited: bool = False          # max_images cut the split: read in order, take the first
    files: list[str] = field(default_factory=list)   # tfrecord shards
    coco: tuple | None = None      # (paths, image ids, pixel boxes [N][M,4], labels [N][M]) for coco


def open_split(uri: str, split: str, *, fmt: str = "tfrecord", max_images: int | None = None,
               num_classes: int | None = None, policy: str | None = None) -> SplitSource:
    """The split's source (shard list, or the COCO annotations' per-image rows), checked: raises
    ValueError for a split dataset.json does not list, an empty one, or an unknown format."""
    uri = str(uri)
    info = read_dataset_info(uri)
    if info.splits and split not in info.splits:
        raise ValueError(f"no split {split!r} in {uri}; its dataset.json lists {sorted(info.splits)}")
    resize = info.resize
    src = SplitSource(uri, split, fmt, 0, int(num_classes or info.num_classes),
                      policy or resize.get("policy", "stretch"), int(resize.get("fill", LETTERBOX_FILL)))
    if fmt == "tfrecord":
        src.files, total = info.shard_uris(split), info.images(split)
    elif fmt == "coco":
        src.coco = _coco_rows(uri, split)
        total = len(src.coco[0])
    else:
        raise ValueError(f"unknown dataset format {fmt!r}; expected 'tfrecord' or 'coco'")
    src.images = min(total, max_images) if max_images else total
    src.limited = bool(max_images) and max_images < total
    if src.images == 0:
        raise ValueError(f"split {split!r} of {uri} ({fmt}) is empty")
    return src


def _coco_rows(uri: str, split: str) -> tuple:
    """Per image of the COCO split: file URI, id, target boxes in pixels (x0, y0, x1, y1) and
    labels (crowd regions left out). Annotations only: no image is read here."""
    _, coco = read_coco(uri, split)
    by_image: dict = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a)
    paths, ids, boxes, labels = [], [], [], []
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        paths.append(join_uri(uri, "coco", "images", split, img["file_name"]))
        ids.append(str(img["id"]))
        boxes.append([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (a["bbox"] for a in anns)])
        labels.append([int(a["category_id"]) for a in anns])
    return paths, ids, boxes, labels


def _emulated(uri: str) -> bool:
    """gs:// under the local emulator: TF's GCS file system cannot reach it (see the docstring)."""
    return storage.is_gcs(uri) and bool(os.environ.get("STORAGE_EMULATOR_HOST"))


def _shard_reader(src: SplitSource) -> Any:
    """path tensor → Dataset of serialized records of that shard."""
    from edgeship.base.tfcompat import tf

    if not any(_emulated(f) for f in src.files):
        return lambda path: tf.data.TFRecordDataset(path, buffer_size=1 << 20)

    def records(path: bytes):
        name = path.decode()
        with open_shard(name) as stream:
            yield from iter_record_stream(stream, name)

    spec = tf.TensorSpec([], tf.string)
    return lambda path: tf.data.Dataset.from_generator(records, args=(path,), output_signature=spec)


def _elements(src: SplitSource, *, training: bool, seed: int | None, repeat: bool) -> Any:
    """Serialized records (tfrecord) or per-image rows (coco), before decoding: in order, or
    interleaved and shuffled when training; ``repeat`` loops over the split."""
    from edgeship.base.tfcompat import tf

    if src.fmt == "coco":
        paths, ids, boxes, labels = src.coco
        ds = tf.data.Dataset.from_tensor_slices((
            tf.constant(paths), tf.constant(ids),
            tf.ragged.constant(boxes, dtype=tf.float32, ragged_rank=1, inner_shape=(4,)),
            tf.ragged.constant(labels, dtype=tf.int32)))
        ds = ds.take(src.images)
    else:
        read = _shard_reader(src)
        files = tf.data.Dataset.from_tensor_slices(src.files)
        if training and not src.limited and len(src.files) > 1:
            files = files.shuffle(len(src.files), seed=seed, reshuffle_each_iteration=True)
            ds = files.interleave(read, cycle_length=min(CYCLE_LENGTH, len(src.files)), block_length=1,
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
        else:
            ds = files.flat_map(read)
        if src.limited:
            ds = ds.take(src.images)
    if repeat:
        ds = ds.repeat()
    if training:
        buffer = src.images if src.fmt == "coco" else min(SHUFFLE_BUFFER, src.images)
        ds = ds.shuffle(max(1, buffer), seed=seed, reshuffle_each_iteration=True)
    return ds


def decode_image(encoded: Any) -> Any:
    """uint8 [h, w, 3] from encoded bytes: JPEG decoded as Pillow does (accurate integer DCT,
    fancy upsampling), anything else by ``tf.io.decode_image``; gray becomes RGB."""
    from edgeship.base.tfcompat import tf

    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))


def _features() -> dict:
    from edgeship.base.tfcompat import tf

    var = tf.io.VarLenFeature
    return {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "image/object/bbox/xmin": var(tf.float32), "image/object/bbox/ymin": var(tf.float32),
            "image/object/bbox/xmax": var(tf.float32), "image/object/bbox/ymax": var(tf.float32),
            "image/object/class/label": var(tf.int64), "image/object/is_crowd": var(tf.int64)}


def parse_record(record: Any) -> tuple[Any, Any, Any, Any]:
    """(image uint8 [h,w,3], image id, boxes [N,4] normalized (ymin, xmin, ymax, xmax) clipped to
    0..1, labels int32 [N]) of one serialized tf.train.Example; crowd regions are not targets."""
    from edgeship.base.tfcompat import tf

    f = tf.io.parse_single_example(record, _features())
    dense = {k: tf.sparse.to_dense(v) for k, v in f.items() if isinstance(v, tf.SparseTensor)}
    boxes = tf.stack([dense[f"image/object/bbox/{k}"] for k in ("ymin", "xmin", "ymax", "xmax")], 1)
    labels = tf.cast(dense["image/object/class/label"], tf.int32)
    n = tf.shape(labels)[0]
    crowd = dense["image/object/is_crowd"]
    crowd = tf.pad(crowd, [[0, tf.maximum(0, n - tf.shape(crowd)[0])]])[:n]
    keep = tf.equal(crowd, 0)
    boxes = tf.clip_by_value(tf.boolean_mask(boxes, keep), 0.0, 1.0)
    return decode_image(f["image/encoded"]), f["image/source_id"], boxes, tf.boolean_mask(labels, keep)


def _coco_row(src: SplitSource) -> Any:
    from edgeship.base.tfcompat import tf

    def read(path):
        if any(_emulated(p) for p in src.coco[0][:1]):
            return tf.py_function(lambda p: storage.read_bytes(p.numpy().decode()), [path], tf.string)
        return tf.io.read_file(path)

    def parse(path, image_id, boxes_px, labels):
        image = decode_image(read(path))
        shape = tf.cast(tf.shape(image), tf.float32)
        h, w = shape[0], shape[1]
        boxes = tf.reshape(boxes_px, [-1, 4])
        x0, y0, x1, y1 = tf.unstack(boxes, axis=1)
        norm = tf.stack([y0 / h, x0 / w, y1 / h, x1 / w], 1)
        return image, image_id, tf.clip_by_value(norm, 0.0, 1.0), tf.reshape(labels, [-1])

    return parse


def resize_bilinear(image: Any, height: Any, width: Any) -> Any:
    """uint8 image resized like Pillow's BILINEAR (triangle filter widened when shrinking), rounded."""
    from edgeship.base.tfcompat import tf

    out = tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def to_input(image: Any, boxes: Any, size: Sequence[int], policy: str = "stretch",
             fill: int = LETTERBOX_FILL) -> tuple[Any, Any]:
    """uint8 [h,w,3] and normalized boxes → uint8 [H,W,3] and boxes on it, under ``policy``:
    ``resize_image`` + ``boxes_to_input`` of edgeship.detection.sources.images, in TensorFlow."""
    from edgeship.base.tfcompat import tf

    dh, dw = int(size[0]), int(size[1])
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    if policy == "stretch":
        nh, nw = tf.constant(dh), tf.constant(dw)
    else:
        s = tf.minimum(dh / tf.cast(h, tf.float64), dw / tf.cast(w, tf.float64))
        nh = tf.cast(tf.clip_by_value(tf.round(tf.cast(h, tf.float64) * s), 1, dh), tf.int32)
        nw = tf.cast(tf.clip_by_value(tf.round(tf.cast(w, tf.float64) * s), 1, dw), tf.int32)
    scaled = tf.cond(tf.logical_and(tf.equal(h, nh), tf.equal(w, nw)), lambda: image,
                     lambda: resize_bilinear(image, nh, nw))
    if policy == "stretch":
        return tf.ensure_shape(scaled, [dh, dw, 3]), boxes
    top, left = (dh - nh) // 2, (dw - nw) // 2
    out = tf.pad(scaled, [[top, dh - nh - top], [left, dw - nw - left], [0, 0]], constant_values=fill)
    f64 = [tf.cast(v, tf.float64) for v in (nh, nw, top, left)]
    scale = tf.stack([f64[0] / dh, f64[1] / dw, f64[0] / dh, f64[1] / dw])
    shift = tf.stack([f64[2] / dh, f64[3] / dw, f64[2] / dh, f64[3] / dw])
    boxes = tf.cast(tf.cast(boxes, tf.float64) * scale + shift, tf.float32)
    return tf.ensure_shape(out, [dh, dw, 3]), boxes


def _decoder(src: SplitSource, size: Sequence[int]) -> Any:
    """element → (image uint8 [H,W,3] at the input, image id, boxes [N,4], labels [N]); a class id
    outside 1..K stops the pipeline with an InvalidArgumentError naming the image."""
    from edgeship.base.tfcompat import tf

    parse = _coco_row(src) if src.fmt == "coco" else parse_record
    k = src.num_classes

    def decode(*element):
        image, image_id, boxes, labels = parse(*element)
        ok = tf.reduce_all(tf.logical_and(labels >= 1, labels <= k))
        message = f"class id outside the label map (ids 1..{k}) in split {src.split!r} of {src.uri}, image"
        with tf.control_dependencies([tf.debugging.Assert(ok, [message, image_id, "labels", labels])]):
            image, boxes = to_input(image, boxes, size, src.policy, src.fill)
        return image, image_id, boxes, labels

    return decode


def examples(src: SplitSource, size: Sequence[int], *, training: bool = False, seed: int | None = None,
             repeat: bool = False) -> Any:
    """Dataset of {"image": uint8 [H,W,3], "image_id": string, "boxes": float32 [N,4] on the input,
    "labels": int32 [N]}, one per image (targets only), in split order unless ``training``."""
    from edgeship.base.tfcompat import tf

    decode = _decoder(src, size)

    def as_dict(*element):
        image, image_id, boxes, labels = decode(*element)
        return {"image": image, "image_id": image_id, "boxes": boxes, "labels": labels}

    ds = _elements(src, training=training, seed=seed, repeat=repeat)
    return ds.map(as_dict, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_dataset(src: SplitSource, anchors: np.ndarray, config: ModelConfig, *, batch_size: int,
                     training: bool, seed: int = 0, loss_config: LossConfig | None = None,
                     scale_range: tuple[float, float] = (0.8, 1.15), repeat: bool = False) -> Any:
    """(images float32 [B,H,W,3] 0..255, targets {"cls", "weight", "box"}) batches streamed from
    ``src``: what ``train_data.make_dataset`` gives for the same images (training shuffles,
    augments, drops the last partial batch; ``repeat`` loops over epochs without a pause)."""
    from edgeship.base.tfcompat import tf

    loss_config = loss_config or LossConfig()
    h, w = config.input_size
    decode = _decoder(src, (h, w))

    def prep(*element):
        image, _, boxes, labels = decode(*element)
        boxes = tf.concat([boxes, tf.zeros([1, 4], tf.float32)], 0)   # one padding row: no image
        labels = tf.concat([labels, tf.zeros([1], tf.int32)], 0)       # is ever without a column
        if training:
            image, boxes, labels = _augment(image, boxes, labels, (h, w), None, tf, scale_range)
        else:
            image = tf.cast(image, tf.float32)
        return image, assign_targets(boxes, labels, anchors, config, loss_config)

    ds = _elements(src, training=training, seed=seed, repeat=repeat)
    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training and src.images >= batch_size)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def _options() -> Any:
    """Parallelism across images, none inside one image's ops: the input pipeline does not
    compete with the training step's own threads for the cores (measured on 2 cores: ~2 % faster)."""
    from edgeship.base.tfcompat import tf

    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return options


def eval_dataset(src: SplitSource, size: Sequence[int], *, batch_size: int = 64) -> Any:
    """(images float32 [B,H,W,3], {"image_id" [B], "boxes" [B,M,4], "labels" [B,M] (0 = padding)})
    batches in split order, ground truth on the input: for Keras-model mAP (training.evaluate_map)."""
    from edgeship.base.tfcompat import tf

    def split_out(ex):
        return tf.cast(ex["image"], tf.float32), {k: ex[k] for k in ("image_id", "boxes", "labels")}

    ds = examples(src, size).map(split_out, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def first_images(src: SplitSource, size: Sequence[int], count: int) -> np.ndarray:
    """uint8 [n, H, W, 3]: the first ``count`` images of the split at the input, unaugmented
    (QAT's range calibration)."""
    batch = next(iter(examples(src, size).map(lambda ex: ex["image"]).batch(count)))
    return batch.numpy()

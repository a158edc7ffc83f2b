"""The streaming input (edgeship.detection.stream): the same images and targets as the in-memory
path, the resize policies as edgeship.detection.sources.images applies them, shards read whole
and once per epoch, old single-file artifacts, bad labels, gs:// through the local emulator."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader
from edgeship.detection import stream, train_data, training
from edgeship.detection.model import ModelConfig, build_detector, make_anchors
from edgeship.detection.sources.images import boxes_to_input, resize_image
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from tests.detection import source_fixtures as fx


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated dataset whose train split spans 3 shards (5 + 5 + 3 records)."""
    from components.data.core import generate_dataset

    mp = pytest.MonkeyPatch()
    mp.setattr(dataset_contract, "SHARD_MAX_EXAMPLES", 5)
    try:
        root = tmp_path_factory.mktemp("stream") / "dataset"
        generate_dataset(root, seed=4, train=13, val=6, calibration=3, image_size=96)
    finally:
        mp.undo()
    return root


@pytest.fixture(scope="module")
def letterboxed(tmp_path_factory):
    """64 x 48 COCO images with a crowd region, imported with the letterbox policy at 64."""
    root = tmp_path_factory.mktemp("stream_lb")
    out = root / "art"
    import_dataset(fx.write_coco(root / "src", crowd=True), out, ImportOptions(resize="letterbox", input_size=64))
    return out


def _batches_equal(a, b, *, image_atol: int = 0) -> None:
    np.testing.assert_allclose(a[0].numpy(), b[0].numpy(), atol=image_atol)
    for key in ("cls", "weight", "box"):
        np.testing.assert_array_equal(a[1][key].numpy(), b[1][key].numpy(), err_msg=key)


@pytest.mark.parametrize("fmt", ["tfrecord", "coco"])
def test_first_batch_equals_the_in_memory_path(generated, fmt):
    cfg = ModelConfig(input_size=(96, 96))
    anchors = make_anchors(cfg)
    data = train_data.load_training_data(str(generated), "train", (96, 96), 5)
    want = next(iter(train_data.make_dataset(data, anchors, cfg, batch_size=8, training=False)))
    src = stream.open_split(str(generated), "train", fmt=fmt)
    got = next(iter(stream.training_dataset(src, anchors, cfg, batch_size=8, training=False)))
    _batches_equal(want, got)            # same decoder (accurate DCT), same targets, bit for bit
    assert src.images == 13 and len(src.files if fmt == "tfrecord" else src.coco[0]) == (3 if fmt == "tfrecord" else 13)


def test_letterbox_and_crowd_regions_give_the_in_memory_targets(letterboxed):
    cfg = ModelConfig(input_size=(64, 64), num_classes=3, labels=["person", "car", "toothbrush"],
                      resize="letterbox")
    anchors = make_anchors(cfg)
    data = train_data.load_training_data(str(letterboxed), "train", (64, 64), 3, resize="letterbox")
    n = len(data)
    want = next(iter(train_data.make_dataset(data, anchors, cfg, batch_size=n, training=False)))
    src = stream.open_split(str(letterboxed), "train", policy="letterbox")
    got = next(iter(stream.training_dataset(src, anchors, cfg, batch_size=n, training=False)))
    _batches_equal(want, got)            # 64 x 48 → 64 x 64: scale 1, padding only: exact
    assert (got[0].numpy()[:, :8] == 114).all()


@pytest.mark.parametrize("src_size, dst_size", [((48, 64), (64, 64)), ((480, 640), (160, 160)),
                                                ((333, 517), (96, 128)), ((100, 37), (160, 160)),
                                                ((1024, 768), (320, 320))])
@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
def test_resize_matches_resize_image_within_a_pixel(src_size, dst_size, policy):
    from edgeship.base.tfcompat import tf

    rng = np.random.default_rng(0)
    h, w = src_size
    image = (rng.uniform(0, 128, (h, w, 3)) + np.linspace(0, 120, w)[None, :, None]).astype(np.uint8)
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]], np.float32)
    ref, transform = resize_image(image, dst_size, policy)
    got, got_boxes = stream.to_input(tf.constant(image), tf.constant(boxes), dst_size, policy)
    diff = np.abs(got.numpy().astype(int) - ref.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.25       # Pillow and TF round differently, at most 1 level
    want = boxes_to_input(boxes, transform)
    np.testing.assert_allclose(got_boxes.numpy() * [*dst_size, *dst_size], want * [*dst_size, *dst_size], atol=1e-3)


def test_training_reads_every_record_once_per_epoch_in_a_seeded_order(generated):
    ids = [ex.image_id for ex in dataset_reader.load_split(generated, "train", "tfrecord")]
    src = stream.open_split(str(generated), "train")

    def epoch(seed):
        ds = stream.examples(src, (96, 96), training=True, seed=seed)
        return [v.decode() for v in ds.map(lambda ex: ex["image_id"]).as_numpy_iterator()]

    first = epoch(7)
    assert sorted(first) == sorted(ids) and first != ids       # all of them, shuffled
    assert epoch(7) == first                                   # the seed fixes the order
    ordered = [v.decode() for v in stream.examples(src, (96, 96)).map(lambda ex: ex["image_id"]).as_numpy_iterator()]
    assert ordered == ids                                      # evaluation order = load_split's


def test_max_images_takes_the_first_images(generated):
    src = stream.open_split(str(generated), "train", max_images=7)
    assert src.images == 7 and src.limited
    got = list(stream.examples(src, (96, 96), training=True, seed=0).map(lambda ex: ex["image_id"]).as_numpy_iterator())
    assert sorted(int(v) for v in got) == list(range(7))


def test_old_single_file_artifacts_are_still_read(generated, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(generated, old)
    meta = json.loads((old / "dataset.json").read_text())
    for split, entry in meta["splits"].items():
        with open(old / dataset_contract.legacy_tfrecord(split), "wb") as f:
            for rel in entry.pop("shards"):
                f.write((old / rel).read_bytes())
                (old / rel).unlink()
    (old / "dataset.json").write_text(json.dumps(meta))
    new = dataset_reader.load_split(generated, "train", "tfrecord")
    assert [e.image_id for e in dataset_reader.load_split(old, "train", "tfrecord")] == [e.image_id for e in new]
    src = stream.open_split(str(old), "train")
    assert src.files == [f"{old}/tfrecord/train.tfrecord"]
    assert len(list(stream.examples(src, (96, 96)))) == 13


def test_iter_split_decodes_one_image_at_a_time(generated):
    it = dataset_reader.iter_split(generated, "train", "tfrecord")
    first = next(it)
    assert first.image.shape == (96, 96, 3) and first.image_id == "0"
    assert len(list(it)) == 12


def test_a_class_id_outside_the_label_map_stops_the_stream(generated):
    from edgeship.base.tfcompat import tf

    src = stream.open_split(str(generated), "val", num_classes=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the label map"):
        list(stream.examples(src, (96, 96)))


def test_a_shard_path_leaving_the_dataset_is_refused(generated, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(generated, bad)
    meta = json.loads((bad / "dataset.json").read_text())
    meta["splits"]["val"]["shards"] = ["tfrecord/../../etc/passwd.tfrecord"]
    (bad / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"splits\.val\.shards"):
        dataset_contract.read_dataset_info(bad)


def test_streamed_evaluation_sees_the_in_memory_ground_truth(generated):
    cfg = ModelConfig(input_size=(96, 96), alpha=0.35)
    examples = dataset_reader.load_split(generated, "val", "tfrecord")
    seen = []
    for images, gt in stream.eval_dataset(stream.open_split(str(generated), "val"), (96, 96), batch_size=4):
        for i, (image_id, boxes, labels) in enumerate(zip(gt["image_id"].numpy(), gt["boxes"].numpy(),
                                                          gt["labels"].numpy())):
            ex = examples[len(seen)]
            assert image_id.decode() == ex.image_id
            np.testing.assert_array_equal(images[i].numpy(), ex.image.astype(np.float32))
            np.testing.assert_allclose(boxes[labels > 0], ex.boxes, atol=1e-6)
            seen.append(image_id)
    assert len(seen) == 6
    model = build_detector(cfg)
    data = train_data.load_training_data(str(generated), "val", (96, 96), 5)
    streamed = training.evaluate_map(model, stream.eval_dataset(stream.open_split(str(generated), "val"), (96, 96)),
                                     cfg, make_anchors(cfg))
    assert streamed == training.evaluate_map(model, data, cfg, make_anchors(cfg))


@pytest.mark.stack
def test_gcs_shards_stream_through_the_emulator(generated, clean_stack):
    from edgeship.base import storage

    uri = "gs://edgeship/datasets/stream"
    storage.upload_dir(generated, uri)
    cfg = ModelConfig(input_size=(96, 96))
    anchors = make_anchors(cfg)
    local = stream.training_dataset(stream.open_split(str(generated), "train"), anchors, cfg,
                                    batch_size=13, training=False)
    remote = stream.training_dataset(stream.open_split(uri, "train"), anchors, cfg, batch_size=13, training=False)
    _batches_equal(next(iter(local)), next(iter(remote)))
    shuffled = stream.examples(stream.open_split(uri, "train"), (96, 96), training=True, seed=1)
    assert sorted(int(v) for v in shuffled.map(lambda ex: ex["image_id"]).as_numpy_iterator()) == list(range(13))
    remote_ids = [e.image_id for e in dataset_reader.iter_split(uri, "train", "tfrecord")]
    assert remote_ids == [str(i) for i in range(13)]

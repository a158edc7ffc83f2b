"""Fixed seed → identical bytes: across processes, with worker processes, and TF reads our TFRecords."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from components.data import core
from edgeship.contracts import dataset as dataset_contract

ROOT = Path(__file__).resolve().parents[3]


def test_fingerprint_is_the_same_in_a_fresh_process(small_dataset, tmp_path, SMALL):
    # the feature map of a tf.train.Example serialized by TF changes order between processes;
    # ours must not: a second interpreter must write the very same bytes
    code = ("import sys; from components.data import core; "
            f"print(core.generate_dataset(sys.argv[1], **{SMALL!r}).fingerprint)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fresh")], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == dataset_contract.read_dataset_info(small_dataset).fingerprint
    info = dataset_contract.read_dataset_info(small_dataset)
    for split in dataset_contract.SPLITS:
        assert info.shards(split) == [f"tfrecord/{split}-00000-of-00001.tfrecord"]
        for rel in info.shards(split):
            assert (tmp_path / "fresh" / rel).read_bytes() == (small_dataset / rel).read_bytes()


def test_worker_processes_write_the_same_bytes(small_dataset, tmp_path, SMALL):
    info = core.generate_dataset(tmp_path / "pool", **SMALL, workers=2)
    assert info.fingerprint == dataset_contract.read_dataset_info(small_dataset).fingerprint


def test_fingerprint_covers_every_file(dataset_copy):
    before = core.fingerprint_dir(dataset_copy)
    (dataset_copy / "labels.txt").write_text("other\n")
    assert core.fingerprint_dir(dataset_copy) != before


def test_tensorflow_reads_our_tfrecords(small_dataset, SMALL):
    """Framing and CRCs as TF writes them: tf.data.TFRecordDataset + parse_single_example."""
    from edgeship.base.tfcompat import tf

    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
    }
    coco = json.loads((small_dataset / "coco/annotations/val.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    records = list(tf.data.TFRecordDataset(str(small_dataset / "tfrecord/val-00000-of-00001.tfrecord")))
    assert len(records) == SMALL["val"]
    for n, record in enumerate(records):
        ex = tf.io.parse_single_example(record, spec)
        img = coco["images"][n]
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        assert ex["image/filename"].numpy().decode() == img["file_name"]
        assert ex["image/format"].numpy() == b"jpeg"
        assert int(ex["image/height"]) == img["height"] and int(ex["image/width"]) == img["width"]
        assert ex["image/encoded"].numpy() == (small_dataset / "coco/images/val" / img["file_name"]).read_bytes()
        labels = tf.sparse.to_dense(ex["image/object/class/label"]).numpy().tolist()
        assert labels == [a["category_id"] for a in anns]
        texts = [t.decode() for t in tf.sparse.to_dense(ex["image/object/class/text"]).numpy()]
        assert texts == [names[a["category_id"]] for a in anns]
        xmin = tf.sparse.to_dense(ex["image/object/bbox/xmin"]).numpy()
        np.testing.assert_allclose(xmin * img["width"], [a["bbox"][0] for a in anns], atol=1e-3)

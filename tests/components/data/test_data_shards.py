"""TFRecord shards: tfrecord/{split}-{i:05d}-of-{n:05d}.tfrecord, cut by record count or size, listed
in dataset.json, byte-stable (same fingerprint) with any number of worker processes."""
from __future__ import annotations

import pytest

from components.data import core
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader
from edgeship.detection.tfrecord import ShardWriter, iter_records
from tests.detection import source_fixtures as fx


def _counts(root, info, split):
    return [len(list(iter_records((root / rel).read_bytes(), rel))) for rel in info.shards(split)]


def test_generated_splits_are_cut_into_listed_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_contract, "SHARD_MAX_EXAMPLES", 5)
    info = core.generate_dataset(tmp_path / "a", seed=1, train=13, val=5, calibration=2, image_size=64)
    assert info.shards("train") == [f"tfrecord/train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert info.shards("val") == ["tfrecord/val-00000-of-00001.tfrecord"]
    assert _counts(tmp_path / "a", info, "train") == [5, 5, 3]
    assert sorted(p.name for p in (tmp_path / "a/tfrecord").iterdir()) == sorted(
        rel.split("/")[1] for s in dataset_contract.SPLITS for rel in info.shards(s))   # no .part left
    again = core.generate_dataset(tmp_path / "b", seed=1, train=13, val=5, calibration=2, image_size=64, workers=2)
    assert again.fingerprint == info.fingerprint
    ids = [e.image_id for e in dataset_reader.load_split(tmp_path / "a", "train", "tfrecord")]
    assert ids == [str(i) for i in range(13)]


def test_a_shard_closes_at_the_byte_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_contract, "SHARD_MAX_BYTES", 3000)   # ~1-2 small JPEG records each
    info = core.generate_dataset(tmp_path / "a", seed=1, train=6, val=1, calibration=1, image_size=64)
    counts = _counts(tmp_path / "a", info, "train")
    assert sum(counts) == 6 and len(counts) > 1
    for rel in info.shards("train")[:-1]:
        assert (tmp_path / "a" / rel).stat().st_size >= 3000


def test_imports_write_shards_too(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_contract, "SHARD_MAX_EXAMPLES", 4)
    src = fx.write_coco(tmp_path / "src", train=9, val=6)
    info = core.materialize(str(src), tmp_path / "art", core.import_options(val_fraction=0.15))
    for split in info.splits:
        assert sum(_counts(tmp_path / "art", info, split)) == info.images(split)
        assert all(rel.startswith(f"tfrecord/{split}-") for rel in info.shards(split))
    coco = dataset_reader.load_split(tmp_path / "art", "train", "coco")
    tfr = dataset_reader.load_split(tmp_path / "art", "train", "tfrecord")
    assert [e.image_id for e in coco] == [e.image_id for e in tfr]


def test_shard_writer_writes_one_empty_shard_for_no_records(tmp_path):
    with ShardWriter(tmp_path, "test") as w:
        pass
    assert w.shards == ["tfrecord/test-00000-of-00001.tfrecord"]
    assert (tmp_path / w.shards[0]).read_bytes() == b""


def test_a_failed_write_leaves_no_finished_shard(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "train", max_examples=1) as w:
        w.write(b"a")
        w.write(b"b")
        raise RuntimeError("boom")
    assert not list((tmp_path / "tfrecord").glob("*.tfrecord"))

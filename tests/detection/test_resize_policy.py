"""The dataset's resize policy (stretch | letterbox) is kept by the model and applied the same way
in training (targets) and evaluation (detections mapped back to the source image)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeship.detection.coco import Detections
from edgeship.detection.dataset import load_split
from edgeship.detection.model import ModelConfig
from edgeship.detection.runners import fit_image, to_source_boxes
from edgeship.detection.sources.images import LETTERBOX_FILL
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from edgeship.detection.train_data import load_training_data
from tests.detection import source_fixtures as fx


@pytest.fixture(scope="module")
def letterboxed(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    src = fx.write_coco(root / "src", crowd=False)  # 64 x 48 images
    out = root / "art"
    import_dataset(src, out, ImportOptions(resize="letterbox", input_size=64))
    return out


def test_training_targets_follow_the_letterboxed_image(letterboxed):
    examples = load_split(str(letterboxed), "train")
    data = load_training_data(str(letterboxed), "train", (64, 64), 3, resize="letterbox")
    # 64 x 48 into 64 x 64: 8 padded rows above and below, boxes' y squeezed into rows 8..56
    assert (data.images[:, :8] == LETTERBOX_FILL).all() and (data.images[:, -8:] == LETTERBOX_FILL).all()
    for i, ex in enumerate(examples):
        n = len(ex.labels)
        got = data.boxes[i, :n]
        want = np.asarray(ex.boxes).reshape(-1, 4) * [48 / 64, 1, 48 / 64, 1] + [8 / 64, 0, 8 / 64, 0]
        np.testing.assert_allclose(got, want, atol=1e-6)
    stretched = load_training_data(str(letterboxed), "train", (64, 64), 3, resize="stretch")
    assert not np.allclose(stretched.boxes, data.boxes)  # the policy changes the targets


def test_detections_map_back_to_the_source_image():
    image = np.zeros((48, 64, 3), np.uint8)
    pixels, transform = fit_image(image, (64, 64), "letterbox")
    assert pixels.shape == (64, 64, 3) and transform is not None
    source_box = np.array([[0.25, 0.1, 0.75, 0.5]], np.float32)
    on_input = source_box * [48 / 64, 1, 48 / 64, 1] + [8 / 64, 0, 8 / 64, 0]
    back = to_source_boxes(Detections(on_input.astype(np.float32), np.array([1]), np.array([0.9])), transform)
    np.testing.assert_allclose(back.boxes, source_box, atol=1e-6)
    stretched, none = fit_image(image, (64, 64), "stretch")
    assert none is None and stretched.shape == (64, 64, 3)


def test_model_config_keeps_the_policy(tmp_path):
    config = ModelConfig(input_size=(96, 96), resize="letterbox")
    config.save(tmp_path / "model_config.json")
    assert ModelConfig.load(tmp_path / "model_config.json").resize == "letterbox"
    with pytest.raises(ValueError, match="resize must be"):
        ModelConfig(resize="crop")

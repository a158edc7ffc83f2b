"""`edgeship data validate --grid`: the preview grid reads only the images it draws."""
from __future__ import annotations

import pytest
from PIL import Image

from components.data import preview

data = pytest.importorskip("components.data.core")


def test_grid_draws_count_images_and_reads_no_more(tmp_path, monkeypatch):
    data.generate_dataset(tmp_path / "d", seed=1, train=9, val=1, calibration=1, image_size=48)
    real = preview.dataset_reader.iter_split
    read = []

    def counting(*args, **kwargs):
        for ex in real(*args, **kwargs):
            read.append(ex.image_id)
            yield ex

    monkeypatch.setattr(preview.dataset_reader, "iter_split", counting)
    out = preview.save_grid(tmp_path / "d", tmp_path / "grid.png", count=4, scale=2)
    assert len(read) == 4                      # a 9-image split, 4 decoded
    assert Image.open(out).size == (2 * 48 * 2, 2 * 48 * 2)  # 2 x 2 tiles of 48 px, scaled 2x

import shutil

import pytest

from components.data import core

SMALL = dict(seed=3, train=24, val=8, calibration=4, image_size=64)


@pytest.fixture(scope="session", name="SMALL")
def small_params():
    return SMALL


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A tiny generated dataset shared (read-only) by the data tests."""
    out = tmp_path_factory.mktemp("ds") / "small"
    core.generate_dataset(out, **SMALL)
    return out


@pytest.fixture
def dataset_copy(small_dataset, tmp_path):
    """A private copy a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(small_dataset, dst)
    return dst

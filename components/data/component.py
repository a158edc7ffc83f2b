"""KFP interface of the data step: the embedded dataset, or the user's own, as a Dataset artifact."""
from kfp import dsl
from kfp.dsl import Dataset, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def data(
    dataset: Output[Dataset],
    data_uri: str = "",
    seed: int = 0,
    train_images: int = 1500,
    val_images: int = 300,
    calibration_images: int = 200,
    image_size: int = 160,
):
    """Produce the Dataset artifact (docs/contracts.md layout) in dataset.path.

    data_uri: the user's dataset (local dir or gs:// prefix in the contract's layout), validated
    and copied; "" generates the embedded synthetic dataset from seed and the split sizes.
    Artifact metadata: fingerprint, classes, counts per class and split.
    """
    from components.data import core
    from edgeship.detection import dataset as dataset_reader

    if data_uri:
        info = core.materialize(data_uri, dataset.path)
    else:
        import os

        info = core.generate_dataset(dataset.path, seed=seed, train=train_images, val=val_images,
                                     calibration=calibration_images, image_size=image_size,
                                     workers=min(4, os.cpu_count() or 1))
    for key, value in dataset_reader.describe(dataset.path).items():
        if key != "uri":
            dataset.metadata[key] = value
    dataset.metadata["source"] = data_uri or f"embedded synthetic (seed {seed})"
    print(f"dataset {info.fingerprint}: {info.splits}")

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
    source_format: str = "auto",
    val_fraction: float = 0.15,
    calibration_fraction: float = 0.1,
    strict: bool = False,
    resize: str = "stretch",
    max_image_side: int = 1024,
    tiny_box_px: float = 8.0,
):
    """Produce the Dataset artifact (docs/contracts.md layout) in dataset.path.

    data_uri: the user's dataset (local dir or gs:// prefix): a Dataset artifact is validated
    and copied; COCO JSON, Pascal VOC or TF OD API TFRecords (+ label_map.pbtxt) are imported
    (source_format, the split fractions, seed, strict, resize, max_image_side, image_size as the
    model input, tiny_box_px). "" generates the embedded synthetic dataset from seed and the
    split sizes.
    Artifact metadata: fingerprint, classes, counts per class and split; for imports also
    "import" (format, original categories, id mapping, splits given and carved), "resize" and
    "report" (the data report).
    """
    from components.data import core
    from edgeship.detection import dataset as dataset_reader

    if data_uri:
        options = core.import_options(
            format=source_format, val_fraction=val_fraction,
            calibration_fraction=calibration_fraction, seed=seed, strict=strict,
            input_size=image_size, resize=resize, max_image_side=max_image_side,
            tiny_box_px=tiny_box_px)
        info = core.materialize(data_uri, dataset.path, options)
    else:
        import os

        info = core.generate_dataset(dataset.path, seed=seed, train=train_images, val=val_images,
                                     calibration=calibration_images, image_size=image_size,
                                     workers=min(4, os.cpu_count() or 1))
    for key, value in dataset_reader.describe(dataset.path).items():
        if key not in ("uri", "source"):
            dataset.metadata[key] = value
    if info.source:
        dataset.metadata["import"] = info.source
    dataset.metadata["source"] = data_uri or f"embedded synthetic (seed {seed})"
    print(f"dataset {info.fingerprint}: {info.splits}")
    if info.raw.get("report"):
        from edgeship.detection.sources.report import report_text

        print(report_text(info.raw["report"]))

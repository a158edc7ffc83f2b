"""A real client runs edgeship's detector: MediaPipe Tasks' ObjectDetector (`mediapipe` on PyPI)
loads the .tflite once ``edgeship.detection.metadata.add_metadata`` has put TFLite Model Metadata
in it, and its detections agree with edgeship's own LiteRT evaluation (``TFLiteDetector``, what the
evaluate step runs) on the same images: same classes and scores, boxes with IoU >= 0.9. Without
the metadata MediaPipe refuses the very same file (so the agreement check can fail), and the file
with metadata still runs in LiteRT with outputs identical to the file without.

The detector is the quantize tests' stand-in (random weights: ~100 detections per image, scores
just above 0.5), converted by the quantize step to fp32 (float32 input) and full_int8 (uint8
input), at 256x256 so that MediaPipe's integer pixel boxes (origin and size truncated) stay within
the IoU tolerance. Images are fed at the model's size: no resize on either side.

MediaPipe's pixel boxes: whole pixels (origin and size truncated: taken at +0.5 px), and a box
crossing the left/top border keeps its size with its origin clamped into the image; edgeship's
boxes (the op's raw outputs from LiteRT) are put in that form before the IoU. MediaPipe also leaves
out the odd low-ranked box near the border (about 1 in 100 here), hence the coverage bound of 90%
of edgeship's detections; the top 10 per image must all be there, and MediaPipe must return
nothing that LiteRT did not.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.detection import metadata as md
from edgeship.detection.runners import TFLiteDetector
from tests.support import quantize_models as ql

pytestmark = pytest.mark.slow

SIZE = 256
TOP_K = 10
IOU_MIN = 0.9
MIN_COVERAGE = 0.9
SCORE_TOL = 1e-5
INSTALL = (f".venv/bin/pip install --no-deps {md.MEDIAPIPE_PIN} opencv-python-headless==5.0.0.93 "
           "(no deps: mediapipe pins absl-py~=2.3, which clashes with tensorflow-model-optimization; "
           "its Tasks API imports cv2)")


def _mediapipe() -> tuple[Any, Any, Any]:
    """(mediapipe, BaseOptions, vision), or a test failure saying how to install it: never a skip."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as exc:
        pytest.fail(f"MediaPipe Tasks is needed to check the published detector with a real client "
                    f"and cannot be imported ({exc}). Install it: {INSTALL}", pytrace=False)
    return mp, BaseOptions, vision


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Any]:
    """The quantize step's fp32 and full_int8 variants of the stand-in, each also with metadata."""
    from components.data.core import generate_dataset
    from components.quantize import core
    from edgeship.detection.dataset import load_split

    _mediapipe()
    root = tmp_path_factory.mktemp("md_mediapipe")
    generate_dataset(root / "dataset", train=1, val=4, calibration=8, image_size=SIZE, seed=3)
    ql.write_standin_model(root / "model", SIZE)
    out = root / "variants"
    core.quantize(root / "model", out, calibration=str(root / "dataset"), num_calibration=8,
                  schemes=["fp32", "full_int8"], coreml=False, progress=False, strict_parity=False)
    index = json.loads((out / "variants.json").read_text())
    labels = (out / "labels.txt").read_text().split()
    variants = {}
    for entry in index["variants"]:
        plain = out / entry["file"]
        tagged = out / f"{entry['name']}.metadata.tflite"
        tagged.write_bytes(md.add_metadata(
            plain.read_bytes(), labels=labels, input_spec=entry["input"], outputs=entry["outputs"],
            name="standin_detector", version="test-1", description="stand-in detector for the test"))
        variants[entry["name"]] = {"entry": entry, "plain": plain, "tagged": tagged}
    images = [ex.image for ex in load_split(str(root / "dataset"), "val")]
    return {"variants": variants, "labels": labels, "images": images}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _mediapipe_detections(detector: Any, mp: Any, image: np.ndarray, labels: list[str]) -> list[tuple]:
    """(pixel box x0, y0, x1, y1; 0-based class from the label name; score) per MediaPipe detection.

    MediaPipe truncates origin and size to whole pixels: the box is taken at the middle of each
    truncation interval (+0.5 px on origin and size)."""
    result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
    out = []
    for d in result.detections:
        bb, cat = d.bounding_box, d.categories[0]
        x0, y0, w, h = bb.origin_x + 0.5, bb.origin_y + 0.5, bb.width + 0.5, bb.height + 0.5
        out.append((np.array([x0, y0, x0 + w, y0 + h]), labels.index(cat.category_name), float(cat.score)))
    return out


def _as_mediapipe_presents(raw_boxes: np.ndarray) -> np.ndarray:
    """The op's raw boxes (normalized ymin, xmin, ymax, xmax, unclipped) in MediaPipe's pixel form:
    origin clamped into the image, size unclipped (so a box crossing the left/top border shifts)."""
    y0, x0 = np.maximum(raw_boxes[:, 0], 0) * SIZE, np.maximum(raw_boxes[:, 1], 0) * SIZE
    h, w = (raw_boxes[:, 2] - raw_boxes[:, 0]) * SIZE, (raw_boxes[:, 3] - raw_boxes[:, 1]) * SIZE
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def _compare(mp_dets: list[tuple], es: Any, boxes: np.ndarray) -> dict[str, Any]:
    """Per edgeship detection (score order): the best IoU of a MediaPipe detection with the same
    class and score (None: none has them); and the MediaPipe detections that match no edgeship
    detection (class, score and IoU >= IOU_MIN)."""
    def same(m: tuple, i: int) -> bool:
        return m[1] == int(es.labels[i]) - 1 and abs(m[2] - float(es.scores[i])) <= SCORE_TOL

    best = []
    for i in range(len(es.scores)):
        ious = [_iou(boxes[i], m[0]) for m in mp_dets if same(m, i)]
        best.append(max(ious) if ious else None)
    extra = [m for m in mp_dets if not any(same(m, i) and _iou(boxes[i], m[0]) >= IOU_MIN
                                          for i in range(len(es.scores)))]
    return {"best": best, "extra": extra}


@pytest.mark.parametrize("variant", ["fp32", "full_int8"])
def test_mediapipe_object_detector_agrees_with_litert(published, variant):
    from edgeship.detection.verify import inspect_tflite, run_detection

    mp, BaseOptions, vision = _mediapipe()
    v, labels, images = published["variants"][variant], published["labels"], published["images"]
    ours = TFLiteDetector(v["plain"], input_spec=v["entry"]["input"], output_map=v["entry"]["outputs"],
                          num_classes=len(labels))
    raw = run_detection(v["plain"], images, inspect_tflite(v["plain"]))  # the op's unclipped boxes
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(v["tagged"])),
                                           score_threshold=0.0, max_results=100)
    detector = vision.ObjectDetector.create_from_options(options)
    try:
        report = []
        for n, image in enumerate(images):
            es = ours(image)
            count = int(raw[n]["count"][0])
            raw_boxes = raw[n]["boxes"][0, :count]
            np.testing.assert_array_equal(es.scores, raw[n]["scores"][0, :count])
            np.testing.assert_array_equal(es.boxes, np.clip(raw_boxes, 0, 1))
            assert len(es.scores) >= TOP_K, f"image {n}: only {len(es.scores)} detections, the check needs {TOP_K}"
            cmp = _compare(_mediapipe_detections(detector, mp, image, labels), es, _as_mediapipe_presents(raw_boxes))
            best = cmp["best"]
            missing = [i for i, b in enumerate(best[:TOP_K]) if b is None]
            assert not missing, f"{variant} image {n}: edgeship's top detections {missing} (class + score) " \
                                "are not among MediaPipe's"
            low = [(i, round(b, 3)) for i, b in enumerate(best[:TOP_K]) if b < IOU_MIN]
            assert not low, f"{variant} image {n}: top boxes disagree (rank, IoU): {low}"
            assert not cmp["extra"], f"{variant} image {n}: MediaPipe returned detections LiteRT did not: {cmp['extra']}"
            agree = [b for b in best if b is not None and b >= IOU_MIN]
            assert len(agree) >= MIN_COVERAGE * len(best), \
                f"{variant} image {n}: only {len(agree)} of edgeship's {len(best)} detections are among MediaPipe's"
            report.append({"image": n, "litert": len(best), "agree": len(agree),
                           "min_iou_top": round(min(best[:TOP_K]), 3), "min_iou": round(min(agree), 3)})
        print(f"\n{variant} MediaPipe vs LiteRT:", json.dumps(report))
    finally:
        detector.close()


@pytest.mark.parametrize("variant", ["fp32", "full_int8"])
def test_mediapipe_refuses_the_file_without_metadata(published, variant):
    _, BaseOptions, vision = _mediapipe()
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(published["variants"][variant]["plain"])))
    with pytest.raises(Exception, match="Object detection models require TFLite Model Metadata but none was found"):
        vision.ObjectDetector.create_from_options(options).close()


@pytest.mark.parametrize("variant", ["fp32", "full_int8"])
def test_metadata_file_runs_in_litert_with_identical_outputs(published, variant):
    v = published["variants"][variant]
    spec = {"input_spec": v["entry"]["input"], "output_map": v["entry"]["outputs"]}
    plain, tagged = TFLiteDetector(v["plain"], **spec), TFLiteDetector(v["tagged"], **spec)
    for image in published["images"]:
        a, b = plain(image), tagged(image)
        assert len(a.scores) > 0
        for key in ("boxes", "labels", "scores"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_read_metadata_names_outputs_in_graph_order(published):
    for name, v in published["variants"].items():
        meta = md.read_metadata(v["tagged"].read_bytes())
        assert md.read_metadata(v["plain"].read_bytes()) is None
        assert (meta["name"], meta["version"], meta["min_parser_version"]) == ("standin_detector", "test-1", "1.2.0")
        (inp,) = meta["inputs"]
        assert inp["color_space"] == "RGB" and inp["normalization"] == {"mean": [0.0], "std": [1.0]}
        assert inp["stats"] == {"min": [0.0], "max": [255.0]}
        by_tensor = {o["tensor_index"]: o for o in meta["outputs"]}
        for key, mp_name in md.OUTPUT_NAMES.items():
            assert by_tensor[v["entry"]["outputs"][key]["index"]]["name"] == mp_name, (name, key)
        location = next(o for o in meta["outputs"] if o["name"] == "location")
        assert location["bounding_box"] == {"index": [1, 0, 3, 2], "type": "BOUNDARIES", "coordinate_type": "RATIO"}
        category = next(o for o in meta["outputs"] if o["name"] == "category")
        assert category["associated_files"][0]["type"] == "TENSOR_VALUE_LABELS"
        assert meta["associated_files"] == {"labels.txt": ("\n".join(published["labels"]) + "\n").encode()}
        assert meta["output_groups"] == [{"name": "detection_result", "tensor_names": ["location", "category", "score"]}]


def test_add_metadata_replaces_and_refuses_bad_input(published):
    v = published["variants"]["full_int8"]
    entry, labels = v["entry"], published["labels"]
    tagged = v["tagged"].read_bytes()
    again = md.add_metadata(tagged, labels=labels, input_spec=entry["input"], outputs=entry["outputs"],
                            name="standin_detector", version="test-2", description="again")
    meta = md.read_metadata(again)
    assert meta["version"] == "test-2"
    with zipfile.ZipFile(io.BytesIO(again)) as zf:
        assert zf.namelist() == ["labels.txt"]
    kw = {"labels": labels, "input_spec": entry["input"], "outputs": entry["outputs"], "name": "n",
          "version": "v", "description": "d"}
    plain = v["plain"].read_bytes()
    swapped = {**entry["outputs"], "boxes": entry["outputs"]["scores"], "scores": entry["outputs"]["boxes"]}
    with pytest.raises(md.MetadataError, match="op's boxes output"):
        md.add_metadata(plain, **{**kw, "outputs": swapped})
    with pytest.raises(md.MetadataError, match="num_classes=3"):
        md.add_metadata(plain, **{**kw, "labels": labels[:2]})
    with pytest.raises(md.MetadataError, match="scale 1, zero point 0"):
        md.add_metadata(plain, **{**kw, "input_spec": {**entry["input"], "scale": 0.5}})
    with pytest.raises(md.MetadataError, match="model takes uint8"):
        md.add_metadata(plain, **{**kw, "input_spec": {**entry["input"], "dtype": "float32"}})
    with pytest.raises(md.MetadataError, match="TFL3"):
        md.add_metadata(b"not a model at all", **kw)


def test_schema_comes_from_the_mediapipe_wheel():
    _mediapipe()
    meta_fb, tflite_fb = md.schema_modules()
    assert Path(meta_fb.__file__).parts[-3:] == ("tasks", "metadata", "metadata_schema_py_generated.py")
    assert hasattr(meta_fb, "ModelMetadataT") and hasattr(tflite_fb, "ModelT")

"""Bootstrap intervals of COCO mAP over images (edgeship/detection/bootstrap.py): the accumulate()
rebuilt from per-image matches equals pycocotools exactly, a drawn-twice image counts as two
copies, the interval shrinks as the val set grows and covers the true value of a synthetic case
with a known answer, and the paired ΔmAP interval is narrower than an unpaired one."""
from __future__ import annotations

import numpy as np
import pytest

from edgeship.detection import bootstrap
from edgeship.detection.coco import Detections, coco_evaluate
from tests.support.evaluate_data import make_example

CLASSES = ["circle", "square", "triangle", "star"]


def _random_boxes(rng, m, top=0.6):
    corner = rng.uniform(0.0, top, (m, 2))
    return np.concatenate([corner, corner + rng.uniform(0.1, 0.4, (m, 2))], axis=1)


def synthetic(n: int, seed: int, hit: float = 0.7, false_per_image: float = 3.0):
    """Images with 0-3 objects of classes 1..3 (class 4 never in the ground truth but sometimes
    predicted); the detector finds each object with probability ``hit`` (jittered box, score
    0.3..1) and adds false positives (score 0..0.7)."""
    rng = np.random.default_rng(seed)
    examples, dets = [], []
    for i in range(n):
        m = int(rng.integers(0, 4))
        boxes, labels = _random_boxes(rng, m), rng.integers(1, 4, m)
        examples.append(make_example(i, boxes, labels, size=(16, 16)))
        keep = rng.random(m) < hit
        f = int(rng.poisson(false_per_image))
        db = np.concatenate([boxes[keep] + rng.normal(0, 0.03, (int(keep.sum()), 4)), _random_boxes(rng, f)])
        dl = np.concatenate([labels[keep], rng.integers(1, 5, f)])
        ds = np.concatenate([rng.uniform(0.3, 1.0, int(keep.sum())), rng.uniform(0.0, 0.7, f)])
        dets.append(Detections(np.clip(db, 0, 1), dl, ds))
    return examples, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identity_resample_equals_pycocotools_exactly(seed):
    examples, dets = synthetic(60, seed)
    result = coco_evaluate(examples, dets, CLASSES, keep_matches=True)
    assert result.matches is not None and result.matches.images == 60
    assert bootstrap.average_precision(result.matches) == (result.map, result.map50)
    assert bootstrap.average_precision(result.matches, bootstrap.identity_counts(60)) == (result.map, result.map50)


def test_an_image_drawn_twice_counts_as_two_copies():
    examples, dets = synthetic(30, 5)
    table = coco_evaluate(examples, dets, CLASSES, keep_matches=True).matches
    counts = np.ones(30, np.int64)
    counts[[3, 17]] = [2, 3]
    counts[[4, 9, 11]] = 0
    order = [i for i in range(30) for _ in range(counts[i])]
    copies = [make_example(j, examples[i].boxes, examples[i].labels, size=(16, 16)) for j, i in enumerate(order)]
    direct = coco_evaluate(copies, [dets[i] for i in order], CLASSES)
    got = bootstrap.average_precision(table, counts)
    assert got == pytest.approx((direct.map, direct.map50), abs=1e-12)


def test_resample_counts_are_seeded_draws_of_n_images():
    a = bootstrap.resample_counts(50, 20, seed=3)
    assert a.shape == (20, 50) and (a.sum(axis=1) == 50).all() and (a >= 0).all()
    assert (a == bootstrap.resample_counts(50, 20, seed=3)).all()
    assert not (a == bootstrap.resample_counts(50, 20, seed=4)).all()
    with pytest.raises(ValueError, match="at least|>= 1"):
        bootstrap.resample_counts(0, 10)


def known_answer(n: int, seed: int, p: float = 0.605):
    """One object per image, always found with probability ``p`` (exact box, score 0.5..1) and
    never otherwise; one false positive per image far from it, scored below every hit. Precision
    is 1 up to recall R = hits/n, so COCO's 101-point AP is #{r in 0, .01, ..., 1: r <= R} / 101 at
    every IoU threshold; over the population (R = p) the true mAP is (floor(100 p) + 1) / 101."""
    rng = np.random.default_rng(seed)
    examples, dets = [], []
    for i in range(n):
        gt = np.array([[0.05, 0.05, 0.4, 0.4]])
        examples.append(make_example(i, gt, [1], size=(16, 16)))
        fp = np.array([[0.6, 0.6, 0.95, 0.95]])
        if rng.random() < p:
            dets.append(Detections(np.concatenate([gt, fp]), [1, 1], [rng.uniform(0.5, 1.0), rng.uniform(0, 0.4)]))
        else:
            dets.append(Detections(fp, [1], [rng.uniform(0, 0.4)]))
    return examples, dets


TRUE_MAP = (np.floor(100 * 0.605) + 1) / 101


def _interval(n: int, seed: int) -> tuple[float, float]:
    examples, dets = known_answer(n, seed)
    table = coco_evaluate(examples, dets, ["circle"], keep_matches=True).matches
    return bootstrap.bootstrap_intervals({"m": table}, resamples=200, seed=seed).intervals["m"].map


def test_interval_covers_the_true_value_of_a_known_case():
    trials = [_interval(150, seed) for seed in range(30)]
    covered = sum(lo <= TRUE_MAP <= hi for lo, hi in trials)
    assert covered >= 25, f"95% intervals covered the true mAP {TRUE_MAP:.4f} in {covered}/30 trials"


def test_interval_shrinks_as_the_val_set_grows():
    widths = {n: np.mean([hi - lo for lo, hi in (_interval(n, seed) for seed in range(3))])
              for n in (50, 200, 800)}
    assert widths[50] > widths[200] > widths[800]
    assert widths[800] < 0.6 * widths[50]  # ~1/sqrt(n): 0.25x expected


def test_paired_delta_interval_is_narrower_than_unpaired():
    """A variant that matches the float model on most images: pairing cancels what they share."""
    examples, dets = synthetic(200, 11)
    rng = np.random.default_rng(0)
    variant = [Detections(d.boxes, d.labels, np.clip(d.scores + rng.normal(0, 0.02, len(d)), 0, 1)) for d in dets]
    tables = {"float": coco_evaluate(examples, dets, CLASSES, keep_matches=True).matches,
              "int8": coco_evaluate(examples, variant, CLASSES, keep_matches=True).matches}
    paired = bootstrap.bootstrap_intervals(tables, reference="float", resamples=200, seed=1)
    unpaired = bootstrap.bootstrap_intervals(tables, reference="float", resamples=200, seed=1, paired=False)
    width = {k: r.intervals["int8"].delta_map[1] - r.intervals["int8"].delta_map[0]
             for k, r in (("paired", paired), ("unpaired", unpaired))}
    assert width["paired"] < 0.4 * width["unpaired"], width
    assert paired.intervals["float"].delta_map == (0.0, 0.0)
    described = paired.describe()
    assert described["resamples"] == 200 and described["images"] == 200 and "paired" in described["method"]


def test_models_on_different_images_are_refused():
    a, da = synthetic(20, 1)
    b, db = synthetic(25, 2)
    tables = {"a": coco_evaluate(a, da, CLASSES, keep_matches=True).matches,
              "b": coco_evaluate(b, db, CLASSES, keep_matches=True).matches}
    with pytest.raises(ValueError, match="different numbers of images"):
        bootstrap.bootstrap_intervals(tables)


def test_views_drawn_with_their_photo_are_not_counted_as_new_photos():
    """Four identical 'views' of each photo add no information: drawn by photo (groups) the
    interval stays that of the photos alone; drawn as if independent it would shrink ~2x."""
    examples, dets = synthetic(60, 21)
    photos = coco_evaluate(examples, dets, CLASSES, keep_matches=True).matches
    copies = [make_example(k * 60 + i, e.boxes, e.labels, size=(16, 16)) for k in range(4) for i, e in enumerate(examples)]
    scored = coco_evaluate(copies, dets * 4, CLASSES, keep_matches=True).matches
    groups = np.tile(np.arange(60), 4)

    def width(tables, **kw):
        r = bootstrap.bootstrap_intervals(tables, resamples=300, seed=2, **kw)
        return r, r.intervals["m"].map[1] - r.intervals["m"].map[0]

    _, alone = width({"m": photos})
    grouped, by_photo = width({"m": scored}, groups=groups)
    _, independent = width({"m": scored})
    assert by_photo == pytest.approx(alone, rel=0.1), (alone, by_photo)
    assert independent < 0.65 * by_photo, (independent, by_photo)
    assert grouped.images == 60 and grouped.evaluated == 240
    assert grouped.describe()["evaluated"] == 240 and "views" in grouped.describe()["method"]


@pytest.mark.parametrize("groups, match", [(np.zeros(5, np.int64), "one integer id per image"),
                                           (np.array([0, 0, 2, 2, 2, 2] * 5), "every id used"),
                                           (np.full(30, 0.5), "one integer id per image")])
def test_bad_groups_are_refused(groups, match):
    examples, dets = synthetic(30, 3)
    table = coco_evaluate(examples, dets, CLASSES, keep_matches=True).matches
    with pytest.raises(ValueError, match=match):
        bootstrap.bootstrap_intervals({"m": table}, groups=groups)

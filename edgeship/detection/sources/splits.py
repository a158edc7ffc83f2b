"""Split names as users write them, and carving a missing val or calibration split from train:
deterministic (fixed seed), stratified by class, duplicates kept together."""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

from edgeship.detection.sources.records import SourceError

SPLIT_WORDS = {
    "train": "train", "training": "train", "trainval": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val", "dev": "val",
    "test": "test", "testing": "test",
    "calibration": "calibration", "calib": "calibration", "calibrate": "calibration",
}
CARVED = ("val", "calibration")
METHOD = ("fraction of train's distinct images (copies with the same bytes move together and count "
          "once), stratified by each image's rarest class, quotas by largest remainder, "
          "random.Random(f'{seed}:{split}:{class}')")


def split_word(name: str) -> tuple[str, str] | None:
    """(split, the word as written) for a file or folder name: 'instances_val2017' →
    ('val', 'val2017'), '_annotations.coco' → None."""
    for token in re.split(r"[^a-z0-9]+", name.lower()):
        word = re.sub(r"\d+$", "", token)
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word], token
    return None


def split_of_path(rel: str) -> tuple[str, str] | None:
    """The split a file's own name says, else the nearest folder's (``train/_annotations.coco.json``)."""
    parts = rel.split("/")
    stem = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    for name in [stem, *reversed(parts[:-1])]:
        found = split_word(name)
        if found:
            return found
    return None


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _quotas(sizes: dict[Hashable, int], fraction: float) -> dict[Hashable, int]:
    """Per-stratum counts summing to round(fraction × total), each ≤ its stratum (largest remainder)."""
    total = sum(sizes.values())
    target = min(_round_half_up(fraction * total), total)
    exact = {k: fraction * n for k, n in sizes.items()}
    quota = {k: min(int(math.floor(v)), sizes[k]) for k, v in exact.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - math.floor(exact[k])), -sizes[k], str(k)))
    left = target - sum(quota.values())
    while left > 0:
        moved = False
        for k in order:
            if left and quota[k] < sizes[k]:
                quota[k] += 1
                left -= 1
                moved = True
        if not moved:
            break
    return quota


def carve(units: Sequence[frozenset], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Pick units (each a set of class ids; an image or a group of identical images) for each
    carved split, in the order of ``fractions``; returns {split: sorted unit indices}.

    Each unit's stratum is its rarest class (by count over all units; ties → smaller id; no
    objects → its own stratum). Every split takes round(fraction × units) from the units still
    left, spread over strata in proportion. Same inputs and seed → same result.
    """
    counts = Counter(c for u in units for c in u)
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for i, unit in enumerate(units):
        key = min(unit, key=lambda c: (counts[c], str(c))) if unit else "(no objects)"
        strata[key].append(i)
    left = {k: list(v) for k, v in strata.items()}
    total = len(units)
    out: dict[str, list[int]] = {}
    for split, fraction in fractions.items():
        sizes = {k: len(v) for k, v in left.items()}
        share = fraction * total / max(1, sum(sizes.values()))
        quota = _quotas(sizes, share)
        picked = []
        for key in sorted(left, key=str):
            members = sorted(left[key])
            random.Random(f"{seed}:{split}:{key}").shuffle(members)
            take, keep = members[:quota[key]], members[quota[key]:]
            picked.extend(take)
            left[key] = keep
        out[split] = sorted(picked)
    return out


def check_fractions(fractions: dict[str, float]) -> None:
    for split, f in fractions.items():
        if not 0 < f < 1:
            raise ValueError(f"{split} fraction must be between 0 and 1 (exclusive), got {f}")
    if sum(fractions.values()) >= 1:
        raise ValueError(f"the carved fractions {fractions} leave nothing for train")


def require_not_empty(split: str, n: int, detail: str) -> None:
    if n == 0:
        raise SourceError(f"split {split!r} is empty {detail}")

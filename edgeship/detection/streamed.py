"""A split that is decoded again on every pass instead of held in memory, for evaluation.

Evaluation runs every model over the val split and its robustness slices. A split whose decoded
images fit in ``IN_MEMORY_MB`` is kept as a list (fastest); a larger one becomes a
:class:`StreamedSplit`: its **ground truth** (ids, boxes, labels, crowd regions, image sizes) stays
in memory, with each image replaced by a zero-byte stand-in of the right shape
(``np.broadcast_to``), and iterating it streams the images from the dataset artifact again (local
or gs://), one at a time, through an optional per-image transform (a robustness slice). Code that
only needs the ground truth (pycocotools, calibration, validation) reads ``truth_of(examples)``;
code that runs a model iterates the examples.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterator, Sequence

import numpy as np

IN_MEMORY_MB = 1024.0  # decoded val images kept as a list up to this size; streamed beyond it

Transform = Callable[[int, Any], Any]  # (position in the split, Example) → Example


def truth_only(example: Any) -> Any:
    """``example`` with its image replaced by a zero-byte stand-in of the same shape and dtype."""
    image = np.asarray(example.image)
    return dataclasses.replace(example, image=np.broadcast_to(np.zeros((), image.dtype), image.shape))


def truth_of(examples: Any) -> Sequence[Any]:
    """The ground-truth examples of a split: a StreamedSplit's ``truth``, else the examples."""
    return getattr(examples, "truth", examples)


class StreamedSplit:
    """The first ``len(truth)`` examples of ``split`` in the dataset at ``uri``, decoded on every
    pass. ``examples[i]`` reads up to the i-th image (for a sample); slicing is not supported
    (iterate with itertools.islice)."""

    def __init__(self, uri: str, split: str, truth: Sequence[Any], *, transform: Transform | None = None) -> None:
        self.uri, self.split, self.truth, self.transform = str(uri), split, list(truth), transform

    def __len__(self) -> int:
        return len(self.truth)

    def __iter__(self) -> Iterator[Any]:
        from edgeship.detection.dataset import iter_split

        for i, ex in enumerate(itertools.islice(iter_split(self.uri, self.split), len(self.truth))):
            if str(ex.image_id) != str(self.truth[i].image_id):
                raise ValueError(f"split {self.split!r} of {self.uri} changed while it was evaluated: image "
                                 f"#{i} is {ex.image_id!r}, was {self.truth[i].image_id!r}")
            yield self.transform(i, ex) if self.transform is not None else ex

    def __getitem__(self, index: int) -> Any:
        if not isinstance(index, int):
            raise TypeError("a StreamedSplit is read in order: iterate it (itertools.islice for a part)")
        if not -len(self) <= index < len(self):
            raise IndexError(f"image #{index} of a split of {len(self)}")
        return next(itertools.islice(iter(self), index % len(self), None))

    def with_transform(self, transform: Transform) -> "StreamedSplit":
        """The same split with ``transform`` applied to every image as it is read."""
        return StreamedSplit(self.uri, self.split, self.truth, transform=transform)


def read_split(uri: str, split: str, *, max_images: int | None = None,
               in_memory_mb: float = IN_MEMORY_MB) -> list[Any] | StreamedSplit:
    """The split's examples in one pass: a list while their decoded images fit in
    ``in_memory_mb``, else a :class:`StreamedSplit` (what was read so far is reduced to ground
    truth, and the rest is read as ground truth only)."""
    from edgeship.detection.dataset import iter_split

    budget = float(in_memory_mb) * 2 ** 20
    kept: list[Any] = []
    held, streamed = 0, False
    for ex in itertools.islice(iter_split(uri, split), max_images):
        if not streamed:
            held += np.asarray(ex.image).nbytes
            if held > budget:
                streamed, kept = True, [truth_only(e) for e in kept]
        kept.append(truth_only(ex) if streamed else ex)
    return StreamedSplit(uri, split, kept) if streamed else kept

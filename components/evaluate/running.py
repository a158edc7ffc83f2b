"""Running models over the split and its robustness slices: the per-model accuracy pass of the
evaluation (detections, COCO results, progress), shared by the float model and every variant."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from edgeship.contracts.evaluation import FLOAT_KERAS
from edgeship.detection.coco import CocoResult, Detections, coco_evaluate
from edgeship.detection.runners import run_detector

VIEWS = "views"  # Run.accuracy's key for the split's photos scored with their views


def measure_accuracy(detector: Any, sets: Mapping[str, Sequence[Any]], class_names: Sequence[str],
                     progress: Any, task: Any, split: str) -> tuple[dict[str, CocoResult], dict[str, list[Detections]]]:
    results, dets = {}, {}
    for set_name, examples in sets.items():
        if progress is not None:
            progress.update(task, description=f"{detector.name}: {set_name}")
        advance = (lambda: progress.advance(task)) if progress is not None else None
        dets[set_name] = run_detector(detector, examples, on_image=advance)
        results[set_name] = coco_evaluate(examples, dets[set_name], class_names, where=f"{set_name} split",
                                          validate=False, keep_matches=set_name == split)
    return results, dets


def progress_bar(enabled: bool):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)


@dataclass
class Run:
    """What every model of one evaluation is measured on."""

    examples: Sequence[Any]
    sets: dict[str, Sequence[Any]]
    class_names: Sequence[str]
    split: str
    ece_min_score: float
    progress: Any
    count: int
    threads_n: int
    views: list[Any] = field(default_factory=list)  # extra views of the split's photos (views.py)

    def accuracy(self, detector: Any, index: int) -> tuple[dict[str, CocoResult], list[Detections]]:
        """The detector's COCO results on the split, each robustness slice and (with views) on the
        split's photos with their views (key ``VIEWS``); its detections on the split."""
        from edgeship.base import progress as step_progress

        phase = f"mAP on {self.split}" + (f" + {len(self.sets) - 1} robustness slices" if len(self.sets) > 1 else "")
        phase += f" + {len(self.views)} views" if self.views else ""
        step_progress.emit(item=detector.name, index=index, count=self.count, phase=phase)
        total = len(self.examples) * len(self.sets) + len(self.views)
        task = self.progress.add_task(detector.name, total=total) if self.progress else None
        cocos, dets = measure_accuracy(detector, self.sets, self.class_names, self.progress, task, self.split)
        if self.views:
            advance = (lambda: self.progress.advance(task)) if self.progress is not None else None
            scored = [*self.examples, *self.views]
            cocos[VIEWS] = coco_evaluate(scored, [*dets[self.split], *run_detector(detector, self.views, on_image=advance)],
                                         self.class_names, where=f"{self.split} split with its views",
                                         validate=False, keep_matches=True)
        step_progress.emit(item=detector.name, index=index, count=self.count, map=cocos[self.split].map,
                           mark=detector.name == FLOAT_KERAS)
        return cocos, dets[self.split]

    def robustness(self, cocos: Mapping[str, CocoResult]) -> dict[str, CocoResult]:
        return {s: cocos[s] for s in self.sets if s != self.split}

"""Which epoch a training run keeps, and when it stops early.

``val_loss`` (the default): the epoch with the lowest validation loss; the run stops after
``patience`` epochs without a new low. ``val_map``: the same on the Keras model's val
mAP@[.5:.95] (pycocotools, measured after every epoch; the highest wins): on a small val split
the loss can reach a chance low in the high-learning-rate part of the schedule and stop a long
run a third of the way in, while mAP is what the step is judged on. ``none``: every epoch runs
and the last one is kept (the cosine schedule ends at 1 % of the peak rate).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

METRICS = ("val_loss", "val_map", "none")


def check_metric(metric: str, where: str = "early_stop") -> str:
    """``metric`` if it is one of METRICS; a ValueError naming it otherwise."""
    if metric not in METRICS:
        raise ValueError(f"{where}: must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


@dataclass
class EarlyStop:
    """The running best of one fit call. ``val_map``: a function of the model that returns its
    val mAP (needed when ``metric`` is "val_map")."""

    metric: str = "val_loss"
    patience: int = 8
    val_map: Callable[[Any], float] | None = None
    best: float = math.inf  # lower is better: the val loss, or minus the val mAP
    best_epoch: int = 0
    best_weights: list = field(default_factory=list)
    waited: int = 0
    best_val_loss: float = math.inf
    val_maps: list = field(default_factory=list)  # per epoch, when measured

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.metric == "val_map" and self.val_map is None:
            raise ValueError("early_stop 'val_map' needs a val mAP function (the val split's images)")

    def epoch_end(self, model: Any, epoch: int, val_loss: float) -> bool:
        """Score the finished epoch, keep the model's weights when it is a new best; True when
        the run should stop."""
        if self.metric == "val_map":
            self.val_maps.append(float(self.val_map(model)))  # type: ignore[misc]
        score = {"val_map": -self.val_maps[-1] if self.val_maps else 0.0, "none": -float(epoch),
                 "val_loss": float(val_loss)}[self.metric]
        if score < self.best - 1e-4:
            self.best, self.best_epoch, self.best_weights, self.waited = score, epoch, model.get_weights(), 0
            self.best_val_loss = float(val_loss)
            return False
        self.waited += 1
        return self.metric != "none" and self.waited >= self.patience

    def record(self) -> dict[str, Any]:
        """What the history keeps: the metric, the best epoch and its val loss, the val mAPs."""
        return {"early_stop": self.metric, "best_epoch": self.best_epoch,
                "best_val_loss": self.best_val_loss, **({"val_maps": self.val_maps} if self.val_maps else {})}

    def describe(self) -> str:
        """The best so far, for the early-stop log line and the progress display."""
        if self.metric == "val_map":
            return f"val mAP {-self.best:.4f} at epoch {self.best_epoch}"
        if self.metric == "none":
            return f"the last epoch, {self.best_epoch}"
        return f"val loss {self.best:.4f} at epoch {self.best_epoch}"

"""Latency of a .tflite model in LiteRT (XNNPACK, the default delegate) at a given thread count.

The same input is set once; then ``warmup`` untimed invocations, then ``runs`` timed ones
(``time.perf_counter`` around ``invoke()`` only). Figures are wall-clock milliseconds on *this*
machine; on a shared CPU they carry noise, which is why the median and the 90th percentile are
reported rather than the mean.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyStats:
    """Median and 90th percentile of ``runs`` timed calls, in milliseconds."""

    median: float
    p90: float
    runs: int
    warmup: int
    threads: int
    mean: float
    min: float

    def to_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "p90": self.p90, "runs": self.runs, "warmup": self.warmup,
                "threads": self.threads, "mean": self.mean, "min": self.min}


def time_calls(fn: Callable[[], object], *, runs: int = 50, warmup: int = 5, threads: int = 1) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; return the statistics.

    Raises ValueError when runs < 1 or warmup < 0.
    """
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"latency runs must be an integer >= 1, got {runs!r}")
    if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
        raise ValueError(f"latency warm-up must be an integer >= 0, got {warmup!r}")
    for _ in range(int(warmup)):
        fn()
    times = np.empty(int(runs), np.float64)
    for i in range(int(runs)):
        start = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - start) * 1000.0
    return LatencyStats(median=float(np.median(times)), p90=float(np.percentile(times, 90)),
                        runs=int(runs), warmup=int(warmup), threads=int(threads),
                        mean=float(times.mean()), min=float(times.min()))


def all_threads() -> int:
    """The thread count used for the "all threads" figure: os.cpu_count()."""
    return max(1, os.cpu_count() or 1)


def tflite_latency(model_path: str | os.PathLike, model_input: np.ndarray, *, threads: int = 1,
                   runs: int = 50, warmup: int = 5) -> LatencyStats:
    """Latency of one .tflite with LiteRT/XNNPACK at ``threads`` threads on ``model_input``
    (already shaped and typed like the model's input 0)."""
    from ai_edge_litert.interpreter import Interpreter

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    interpreter = Interpreter(model_path=str(model_path), num_threads=int(threads))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if tuple(model_input.shape) != tuple(detail["shape"]) or model_input.dtype != detail["dtype"]:
        raise ValueError(f"latency input {model_input.dtype}{list(model_input.shape)} does not match "
                         f"{model_path}'s input {np.dtype(detail['dtype'])}{list(detail['shape'])}")
    interpreter.set_tensor(detail["index"], model_input)
    stats = time_calls(interpreter.invoke, runs=runs, warmup=warmup, threads=threads)
    log.debug("%s @%d threads: median %.3f ms, p90 %.3f ms", model_path, threads, stats.median, stats.p90)
    return stats

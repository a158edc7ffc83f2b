"""Latency of a .tflite model in LiteRT (XNNPACK, the default delegate) at a given thread count.

The same input is set once; then ``warmup`` untimed invocations, then ``runs`` timed ones
(``time.perf_counter`` around ``invoke()`` only). Figures are wall-clock milliseconds on *this*
machine; on a shared CPU they carry noise, which is why the median and the 90th percentile are
reported rather than the mean.

Interval of the median: the timed runs are split into ``blocks`` consecutive blocks; the median
is recomputed on blocks drawn with replacement (a block bootstrap: runs close in time share the
machine's load, so whole blocks are resampled, not single runs), and the central ``confidence``
share of those medians is the interval. :func:`interleaved_latency` times several models in
turns (block 1 of every model, then block 2, ..., the order rotated each round), so a slow
stretch of the machine falls on every model rather than on whichever was timed then. Only at one
thread: several multi-threaded interpreters alive at once compete through their thread pools
(on 2 cores a 1.2 ms model read 14 ms), so multi-thread figures time one model at a time.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

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
    ci: tuple[float, float] | None = None  # interval of the median (block bootstrap), ms
    blocks: int = 0
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "p90": self.p90, "runs": self.runs, "warmup": self.warmup,
                "threads": self.threads, "mean": self.mean, "min": self.min,
                "ci": list(self.ci) if self.ci else None, "blocks": self.blocks,
                "confidence": self.confidence}


DEFAULT_BLOCKS = 10
DEFAULT_CONFIDENCE = 0.95


def median_interval(times_ms: np.ndarray, *, blocks: int = DEFAULT_BLOCKS,
                    confidence: float = DEFAULT_CONFIDENCE, resamples: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """The ``confidence`` interval of the median of ``times_ms`` (in the order they were taken) by a
    block bootstrap over ``blocks`` consecutive blocks (fewer when there are fewer runs)."""
    times = np.asarray(times_ms, np.float64).reshape(-1)
    if times.size == 0:
        raise ValueError("no timed runs")
    parts = np.array_split(times, max(1, min(int(blocks), times.size)))
    rng = np.random.default_rng(seed)
    medians = np.empty(int(resamples))
    for b in range(int(resamples)):
        picks = rng.integers(0, len(parts), size=len(parts))
        medians[b] = np.median(np.concatenate([parts[i] for i in picks]))
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(medians, [tail, 100.0 - tail])
    return float(lo), float(hi)


def stats_of(times_ms: np.ndarray, *, warmup: int, threads: int, blocks: int = DEFAULT_BLOCKS,
             confidence: float = DEFAULT_CONFIDENCE) -> LatencyStats:
    """The statistics of timed runs (ms, in the order taken), with the interval of the median."""
    times = np.asarray(times_ms, np.float64)
    return LatencyStats(median=float(np.median(times)), p90=float(np.percentile(times, 90)),
                        runs=int(times.size), warmup=int(warmup), threads=int(threads),
                        mean=float(times.mean()), min=float(times.min()),
                        ci=median_interval(times, blocks=blocks, confidence=confidence),
                        blocks=min(int(blocks), int(times.size)), confidence=float(confidence))


def _check_counts(runs: int, warmup: int) -> None:
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"latency runs must be an integer >= 1, got {runs!r}")
    if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
        raise ValueError(f"latency warm-up must be an integer >= 0, got {warmup!r}")


_clock = time.perf_counter  # seconds; tests replace it with a fake clock


def _timed(fn: Callable[[], object], runs: int) -> np.ndarray:
    times = np.empty(int(runs), np.float64)
    for i in range(int(runs)):
        start = _clock()
        fn()
        times[i] = (_clock() - start) * 1000.0
    return times


def time_calls(fn: Callable[[], object], *, runs: int = 50, warmup: int = 5, threads: int = 1,
               blocks: int = DEFAULT_BLOCKS, confidence: float = DEFAULT_CONFIDENCE) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; return the statistics
    (with the block-bootstrap interval of the median).

    Raises ValueError when runs < 1 or warmup < 0.
    """
    _check_counts(runs, warmup)
    for _ in range(int(warmup)):
        fn()
    return stats_of(_timed(fn, runs), warmup=warmup, threads=threads, blocks=blocks, confidence=confidence)


def interleaved_calls(fns: Mapping[str, Callable[[], object]], *, runs: int = 50, warmup: int = 5,
                      threads: int = 1, blocks: int = DEFAULT_BLOCKS,
                      confidence: float = DEFAULT_CONFIDENCE) -> dict[str, LatencyStats]:
    """Time several callables in turns: each is warmed up, then ``runs`` timed calls each are made
    in ``blocks`` rounds (a block of each callable per round; the order rotates every round).
    Returns each one's statistics, the interval of the median from a bootstrap over its blocks."""
    _check_counts(runs, warmup)
    names = list(fns)
    for name in names:
        for _ in range(int(warmup)):
            fns[name]()
    rounds = max(1, min(int(blocks), int(runs)))
    sizes = [len(part) for part in np.array_split(np.arange(int(runs)), rounds)]
    times: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for r, size in enumerate(sizes):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            times[name].append(_timed(fns[name], size))
    return {name: stats_of(np.concatenate(times[name]), warmup=warmup, threads=threads, blocks=rounds,
                           confidence=confidence) for name in names}


# Above this 1-minute load average per usable CPU (the timing thread itself included) the host
# is oversubscribed: measured 2026-12-02 beside the test suite at load 6-194 on 2 CPUs, every
# 1-thread latency read 5x its quiet figure and int8 came out slower than fp32 (1.28x, thread
# CPU time too), the reverse of the quiet ordering (0.73x). Figures timed so are not trusted.
BUSY_LOAD_PER_CPU = 1.0
# Where the host can say how busy each CPU was (Linux /proc/stat), the rule is other processes'
# CPU time on this process's CPUs while the 1-thread figures were timed: the load average counts
# this process's own threads too, and the evaluation's accuracy pass (one LiteRT interpreter per
# core) leaves it near 1 per CPU on a quiet host (1.66 on 2 CPUs, 2026-12-03 17:35). Beside the
# test suite, other processes kept 1.30 of 2 CPUs busy (0.65 per CPU; load average 1.1 per CPU).
BUSY_OTHERS_PER_CPU = 0.5

_loadavg = os.getloadavg  # tests replace it with a fake reading


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds the CPUs of this process's affinity mask have been busy so far, steal
    included; this process's own CPU-seconds), or None where /proc/stat is not there."""
    try:
        mine = os.sched_getaffinity(0)
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name != "cpu" and int(name[3:]) in mine:
                    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                    busy += sum(ticks) - ticks[3] - ticks[4]
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system
    except (AttributeError, OSError, ValueError):
        return None


_cpu_seconds = cpu_seconds  # tests replace it with fake counters


class OthersMeter:
    """Other processes' CPUs in use (on this process's CPUs) between start and ``read()``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start, self.t0 = _cpu_seconds(), clock()

    def read(self) -> float | None:
        end, wall = _cpu_seconds(), self.clock() - self.t0
        if self.start is None or end is None or wall <= 0:
            return None
        return max(0.0, ((end[0] - self.start[0]) - (end[1] - self.start[1])) / wall)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return all_threads()


def host_load() -> float | None:
    """The host's 1-minute load average (None where the platform has none)."""
    try:
        return float(_loadavg()[0])
    except (AttributeError, OSError):
        return None


def host_conditions(before: float | None, after: float | None, cpus: int | None = None, *,
                    threshold: float = BUSY_LOAD_PER_CPU, others: float | None = None,
                    others_threshold: float = BUSY_OTHERS_PER_CPU) -> dict[str, Any]:
    """What the host was doing while latency was timed: the load averages read before and after,
    the usable CPUs, other processes' CPUs in use meanwhile (``others``, OthersMeter; None where
    unknown) and ``busy`` (then the latencies are not trusted to rank the variants): ``others``
    per CPU above ``others_threshold`` when measured, else the higher load reading per CPU above
    ``threshold``; unknown load counts as not busy."""
    cpus = int(cpus or usable_cpus())
    readings = [x for x in (before, after) if x is not None]
    per_cpu = max(readings) / cpus if readings else None
    others_per_cpu = others / cpus if others is not None else None
    busy = others_per_cpu > others_threshold if others_per_cpu is not None else \
        per_cpu is not None and per_cpu > threshold
    return {"load_1min_before": before, "load_1min_after": after, "cpus": cpus,
            "load_per_cpu": round(per_cpu, 3) if per_cpu is not None else None,
            "threshold_load_per_cpu": float(threshold),
            "others_cpus": round(others, 3) if others is not None else None,
            "others_per_cpu": round(others_per_cpu, 3) if others_per_cpu is not None else None,
            "threshold_others_per_cpu": float(others_threshold),
            "busy": bool(busy)}


def all_threads() -> int:
    """The thread count used for the "all threads" figure: os.cpu_count()."""
    return max(1, os.cpu_count() or 1)


def tflite_latency(model_path: str | os.PathLike, model_input: np.ndarray, *, threads: int = 1,
                   runs: int = 50, warmup: int = 5, blocks: int = DEFAULT_BLOCKS,
                   confidence: float = DEFAULT_CONFIDENCE) -> LatencyStats:
    """Latency of one .tflite with LiteRT/XNNPACK at ``threads`` threads on ``model_input``
    (already shaped and typed like the model's input 0)."""
    interpreter = _interpreter(model_path, model_input, threads)
    stats = time_calls(interpreter.invoke, runs=runs, warmup=warmup, threads=threads, blocks=blocks,
                       confidence=confidence)
    log.debug("%s @%d threads: median %.3f ms, p90 %.3f ms", model_path, threads, stats.median, stats.p90)
    return stats


def _interpreter(model_path: str | os.PathLike, model_input: np.ndarray, threads: int) -> Any:
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
    return interpreter


def interleaved_tflite_latency(models: Mapping[str, tuple[str | os.PathLike, np.ndarray]], *,
                               threads: int = 1, runs: int = 50, warmup: int = 5,
                               blocks: int = DEFAULT_BLOCKS,
                               confidence: float = DEFAULT_CONFIDENCE) -> dict[str, LatencyStats]:
    """Latency of several .tflite files (name -> (path, input)) at ``threads`` threads, timed in
    turns (:func:`interleaved_calls`); every interpreter is loaded before the first timed run."""
    interpreters = {name: _interpreter(path, x, threads) for name, (path, x) in models.items()}
    stats = interleaved_calls({name: it.invoke for name, it in interpreters.items()}, runs=runs,
                              warmup=warmup, threads=threads, blocks=blocks, confidence=confidence)
    for name, st in stats.items():
        log.debug("%s @%d threads: median %.3f ms [%.3f, %.3f]", name, threads, st.median, *st.ci)
    return stats

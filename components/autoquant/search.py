"""The auto-quantize search: the fastest candidate whose accuracy loss fits a budget.

The engine knows nothing about detectors or TensorFlow. It takes three callables:

* ``build(spec) -> bytes``: the .tflite for a :class:`CandidateSpec` (scheme + layers kept float);
* ``measure(tflite, spec) -> Measurement``: a real accuracy metric (higher is better, e.g. COCO
  mAP in 0..1) and a real latency of those bytes;
* ``rank_layers() -> list[LayerStat]``: the layers of the full-int8 model, worst quantization
  error first (from ``tf.lite.experimental.QuantizationDebugger``).

Candidates are tried in order of expected speed and the search stops at the first that fits:
QAT int8, PTQ full int8, full int8 with per-tensor weight scales (only when a size limit is set
and full int8 missed it: same speed, no per-channel tables, so a smaller file), selective int8
(the worst layers kept float, ``step`` more each time, until the budget is met or no gain
remains), 16x8, float16, fp32. ΔmAP is in points:
``(reference - metric) * metric_scale``. The order and the choice are deterministic; only the
measured latencies vary between runs.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from edgeship.detection.layer_debug import LayerStat  # re-exported: the search ranks these

log = logging.getLogger(__name__)

SCHEMES = ("qat_int8", "full_int8", "full_int8_pt", "selective_int8", "int16x8", "float16", "fp32")


class NoQuantizableLayersError(ValueError):
    """The model has no layer int8 can quantize: every int8 candidate would be the float model."""


@dataclass(frozen=True)
class CandidateSpec:
    """One thing to build: a scheme and (for selective int8) the tensors kept in float."""

    scheme: str
    float_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; expected one of {SCHEMES}")

    @property
    def name(self) -> str:
        """A stable name: the scheme, plus ``_f<k>`` for k layers kept float."""
        return f"{self.scheme}_f{len(self.float_layers)}" if self.scheme == "selective_int8" else self.scheme


@dataclass
class Measurement:
    """What ``measure`` returns: accuracy (higher is better), latency in ms, file size."""

    metric: float
    latency_ms: float
    size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """One row of the trade-off curve."""

    name: str
    scheme: str
    float_layers: list[str]
    size_bytes: int | None = None
    latency_ms: float | None = None
    metric: float | None = None
    delta_pt: float | None = None
    fits: bool = False
    misses: list[str] = field(default_factory=list)   # why it does not fit
    error: str | None = None                         # build/measure failure
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    tflite: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("tflite")
        return d


@dataclass
class SearchResult:
    """The outcome: every candidate tried, the chosen one, and whether it meets the budget."""

    budget_pt: float
    max_latency_ms: float | None
    max_size_bytes: int | None
    reference_metric: float
    candidates: list[CandidateResult]
    chosen: CandidateResult | None
    met_budget: bool
    partial: bool
    stop_reason: str
    layer_ranking: list[LayerStat] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """One line for people: what was chosen and how far it is from the budget."""
        if self.chosen is None:
            return f"no candidate could be measured ({self.stop_reason})"
        c = self.chosen
        lat = f"{c.latency_ms:.2f} ms" if c.latency_ms is not None else "latency n/a"
        head = "meets the budget" if self.met_budget else "NO candidate meets the budget; most accurate"
        return (f"{head}: {c.name} (ΔmAP {c.delta_pt:.2f} pt vs budget {self.budget_pt:.2f} pt, "
                f"margin {self.budget_pt - c.delta_pt:+.2f} pt, {lat}, {c.size_bytes} B)"
                + (" [partial search: " + self.stop_reason + "]" if self.partial else ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_pt": self.budget_pt, "max_latency_ms": self.max_latency_ms,
            "max_size_bytes": self.max_size_bytes, "reference_metric": self.reference_metric,
            "chosen": self.chosen.name if self.chosen else None, "met_budget": self.met_budget,
            "partial": self.partial, "stop_reason": self.stop_reason, "message": self.message,
            "seconds": round(self.seconds, 3),
            "candidates": [c.to_dict() for c in self.candidates],
            "layer_ranking": [asdict(s) for s in self.layer_ranking],
            "files": dict(self.files),
        }


def validate_budget(budget_pt: Any, max_latency_ms: Any = None, max_size_bytes: Any = None) -> None:
    """Raise ValueError naming the bad value when a budget is negative or not a finite number."""
    for name, value, required in (("budget_pt", budget_pt, True), ("max_latency_ms", max_latency_ms, False),
                                  ("max_size_bytes", max_size_bytes, False)):
        if value is None and not required:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"autoquant {name} must be a finite number, got {value!r}")
        if value < 0:
            raise ValueError(f"autoquant {name} must be >= 0 (mAP points lost vs float), got {value!r}"
                             if name == "budget_pt" else f"autoquant {name} must be >= 0, got {value!r}")


class _Limits:
    def __init__(self, max_candidates: int | None, max_seconds: float | None, clock: Callable[[], float]):
        self.max_candidates, self.max_seconds, self.clock = max_candidates, max_seconds, clock
        self.start = clock()
        self.tried = 0

    def exhausted(self) -> str | None:
        if self.max_candidates is not None and self.tried >= self.max_candidates:
            return f"max_candidates={self.max_candidates} reached"
        if self.max_seconds is not None and self.clock() - self.start >= self.max_seconds:
            return f"time limit {self.max_seconds:g} s reached after {self.clock() - self.start:.1f} s"
        return None


def search(build: Callable[[CandidateSpec], bytes],
           measure: Callable[[bytes, CandidateSpec], Measurement],
           *, budget_pt: float, rank_layers: Callable[[], Sequence[LayerStat]] | None = None,
           has_qat: bool = True, max_latency_ms: float | None = None,
           max_size_bytes: int | None = None, step: int = 2, max_float_layers: int | None = None,
           patience: int = 2, min_gain_pt: float = 0.0, max_candidates: int | None = None,
           max_seconds: float | None = None, metric_scale: float = 100.0,
           on_candidate: Callable[[CandidateResult], None] | None = None,
           clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """Run the search (see the module docstring) and return every candidate tried and the choice.

    The fp32 model is built and measured first as the reference (ΔmAP 0); it is also the last
    candidate. ``max_candidates`` counts candidates after the reference; ``max_seconds`` bounds
    the whole search (checked before each candidate). When a limit stops the search early the
    result is ``partial=True`` with the best so far. When nothing fits, ``chosen`` is the most
    accurate candidate and ``met_budget=False``. Raises ValueError for a negative budget or step.
    """
    _validate_search_args(budget_pt, max_latency_ms, max_size_bytes, step, max_candidates)
    s = _Search(build, measure, budget_pt=budget_pt, max_latency_ms=max_latency_ms,
                max_size_bytes=max_size_bytes, metric_scale=metric_scale, on_candidate=on_candidate,
                clock=clock, limits=_Limits(max_candidates, max_seconds, clock))
    t_start = clock()
    ref_row = s.run(CandidateSpec("fp32"), reference=None)
    if ref_row.metric is None:
        raise ValueError(f"the fp32 reference could not be built or measured: {ref_row.error}")
    s.reference = ref_row.metric

    chosen, plan_done = _first_fit(s, (("qat_int8",) if has_qat else ()) + ("full_int8",))
    full = next((r for r in s.rows if r.scheme == "full_int8"), None)
    if (not plan_done and full is not None and max_size_bytes is not None
            and any(m.startswith("size") for m in full.misses)):
        # selective int8 would only grow the file
        chosen, plan_done = _first_fit(s, ("full_int8_pt",))
    ranking: list[LayerStat] = []
    if not plan_done and rank_layers is not None and full is not None and full.metric is not None:
        ranking = _rank(rank_layers)
        chosen, plan_done = _selective(s, ranking, full.metric, step=step, patience=patience,
                                       max_float_layers=max_float_layers, min_gain_pt=min_gain_pt)
    if not plan_done:
        chosen, plan_done = _first_fit(s, ("int16x8", "float16"))

    chosen, met = _settle_choice(s, ref_row, chosen, plan_done)
    result = SearchResult(budget_pt=float(budget_pt), max_latency_ms=max_latency_ms,
                          max_size_bytes=max_size_bytes, reference_metric=s.reference, candidates=s.rows,
                          chosen=chosen, met_budget=met, partial=s.partial, stop_reason=s.stop_reason,
                          layer_ranking=ranking, seconds=clock() - t_start)
    (log.info if met else log.warning)("autoquant: %s", result.message)
    return result


def _validate_search_args(budget_pt: Any, max_latency_ms: Any, max_size_bytes: Any, step: Any,
                          max_candidates: Any) -> None:
    """Raise ValueError for a bad budget, step or candidate limit before anything is built."""
    validate_budget(budget_pt, max_latency_ms, max_size_bytes)
    if int(step) < 1:
        raise ValueError(f"autoquant step (layers kept float per round) must be >= 1, got {step!r}")
    if max_candidates is not None and int(max_candidates) < 1:
        raise ValueError(f"autoquant max_candidates must be >= 1, got {max_candidates!r}")


@dataclass
class _Search:
    """The state of one search: the callables, the budget, the rows so far and why it stopped."""

    build: Callable[[CandidateSpec], bytes]
    measure: Callable[[bytes, CandidateSpec], Measurement]
    budget_pt: float
    max_latency_ms: float | None
    max_size_bytes: int | None
    metric_scale: float
    on_candidate: Callable[[CandidateResult], None] | None
    clock: Callable[[], float]
    limits: _Limits
    rows: list[CandidateResult] = field(default_factory=list)
    reference: float | None = None
    stop_reason: str = ""
    partial: bool = False

    def run(self, spec: CandidateSpec, *, reference: float | None) -> CandidateResult:
        """Build and measure one candidate, judge it against the budget and record it as a row."""
        t0 = self.clock()
        row = CandidateResult(spec.name, spec.scheme, list(spec.float_layers))
        try:
            data = self.build(spec)
            m = self.measure(data, spec)
            row.tflite = data
            row.size_bytes = int(m.size_bytes if m.size_bytes is not None else len(data))
            row.latency_ms, row.metric, row.extra = float(m.latency_ms), float(m.metric), dict(m.extra)
        except NoQuantizableLayersError:
            raise
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is a row, not a crash
            row.error = f"{type(exc).__name__}: {exc}"
            log.warning("candidate %s failed: %s", spec.name, row.error)
        row.seconds = self.clock() - t0
        if row.metric is not None:
            self._judge(row, row.metric if reference is None else reference)
        self.rows.append(row)
        log.info("%-20s metric=%s Δ=%s pt latency=%s ms size=%s %s", row.name,
                 _fmt(row.metric, ".4f"), _fmt(row.delta_pt, ".2f"), _fmt(row.latency_ms, ".2f"),
                 row.size_bytes, "FITS" if row.fits else (row.error or "; ".join(row.misses)))
        if self.on_candidate:
            self.on_candidate(row)
        return row

    def _judge(self, row: CandidateResult, ref: float) -> None:
        """Set a measured row's ΔmAP, the limits it misses and whether it fits."""
        row.delta_pt = (ref - row.metric) * self.metric_scale
        if row.delta_pt > self.budget_pt + 1e-9:
            row.misses.append(f"ΔmAP {row.delta_pt:.2f} pt > {self.budget_pt:.2f} pt")
        if self.max_latency_ms is not None and row.latency_ms > self.max_latency_ms:
            row.misses.append(f"latency {row.latency_ms:.2f} ms > {self.max_latency_ms:.2f} ms")
        if self.max_size_bytes is not None and row.size_bytes > self.max_size_bytes:
            row.misses.append(f"size {row.size_bytes} B > {self.max_size_bytes} B")
        row.fits = not row.misses

    def attempt(self, spec: CandidateSpec) -> CandidateResult | None:
        """Run a candidate against the reference, or return None (partial) when a limit is reached."""
        why = self.limits.exhausted()
        if why:
            self.stop_reason, self.partial = why, True
            return None
        self.limits.tried += 1
        return self.run(spec, reference=self.reference)


def _first_fit(s: _Search, schemes: Sequence[str]) -> tuple[CandidateResult | None, bool]:
    """Try the schemes in order; ``(row, True)`` for the first that fits or hits a limit."""
    for scheme in schemes:
        row = s.attempt(CandidateSpec(scheme))
        if row is None or row.fits:
            return row, True
    return None, False


def _rank(rank_layers: Callable[[], Sequence[LayerStat]]) -> list[LayerStat]:
    """The layers worst quantization error first (name breaks ties); [] when ranking fails."""
    try:
        return sorted(rank_layers(), key=lambda s: (-_finite(s.score), s.name))
    except Exception as exc:  # noqa: BLE001
        log.warning("layer ranking failed, skipping selective int8: %s", exc)
        return []


def _selective(s: _Search, ranking: list[LayerStat], best_int8: float, *, step: int, patience: int,
               max_float_layers: int | None, min_gain_pt: float) -> tuple[CandidateResult | None, bool]:
    """Keep ``step`` more of the worst layers float each round until one fits or gains stop."""
    stale = 0
    limit = len(ranking) if max_float_layers is None else min(len(ranking), int(max_float_layers))
    k = 0
    while k < limit:
        k = min(k + int(step), limit)
        row = s.attempt(CandidateSpec("selective_int8", tuple(layer.name for layer in ranking[:k])))
        if row is None or row.fits:
            return row, True
        if row.metric is None:  # a failed build counts as a round without gain
            stale += 1
            if stale >= patience:
                break
            continue
        if any(m.startswith(("latency", "size")) for m in row.misses):
            log.info("selective int8 with %d float layers already misses latency/size: stop adding", k)
            break
        if (row.metric - best_int8) * s.metric_scale > min_gain_pt:
            best_int8, stale = row.metric, 0
        else:
            stale += 1
            if stale >= patience:
                log.info("no gain from %d more float layers: stop selective int8", patience * step)
                break
    return None, False


def _settle_choice(s: _Search, ref_row: CandidateResult, chosen: CandidateResult | None,
                   plan_done: bool) -> tuple[CandidateResult | None, bool]:
    """The final choice and whether it meets the budget (fp32, best fitting, or most accurate)."""
    if not plan_done and not s.partial and ref_row.fits:
        chosen = ref_row
        s.stop_reason = "fell back to fp32"
    elif chosen is not None:
        s.stop_reason = s.stop_reason or f"{chosen.name} is the first candidate that fits"

    measured = [r for r in s.rows if r.metric is not None]
    fitting = [r for r in measured if r.fits]
    met = chosen is not None and chosen.fits
    if s.partial and chosen is None and fitting:
        chosen = min(fitting, key=lambda r: (r.latency_ms, r.size_bytes, r.name))
        met = True
    if chosen is None:
        chosen = max(measured, key=lambda r: (r.metric, -(r.latency_ms or 0.0))) if measured else None
        met = False
        if not s.partial:
            s.stop_reason = "no candidate meets the budget; returning the most accurate"
    return chosen, met


def _finite(value: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else -math.inf


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)

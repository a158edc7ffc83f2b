"""The gate decision artifact (select's ``decision.json``): the verdict, its reasons, the gate's
configuration, the rules as applied (in words), the evidence they rested on (val images,
intervals), the champion it was compared with and every candidate's row.

Format 2 adds ``outcome`` ("passed" | "refused" | "cannot_decide"), ``rules``, ``evidence``, the
quality floor (``config.min_map`` / ``config.min_map50``) and the candidates' intervals; format 1
decisions still load (the new fields take the values that describe what the old gate did).

``Decision.to_dict`` / :func:`save` write it; :func:`load` reads and validates it (the one
reader: the pipeline's not-published step, the main job and publish use it).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "decision.json"
KEYS = ("format_version", "publish", "chosen", "forced", "reasons", "config", "float_reference",
        "champion", "dataset_fingerprint", "inputs", "candidates")
DECISION_FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
OUTCOMES = ("passed", "refused", "cannot_decide")


@dataclass(frozen=True)
class GateConfig:
    """What the gate enforces. Budgets in mAP points (1 pt = 0.01 mAP@[.5:.95])."""

    accuracy_budget: float | None = 1.0  # max ΔmAP vs float, points; None = not configured
    latency_budget_ms: float = 0.0  # max 1-thread median latency; 0 = no latency budget
    tolerance: float = 0.5  # max mAP drop vs the champion, points
    force_promote: bool = False
    min_map: float = 0.0    # quality floor: min mAP@[.5:.95] (0..1) of any release; 0 = off
    min_map50: float = 0.0  # quality floor: min mAP@.5 (0..1); 0 = off

    def __post_init__(self) -> None:
        for name in ("min_map", "min_map50"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or not 0.0 <= value <= 1.0):
                raise ValueError(f"gate {name} must be a number in 0..1 (mAP, not points), got {value!r}")
        for name in ("accuracy_budget", "latency_budget_ms", "tolerance"):
            value = getattr(self, name)
            if value is None and name == "accuracy_budget":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"gate {name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"gate {name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Champion:
    """The model currently served on the target channel."""

    version: str
    map: float | None  # mAP@[.5:.95], 0..1, from its manifest metrics
    variant: str | None = None
    dataset_fingerprint: str | None = None
    source: str = ""  # where it was read from (for the record)
    labels: list[str] | None = None  # its manifest's label map (None: not known)


@dataclass
class Candidate:
    name: str
    map: float
    delta_map_pts: float  # float mAP - variant mAP, in points (positive = worse than float)
    latency_ms: float | None
    size_bytes: int | None
    eligible: bool
    why: list[str] = field(default_factory=list)
    map50: float | None = None
    delta_map_ci: list[float] | None = None  # [low, high] points (paired bootstrap), None = not measured
    latency_ci: list[float] | None = None    # [low, high] ms of the 1-thread median
    accuracy: str = ""  # vs the budget: "within" | "over" | "undecided" | "" (no budget)
    images_to_settle: int | None = None  # val images that would put the interval on one side of the budget
    scheme: str = ""  # the row's quantization scheme (fp32, full_int8, selective_int8, ...)


@dataclass
class Decision:
    """The gate's verdict. ``publish`` drives the pipeline's dsl.If around publish."""

    publish: bool
    chosen: str | None
    reasons: list[str]
    candidates: list[Candidate]
    config: GateConfig
    float_map: float
    float_reference: str
    champion: Champion | None
    forced: bool = False
    dataset_fingerprint: str | None = None
    inputs: dict = field(default_factory=dict)  # provenance: where the report was read
    outcome: str = ""  # "passed" | "refused" | "cannot_decide" (before force-promote)
    rules: list[str] = field(default_factory=list)  # every rule as applied, in words
    evidence: dict = field(default_factory=dict)  # val images, intervals, images needed

    def to_dict(self) -> dict:
        return {
            "format_version": DECISION_FORMAT_VERSION,
            "publish": self.publish,
            "chosen": self.chosen,
            "forced": self.forced,
            "reasons": list(self.reasons),
            "config": asdict(self.config),
            "float_reference": {"name": self.float_reference, "map": self.float_map},
            "champion": asdict(self.champion) if self.champion else None,
            "dataset_fingerprint": self.dataset_fingerprint,
            "inputs": dict(self.inputs),
            "candidates": [asdict(c) for c in self.candidates],
            "outcome": self.outcome,
            "rules": list(self.rules),
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, doc: dict, where: str = "decision") -> "Decision":
        """The inverse of :meth:`to_dict`; raises ValueError naming ``where`` and the bad key."""
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(doc).__name__}")
        missing = [k for k in KEYS if k not in doc]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        if doc["format_version"] not in READABLE_FORMATS:
            raise ValueError(f"{where}: format_version {doc['format_version']!r} is not one of "
                             f"{list(READABLE_FORMATS)}")
        if not isinstance(doc["publish"], bool):
            raise ValueError(f"{where}: 'publish' must be true or false, got {doc['publish']!r}")
        if not isinstance(doc["reasons"], list) or not all(isinstance(r, str) for r in doc["reasons"]):
            raise ValueError(f"{where}: 'reasons' must be a list of strings")
        try:
            champion = Champion(**doc["champion"]) if doc["champion"] else None
            ref = doc["float_reference"]
            return cls(publish=doc["publish"], chosen=doc["chosen"], reasons=list(doc["reasons"]),
                       candidates=[Candidate(**c) for c in doc["candidates"]],
                       config=GateConfig(**doc["config"]), float_map=float(ref["map"]),
                       float_reference=str(ref["name"]), champion=champion,
                       forced=bool(doc["forced"]), dataset_fingerprint=doc["dataset_fingerprint"],
                       inputs=dict(doc["inputs"]), outcome=str(doc.get("outcome") or _old_outcome(doc)),
                       rules=list(doc.get("rules") or []), evidence=dict(doc.get("evidence") or {}))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"{where}: malformed decision ({type(exc).__name__}: {exc})") from exc


def _old_outcome(doc: dict) -> str:
    """The outcome of a format-1 decision (which had none): passed unless forced or refused."""
    return "passed" if doc["publish"] and not doc.get("forced") else "refused"


def save(decision: Decision, path: str | Path) -> Path:
    """Write ``decision`` as JSON to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(decision.to_dict(), indent=2, default=str) + "\n")
    return path


def load(path: str | Path) -> Decision:
    """Read and validate a decision.json (a file, or the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"gate decision not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    return Decision.from_dict(doc, where=str(path))

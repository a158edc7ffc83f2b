"""The channel's champion, re-scored on this evaluation's images.

The gate asks whether the new model is worse than the one the channel serves now. Comparing the
champion's manifest mAP (measured on the val split of *its* run) with the new model's (measured on
this run's) compares two different image sets: on a small or changed val split that difference is
mostly noise. So when the channel serves a .tflite with the same labels, the evaluation downloads
it (size and sha256 checked against its manifest), runs it in LiteRT on the same images as every
variant, and reports each variant's ΔmAP against it with a paired bootstrap interval (the same
drawn images for both). When it cannot (no champion yet, other labels, a Core ML or unreadable
model, registry unreachable) the record says why and the gate falls back to the manifest figure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


@dataclass
class ChampionFound:
    """What the evaluation knows of the champion: a detector to run (None when it cannot be
    re-scored) and the record that goes into report.json ``champion``."""

    detector: Any
    record: dict[str, Any] = field(default_factory=dict)


def find(bucket: str, model_name: str, channel: str, class_names: Sequence[str], work_dir: str | Path,
         *, threads: int | None = None, lookup: Any = None) -> ChampionFound | None:
    """The champion of ``model_name`` on ``channel``, ready to run; None when no bucket or model is
    given (no comparison asked for). ``lookup(model, channel) -> Champion | None`` replaces the
    registry lookup (tests). Never raises for a champion that cannot be used: the record says why."""
    if not (bucket and model_name and channel):
        return None
    from edgeship.delivery import champion as registry_champion

    record: dict[str, Any] = {"model": model_name, "channel": channel, "version": None, "rescored": False}
    try:
        found = (lookup or (lambda m, c: registry_champion.find_champion(bucket, m, c)))(model_name, channel)
    except Exception as exc:  # noqa: BLE001 - the registry and the bucket unreadable: say so, go on
        return _without(record, f"champion lookup failed: {type(exc).__name__}: {str(exc)[:200]}")
    if found is None:
        return _without(record, "no champion on the channel yet (first release)")
    record.update(version=found.version, source=found.source, manifest_map=found.map,
                  dataset_fingerprint=found.dataset_fingerprint)
    if found.labels is not None and list(found.labels) != list(class_names):
        return _without(record, f"the champion serves other labels ({list(found.labels)[:8]} vs "
                                f"{list(class_names)[:8]}): not comparable on these images")
    try:
        fetched = registry_champion.fetch_model(bucket, model_name, found.version, work_dir)
        spec = fetched.manifest.get("input")
        if not isinstance(spec, dict) or spec.get("resize") not in ("stretch", "letterbox"):
            return _without(record, f"champion {found.version}'s manifest does not say its resize policy "
                                    "(input.resize: published before manifests carried it), so it cannot be run "
                                    "the way it was trained")
        from edgeship.detection.runners import TFLiteDetector

        detector = TFLiteDetector(fetched.path, num_threads=threads, input_spec=spec,
                                  output_map=fetched.manifest.get("outputs"), name=f"champion {found.version}",
                                  num_classes=len(class_names))
    except Exception as exc:  # noqa: BLE001 - any champion that cannot be loaded: say why, go on
        return _without(record, f"{type(exc).__name__}: {str(exc)[:300]}")
    record.update(file=fetched.uri, variant=fetched.manifest.get("variant"),
                  input_shape=list((fetched.manifest.get("input") or {}).get("shape") or []),
                  resize=(fetched.manifest.get("input") or {}).get("resize") or "stretch")
    log.info("champion %s of %s/%s (%s): re-scored on this split", found.version, model_name, channel,
             fetched.uri)
    return ChampionFound(detector, record)


def _without(record: dict[str, Any], reason: str) -> ChampionFound:
    log.warning("champion not re-scored: %s", reason)
    return ChampionFound(None, {**record, "reason": reason})

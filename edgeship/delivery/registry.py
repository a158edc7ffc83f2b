"""The model registry in Firestore, as the publisher, the gate and operators read and steer it.

Documents (docs/delivery.md): ``models/{model}/versions/{version}`` and
``models/{model}/releases/{channel}-{version}`` (create-only, written by the Cloud Function), and
the operators' control document ``models/{model}/channels/{channel}`` (paused, pinned_version,
history). What a channel serves is decided by one rule, :func:`serving_version`, which the gate
(champion), the CLI (``edgeship channel``) and the reference client all use.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import socket
from typing import Any

from edgeship.contracts import manifest as mf

log = logging.getLogger(__name__)


FIRESTORE_TIMEOUT_S = 10.0
CHANNEL_ACTIONS = ("rollback", "pause", "resume", "unpublish")


def _utc_iso(now: _dt.datetime) -> str:
    return now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _retry():
    """Retry transient Firestore errors for at most FIRESTORE_TIMEOUT_S in all (not the 60 s default)."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    return gretry.Retry(predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
                        initial=0.1, maximum=1.0, multiplier=2.0, timeout=FIRESTORE_TIMEOUT_S)


def firestore_client():
    """A Firestore client for the project in GOOGLE_CLOUD_PROJECT (the emulator when set)."""
    from google.cloud import firestore

    return firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


def newest_release(db, model: str, channel: str) -> dict | None:
    """The channel's newest release record (the function's create-only records), or None."""
    query = (db.collection("models").document(model).collection("releases")
             .where(filter=_field_filter("channel", "==", channel))
             .order_by("version", direction="DESCENDING").limit(1))
    docs = list(query.stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
    return docs[0].to_dict() if docs else None


def _field_filter(path: str, op: str, value: Any):
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(path, op, value)


def channel_state(db, model: str, channel: str) -> dict:
    """The operator control document of a channel ({} when never written)."""
    snap = (db.collection("models").document(model).collection("channels").document(channel)
            .get(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
    return snap.to_dict() or {} if snap.exists else {}


def serving_version(control: dict | None, newest_version: str | None) -> str | None:
    """The channel rule: nothing when an operator unpublished the channel; else the version an
    operator pinned in the control document, else the newest release on the channel (None when
    there is neither). Pausing does not change what is served; it stops clients from moving to it.
    (Unpublishing also pauses, so clients that do not know ``unpublished`` keep what they hold.)"""
    if (control or {}).get("unpublished"):
        return None
    pinned = (control or {}).get("pinned_version")
    return pinned or newest_version


def current_version(db, model: str, channel: str) -> str | None:
    """What the channel serves (:func:`serving_version` over the control document and releases)."""
    newest = newest_release(db, model, channel)
    return serving_version(channel_state(db, model, channel), newest["version"] if newest else None)


def version_manifest(db, model: str, version: str) -> dict | None:
    """The registered manifest of ``version`` (``models/{model}/versions/{version}.manifest``)."""
    snap = (db.collection("models").document(model).collection("versions").document(version)
            .get(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
    return (snap.to_dict() or {}).get("manifest") if snap.exists else None


def newest_manifest_in_bucket(bucket: str, model: str, channel: str) -> tuple[str, dict] | None:
    """(uri, manifest) of the newest manifest for ``channel`` under gs://bucket/models/{model}/,
    for when Firestore cannot be read. Version ids sort in publish order, so the newest is the
    largest; unreadable manifests are skipped with a warning."""
    from edgeship.base import storage

    prefix = f"gs://{bucket}/models/{model}/"
    manifests = sorted((u for u in storage.list_files(prefix) if u.endswith("/manifest.json")
                        and u[len(prefix):].count("/") == 1), reverse=True)
    for uri in manifests:
        try:
            data = json.loads(storage.read_bytes(uri))
        except (ValueError, FileNotFoundError) as exc:
            log.warning("skipping unreadable manifest %s: %s", uri, exc)
            continue
        if data.get("channel") == channel:
            return uri, data
    return None


def current_release_manifest(model_name: str, channel: str, bucket: str | None = None) -> dict | None:
    """The manifest of the version the channel currently serves (for the gate's champion).

    Reads Firestore; when Firestore cannot be reached and a bucket is given, falls back to the
    newest manifest for the channel in Cloud Storage. None when nothing was published.
    """
    try:
        db = firestore_client()
        version = current_version(db, model_name, channel)
        return None if version is None else version_manifest(db, model_name, version)
    except Exception as exc:  # noqa: BLE001 - registry unreachable: fall back to the bucket
        if not bucket:
            raise
        log.warning("Firestore registry unreadable (%s: %s); reading manifests from gs://%s",
                    type(exc).__name__, exc, bucket)
    found = newest_manifest_in_bucket(bucket, model_name, channel)
    return found[1] if found else None


# -------------------------------------------------------------------------------- channel control

def operator_identity() -> str:
    """Who acts: $EDGESHIP_OPERATOR, else user@host."""
    who = os.environ.get("EDGESHIP_OPERATOR")
    if who:
        return who
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def channel_action(action: str, model: str, channel: str, *, reason: str, to: str | None = None,
                   who: str | None = None, db=None) -> dict:
    """Apply an operator action to ``models/{model}/channels/{channel}`` and return the new state.

    action: ``rollback`` (pin ``to``, default: the release before the one now served),
    ``pause`` (the kill switch: clients keep what they hold), ``unpublish`` (the channel serves
    nothing: ``unpublished`` and ``paused`` set, so no client installs anything from it and a
    client with an empty cache gets nothing; the files stay, immutable), ``resume`` (clear pause,
    pin and unpublish: follow the newest release again). Every action appends {action, version,
    by, at, reason} to the document's history. Raises ValueError naming a bad
    model/channel/version/reason.
    """
    from google.cloud import firestore

    mf.check_name(model, "model name")
    mf.check_channel(channel)
    if action not in CHANNEL_ACTIONS:
        raise ValueError(f"channel action {action!r} is not one of {', '.join(CHANNEL_ACTIONS)}")
    if not reason or not reason.strip():
        raise ValueError(f"--reason is required for channel {action} (who, when and why are recorded)")
    db = db or firestore_client()
    model_ref = db.collection("models").document(model)
    state = channel_state(db, model, channel)
    target = None
    if action == "rollback" and state.get("unpublished"):
        raise ValueError(f"channel {channel!r} of {model} is unpublished: `edgeship channel resume` "
                         "publishes it again (then roll back if needed)")
    if action == "rollback":
        if to is not None:
            mf.check_version(to, "--to")
            snap = model_ref.collection("releases").document(mf.release_id(channel, to)).get(
                retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)
            if not snap.exists:
                raise ValueError(f"--to {to}: no release of {model} on channel {channel!r} has that version")
            target = to
        else:
            serving = serving_version(state, (newest_release(db, model, channel) or {}).get("version"))
            if serving is None:
                raise ValueError(f"channel {channel!r} of {model} has no release to roll back from")
            older = list(model_ref.collection("releases")
                         .where(filter=_field_filter("channel", "==", channel))
                         .where(filter=_field_filter("version", "<", serving))
                         .order_by("version", direction="DESCENDING").limit(1)
                         .stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
            if not older:
                raise ValueError(f"channel {channel!r} of {model}: nothing older than {serving} to roll back to")
            target = older[0].to_dict()["version"]
    who = who or operator_identity()
    now = _utc_iso(_dt.datetime.now(_dt.timezone.utc))
    entry = {"action": action, "version": target, "by": who, "at": now, "reason": reason.strip()}
    unpublished = action == "unpublish" or (action == "pause" and bool(state.get("unpublished")))
    new = {
        "model": model, "channel": channel,
        "paused": action in ("pause", "unpublish"),
        "unpublished": unpublished,
        "pinned_version": target if action == "rollback" else
        (state.get("pinned_version") if action in ("pause", "unpublish") else None),
        "updated_by": who, "updated_at": now, "updated_at_server": firestore.SERVER_TIMESTAMP,
        "reason": reason.strip(), "last_action": action,
        "history": list(state.get("history") or [])[-99:] + [entry],
    }
    model_ref.collection("channels").document(channel).set(new, retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)
    log.info("channel %s/%s: %s%s by %s: %s", model, channel, action,
             f" to {target}" if target else "", who, reason)
    return {k: v for k, v in new.items() if k != "updated_at_server"}


def show_channel(model: str, channel: str, *, db=None, limit: int = 10) -> dict:
    """The channel's control state, what it serves, and its newest releases."""
    mf.check_name(model, "model name")
    mf.check_channel(channel)
    db = db or firestore_client()
    state = channel_state(db, model, channel)
    releases = [d.to_dict() for d in db.collection("models").document(model).collection("releases")
                .where(filter=_field_filter("channel", "==", channel))
                .order_by("version", direction="DESCENDING").limit(limit).stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)]
    serving = serving_version(state, releases[0]["version"] if releases else None)
    return {"model": model, "channel": channel, "serving": serving,
            "paused": bool(state.get("paused")), "unpublished": bool(state.get("unpublished")),
            "pinned_version": state.get("pinned_version"),
            "history": state.get("history") or [],
            "releases": [{k: r.get(k) for k in ("version", "version_name", "created_at", "min_app_version",
                                                 "variant")} for r in releases]}

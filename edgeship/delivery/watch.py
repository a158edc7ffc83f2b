"""The Firestore side of the reference client: the two listeners (the channel's newest release,
the operators' control document), their health, and the release look-ups. ``ChannelWatch`` is
mixed into ``ModelClient``, which owns the state these methods fill (``_db``, ``_lock``,
``_watches``, ``_newest``, ``_control``, ``_wake``, ...)."""
from __future__ import annotations

import logging
import time

from edgeship.contracts import manifest as mf

log = logging.getLogger(__name__)

FIRESTORE_TIMEOUT_S = 10.0


class ChannelWatch:
    """Listeners and look-ups on ``models/{model}/releases`` and ``.../channels/{channel}``."""

    def _model_ref(self):
        return self._db.collection("models").document(self.model)

    def _subscribe(self) -> None:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (self._model_ref().collection("releases")
                 .where(filter=FieldFilter("channel", "==", self.channel))
                 .order_by("version", direction="DESCENDING").limit(1))
        self._watches["releases"] = query.on_snapshot(self._on_releases)
        self._watches["control"] = (self._model_ref().collection("channels").document(self.channel)
                                    .on_snapshot(self._on_control))

    def _unsubscribe(self) -> None:
        for watch in list(self._watches.values()):
            try:
                watch.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - already broken
                log.debug("unsubscribe: %s", exc)
        self._watches.clear()

    def _on_releases(self, docs, changes, read_time) -> None:
        with self._lock:
            self._newest = docs[0].to_dict() if docs else None
            if self._newest and self._newest.get("version") not in self.seen_at:
                self.seen_at[self._newest.get("version")] = time.time()
            self._have_release_snapshot = True
        self._wake.set()

    def _on_control(self, docs, changes, read_time) -> None:
        with self._lock:
            snap = docs[0] if docs else None
            self._control = (snap.to_dict() or {}) if snap is not None and snap.exists else {}
        self._wake.set()

    def _watches_alive(self) -> bool:
        if len(self._watches) != 2:
            return False
        return all(not getattr(w, "_closed", False) and getattr(w, "is_active", True)
                   for w in self._watches.values())

    def _release(self, version: str) -> dict | None:
        """The release record of ``version`` on this channel (records are immutable: cached)."""
        if version in self._release_cache:
            return self._release_cache[version]
        snap = self._model_ref().collection("releases").document(
            mf.release_id(self.channel, version)).get(timeout=FIRESTORE_TIMEOUT_S)
        if not snap.exists:
            return None
        self._release_cache[version] = snap.to_dict()
        return self._release_cache[version]

    def _newest_compatible(self, below: str) -> dict | None:
        return next(self._older_compatible(below), None)

    def _older_compatible(self, below: str):
        """Releases on this channel older than ``below`` that this app can run, newest first."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (self._model_ref().collection("releases")
                 .where(filter=FieldFilter("channel", "==", self.channel))
                 .where(filter=FieldFilter("version", "<", below))
                 .order_by("version", direction="DESCENDING").limit(50))
        for snap in query.stream(timeout=FIRESTORE_TIMEOUT_S):
            release = snap.to_dict()
            if self._compatible(release):
                yield release

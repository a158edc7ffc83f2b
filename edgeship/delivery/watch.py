"""The Firestore side of the reference client: the two listeners (the channel's newest release,
the operators' control document), their health, and the release look-ups. ``ChannelWatch`` is
mixed into ``ModelClient``, which owns the state these methods fill (``_db``, ``_lock``,
``_watches``, ``_newest``, ``_control``, ``_wake``, ...)."""
from __future__ import annotations

import logging
import threading
import time

from edgeship.contracts import manifest as mf

log = logging.getLogger(__name__)

FIRESTORE_TIMEOUT_S = 10.0


class ChannelWatch:
    """Listeners and look-ups on ``models/{model}/releases`` and ``.../channels/{channel}``."""

    def _model_ref(self):
        return self._db.collection("models").document(self.model)

    def _subscribe(self) -> None:
        """Open both listeners. Each callback carries the subscription's number, so that a listener
        replaced by a later subscription (still closing in the background) changes nothing."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        self._generation = gen = self._generation + 1
        self._subscribed_at, self._first_snapshots = time.monotonic(), set()
        query = (self._model_ref().collection("releases")
                 .where(filter=FieldFilter("channel", "==", self.channel))
                 .order_by("version", direction="DESCENDING").limit(1))
        self._watches["releases"] = query.on_snapshot(lambda *a: self._on_releases(*a, gen=gen))
        self._watches["control"] = (self._model_ref().collection("channels").document(self.channel)
                                    .on_snapshot(lambda *a: self._on_control(*a, gen=gen)))

    def _unsubscribe(self, wait_s: float = 0.0) -> None:
        """Close the listeners on a helper thread, waiting at most ``wait_s``: closing a listener
        whose stream is being re-opened can block inside the Firestore library (seen in CI after
        a server restart), and the supervisor must go on to subscribe again regardless."""
        watches = list(self._watches.values())
        self._watches.clear()

        def close_all() -> None:
            for watch in watches:
                try:
                    watch.unsubscribe()
                except Exception as exc:  # noqa: BLE001 - already broken
                    log.debug("unsubscribe: %s", exc)

        closer = threading.Thread(target=close_all, name=f"unsubscribe-{self.model}", daemon=True)
        closer.start()
        closer.join(wait_s)
        if wait_s and closer.is_alive():
            log.warning("client %s/%s: a listener did not close within %.0f s; left to finish in the background",
                        self.model, self.channel, wait_s)

    def _on_releases(self, docs, changes, read_time, *, gen: int) -> None:
        with self._lock:
            if gen != self._generation:
                return
            self._first_snapshots.add("releases")
            self._newest = docs[0].to_dict() if docs else None
            if self._newest and self._newest.get("version") not in self.seen_at:
                self.seen_at[self._newest.get("version")] = time.time()
            self._have_release_snapshot = True
        self._wake.set()

    def _on_control(self, docs, changes, read_time, *, gen: int) -> None:
        with self._lock:
            if gen != self._generation:
                return
            self._first_snapshots.add("control")
            snap = docs[0] if docs else None
            self._control = (snap.to_dict() or {}) if snap is not None and snap.exists else {}
        self._wake.set()

    def _listener_problem(self) -> str | None:
        """Why the listeners must be re-created, or None while they are healthy: one stopped
        (server gone, stream broken), or a new subscription has not delivered its first snapshot
        within ``first_snapshot_timeout_s`` (a stream stuck connecting; doubled after each such
        retry, up to 8x, so a slow server is not hammered)."""
        if len(self._watches) != 2:
            return "listener stopped"
        if not all(not getattr(w, "_closed", False) and getattr(w, "is_active", True)
                   for w in self._watches.values()):
            return "listener stopped"
        limit = self.first_snapshot_timeout_s * 2 ** min(self._stuck_retries, 3)
        with self._lock:
            waiting = len(self._first_snapshots) < 2
        if waiting and time.monotonic() - self._subscribed_at > limit:
            self._stuck_retries += 1
            return f"no first snapshot within {limit:.0f} s"
        if not waiting:
            self._stuck_retries = 0
        return None

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

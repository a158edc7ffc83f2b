"""The local stand-in for Eventarc: Cloud Storage finalize events delivered as CloudEvents.

Run as its own process (``edgeship local up`` starts it)::

    python -m edgeship.localcloud.relay --listen 127.0.0.1:4443 --backend http://127.0.0.1:PORT \
        --function-url http://127.0.0.1:8090/ --state-dir .edgeship/local/relay

Design: a recording proxy, not a poller. fake-gcs-server's only event sink is Pub/Sub, so the relay
sits in front of it: ``STORAGE_EMULATOR_HOST`` names the relay, which forwards every request to
fake-gcs-server unchanged and watches the responses. When a request finalizes an object (a media,
multipart or completed resumable upload, copyTo, rewriteTo, compose, or an XML-API PUT) the
response carries the new object resource, and the relay turns it into a
``google.cloud.storage.object.v1.finalized`` CloudEvent. Why not poll the bucket listing every
100-200 ms? A listing costs O(objects in the bucket) each time; after the dataset upload that is
thousands of objects, parsed ~7 times a second on a 2-core machine shared with everything else,
and an object overwritten twice between two polls would lose a generation. The proxy costs nothing
when idle, sees every generation exactly when it is written, and delivers in well under 2 s.

Guarantees (what Eventarc gives a Cloud Function):
- at least once: the event is appended to ``journal.jsonl`` (flushed) *before* the upload's
  response goes back to the client, so an upload that succeeded always has its event on disk;
  delivered events are appended to ``delivered.jsonl`` as (bucket, name, generation). On start the
  relay replays journal entries not yet delivered, then reconciles with a listing of every bucket
  (objects written behind its back, e.g. straight to fake-gcs-server, are delivered too). A relay
  restart therefore loses nothing; a crash between a delivery and its record means one duplicate.
- in order per object: events are sharded by (bucket, name) onto a few worker threads, each a
  FIFO, so the generations of one object are delivered in the order they were written.
- retries: any non-2xx answer or connection error is retried with exponential backoff
  (0.1 s doubling to 5 s) up to ``--max-attempts``, then the event goes to ``dead.jsonl`` and
  is not retried again, even after a restart.

Delivery is binary-mode HTTP: ``ce-id`` (stable across retries), ``ce-source``
``//storage.googleapis.com/projects/_/buckets/B``, ``ce-type``, ``ce-subject`` ``objects/NAME``,
``ce-time``, ``ce-specversion: 1.0``, ``ce-bucket``; the body is the object resource as the JSON API
returned it (bucket, name, generation and metageneration as strings, size, md5Hash, crc32c,
contentType, timeCreated, updated, metadata when set, id, selfLink, mediaLink, ...).

Control routes (``/_relay/...``, not valid GCS paths): ``GET health``, ``GET stats``,
``POST reset`` (forget queues and state; tests), ``POST drain?timeout=S`` (wait until nothing is
pending).
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_TYPE = "google.cloud.storage.object.v1.finalized"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length",
}
_FINALIZING_JSON = (
    re.compile(r"^/upload/"),  # media / multipart / resumable (completion) uploads
    re.compile(r"^/storage/v1/b/[^/]+/o/.+/(copyTo|rewriteTo)/b/[^/]+/o/.+$"),
    re.compile(r"^/storage/v1/b/[^/]+/o/.+/compose$"),
)
_NOT_XML_API = re.compile(r"^/(storage|upload|download|batch|_relay)/")


def event_key(obj: dict[str, Any]) -> str:
    """The identity of one finalize: ``bucket/name#generation``."""
    return f"{obj['bucket']}/{obj['name']}#{obj['generation']}"


def make_event(obj: dict[str, Any]) -> dict[str, Any]:
    """A journal entry (CloudEvent attributes + data) for a finalized object resource."""
    obj = {k: v for k, v in obj.items() if k != "acl"}
    return {
        "id": uuid.uuid4().hex,
        "source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        "type": EVENT_TYPE,
        "subject": f"objects/{obj['name']}",
        "time": obj.get("updated") or obj.get("timeCreated") or _now_rfc3339(),
        "specversion": "1.0",
        "bucket": obj["bucket"],
        "key": event_key(obj),
        "accepted_at": time.time(),
        "data": obj,
    }


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def finalized_object(method: str, path: str, status: int, body: bytes) -> dict[str, Any] | None:
    """The object resource a JSON-API response finalized, or None if the request finalized none."""
    if method not in ("POST", "PUT") or not 200 <= status < 300:
        return None
    if not any(p.match(path) for p in _FINALIZING_JSON):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("kind") == "storage#rewriteResponse":
        doc = doc.get("resource") if doc.get("done") else None
    if not isinstance(doc, dict) or doc.get("kind") != "storage#object":
        return None
    if str(doc.get("generation", "0")) in ("0", "") or "name" not in doc or "bucket" not in doc:
        return None  # a resumable upload session was opened, nothing is written yet
    return doc


@dataclass
class _Shard:
    queue: deque = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)


class Relay:
    """Journal, delivered set and the delivery workers. Thread-safe."""

    def __init__(self, backend: str, function_url: str, state_dir: Path, *, shards: int = 4,
                 max_attempts: int = 50, max_backoff_s: float = 5.0) -> None:
        self.backend = urllib.parse.urlsplit(backend)
        self.function_url = urllib.parse.urlsplit(function_url)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal_path = self.state_dir / "journal.jsonl"
        self.delivered_path = self.state_dir / "delivered.jsonl"
        self.dead_path = self.state_dir / "dead.jsonl"
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._delivered: set[str] = set()
        self._queued: set[str] = set()
        self._pending = 0
        self._epoch = 0
        self.stats = {"accepted": 0, "delivered": 0, "attempts": 0, "failures": 0, "dead": 0}
        self._shards = [_Shard() for _ in range(shards)]
        self._journal = None
        self._delivered_file = None
        self._stopping = False

    # ---------------------------------------------------------------- state
    def load(self) -> int:
        """Read the state files, compact the journal to what is still pending, queue it."""
        if self.delivered_path.exists():
            for line in self.delivered_path.read_text().splitlines():
                if line.strip():
                    self._delivered.add(json.loads(line)["key"])
        if self.dead_path.exists():  # given up on: like Eventarc, not retried again
            for line in self.dead_path.read_text().splitlines():
                if line.strip():
                    self._delivered.add(json.loads(line)["key"])
        pending: list[dict[str, Any]] = []
        seen: set[str] = set()
        if self.journal_path.exists():
            for line in self.journal_path.read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("skipping a torn journal line: %.80r", line)
                    continue
                if event["key"] not in self._delivered and event["key"] not in seen:
                    seen.add(event["key"])
                    pending.append(event)
        tmp = self.journal_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in pending))
        tmp.replace(self.journal_path)
        self._journal = self.journal_path.open("a")
        self._delivered_file = self.delivered_path.open("a")
        for event in pending:
            self._enqueue(event)
        if pending:
            log.info("replaying %d undelivered event(s) from %s", len(pending), self.journal_path)
        return len(pending)

    def reconcile(self) -> int:
        """Queue events for objects in the backend that were never journaled nor delivered."""
        found = 0
        status, body = self.backend_request("GET", "/storage/v1/b?project=_")
        if status != 200:
            raise RuntimeError(f"listing buckets at {self.backend.geturl()} gave HTTP {status}")
        for bucket in json.loads(body).get("items", []):
            token = ""
            while True:
                quoted = urllib.parse.quote(bucket["name"], safe="")
                path = f"/storage/v1/b/{quoted}/o?maxResults=1000"
                if token:
                    path += "&pageToken=" + urllib.parse.quote(token)
                status, body = self.backend_request("GET", path)
                if status != 200:
                    raise RuntimeError(f"listing gs://{bucket['name']} gave HTTP {status}")
                doc = json.loads(body)
                items = sorted(doc.get("items", []), key=lambda o: int(o.get("generation", 0)))
                for obj in items:
                    key = event_key(obj)
                    with self._lock:
                        known = key in self._delivered or key in self._queued
                    if not known:
                        self.accept(obj)
                        found += 1
                token = doc.get("nextPageToken", "")
                if not token:
                    break
        if found:
            log.info("reconciliation found %d object(s) with no delivered event", found)
        return found

    def accept(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Journal and queue the finalize event of ``obj`` (once per generation)."""
        event = make_event(obj)
        with self._lock:
            if event["key"] in self._queued or event["key"] in self._delivered:
                return None
            self._journal.write(json.dumps(event) + "\n")
            self._journal.flush()
            self.stats["accepted"] += 1
        self._enqueue(event)
        log.info("accepted %s", event["key"])
        return event

    def _enqueue(self, event: dict[str, Any]) -> None:
        key = f"{event['data']['bucket']}/{event['data']['name']}"
        shard = self._shards[zlib.crc32(key.encode()) % len(self._shards)]
        with self._lock:  # lock order: self._lock, then a shard's condition
            self._queued.add(event["key"])
            self._pending += 1
            with shard.cond:
                shard.queue.append((self._epoch, event))
                shard.cond.notify()

    def reset(self) -> None:
        """Forget everything: queues, journal, delivered set (between tests)."""
        with self._lock:
            self._epoch += 1
            for shard in self._shards:
                with shard.cond:
                    shard.queue.clear()
            self._queued.clear()
            self._delivered.clear()
            self._pending = 0
            for name in ("accepted", "delivered", "attempts", "failures", "dead"):
                self.stats[name] = 0
            for f in (self._journal, self._delivered_file):
                f.seek(0)
                f.truncate()
            self.dead_path.unlink(missing_ok=True)
            self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending; True if that happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "pending": self._pending,
                    "function_url": self.function_url.geturl(), "backend": self.backend.geturl()}

    # ------------------------------------------------------------- delivery
    def start_workers(self) -> None:
        for i, shard in enumerate(self._shards):
            threading.Thread(target=self._work, args=(shard,), name=f"deliver-{i}",
                             daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        for shard in self._shards:
            with shard.cond:
                shard.cond.notify_all()

    def _work(self, shard: _Shard) -> None:
        while not self._stopping:
            with shard.cond:
                while not shard.queue and not self._stopping:
                    shard.cond.wait()
                if self._stopping:
                    return
                epoch, event = shard.queue[0]
            done = self._deliver_with_retries(epoch, event)
            with shard.cond:
                if shard.queue and shard.queue[0][1] is event:
                    shard.queue.popleft()
            with self._lock:
                if epoch != self._epoch:
                    continue
                self._queued.discard(event["key"])
                self._pending -= 1
                if done:
                    self._delivered.add(event["key"])
                    self._delivered_file.write(json.dumps({"key": event["key"]}) + "\n")
                    self._delivered_file.flush()
                    self.stats["delivered"] += 1
                else:
                    self.stats["dead"] += 1
                    with self.dead_path.open("a") as f:
                        f.write(json.dumps(event) + "\n")
                self._idle.notify_all()

    def _deliver_with_retries(self, epoch: int, event: dict[str, Any]) -> bool:
        delay = 0.1
        for attempt in range(1, self.max_attempts + 1):
            if epoch != self._epoch or self._stopping:
                return False
            with self._lock:
                self.stats["attempts"] += 1
            try:
                status, body = self._post(event)
            except OSError as exc:
                status, body = 0, str(exc).encode()
            if 200 <= status < 300:
                log.info("delivered %s (attempt %d, %.0f ms after upload)", event["key"], attempt,
                         1000 * (time.time() - event["accepted_at"]))
                return True
            with self._lock:
                self.stats["failures"] += 1
            log.warning("delivery of %s failed (attempt %d/%d): %s %s; retrying in %.1f s",
                        event["key"], attempt, self.max_attempts, status or "no connection",
                        body[:200].decode("utf-8", "replace"), delay)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        log.error("giving up on %s after %d attempts; written to %s", event["key"],
                  self.max_attempts, self.dead_path)
        return False

    def _post(self, event: dict[str, Any]) -> tuple[int, bytes]:
        body = json.dumps(event["data"]).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "ce-id": event["id"],
            "ce-source": event["source"],
            "ce-type": event["type"],
            "ce-subject": event["subject"],
            "ce-time": event["time"],
            "ce-specversion": event["specversion"],
            "ce-bucket": event["bucket"],
        }
        url = self.function_url
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
        try:
            conn.request("POST", url.path or "/", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # -------------------------------------------------------------- backend
    def backend_request(self, method: str, path: str, body: bytes | None = None,
                        headers: dict[str, str] | None = None, timeout: float = 30
                        ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.backend.hostname, self.backend.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()



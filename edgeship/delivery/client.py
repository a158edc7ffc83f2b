"""The reference delivery client: what the iOS app does (docs/ios.md), in Python.

It listens (Firestore ``on_snapshot``) to what the register_model function maintains for one model
and channel (docs/delivery.md):

- the query ``models/{model}/releases where channel == C order by version desc limit 1`` (the
  channel's newest release record: version, model file path/size/sha256, min app version, input
  spec, all in the record), and
- the operator's control document ``models/{model}/channels/{channel}`` (paused, pinned_version).

What it serves: nothing new while the channel is paused; the pinned version when an operator pinned
one (rollback); else the newest release its app version can run (a release whose
``min_app_version`` is above the app's is skipped, and the newest compatible one is looked up).
To install a version it downloads the .tflite to a temporary file (retried), checks size and
sha256, loads it in LiteRT and runs it once (smoke check), then moves it into
``DIR/versions/{version}/`` and swaps the ``DIR/current`` symlink atomically (``os.replace``).
The previous version stays on disk (the last good model). On any failure the client keeps what it
holds and records why (``last_error``). When a listener stops (server gone, stream broken) it is
re-created; on every (re)connect the state is read again.

Programmatic use (the pipeline's main job)::

    client = ModelClient("detector", "stable", "/tmp/models", app_version="2.0").start()
    held = client.wait_for(version, timeout=30)   # HeldModel or None
    client.current                                # HeldModel(version, path, sha256, ...) or None
    client.stop()
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edgeship.contracts import manifest as mf
from edgeship.delivery import cache
from edgeship.delivery.verify import HeldModel, InstallError, smoke_check
from edgeship.delivery.watch import ChannelWatch

log = logging.getLogger(__name__)


class ModelClient(ChannelWatch):
    """Listen to a model's channel; download, verify, smoke-check and atomically swap in releases.

    Args:
        model, channel: what to follow.
        cache_dir: where models live (``versions/{version}/model.tflite``, ``current`` symlink,
            ``current.json``). Created on start.
        app_version: this app's version ("2.1.0"); releases needing a newer app are skipped.
            None: no limit.
        db, storage_client: injected clients (default: from the environment, emulators included).
        verify_model: the smoke check (default: LiteRT load + one run); replaceable in tests.
        keep: how many installed versions to keep on disk (the current one and the last good).
        conditions: when downloading is allowed (cellular, metered, low-data networks, free
            disk); while they forbid it the client waits, says why in ``status``, and re-checks
            every ``conditions_recheck_s``. ``network`` probes the network (default:
            $EDGESHIP_NETWORK, see ``cache.env_network_state``).
        progress: ``progress(version, bytes_done, bytes_total)`` while a model downloads.
        first_snapshot_timeout_s: a new listener that has not delivered its first snapshot by
            then is treated as stuck and re-created (ChannelWatch._listener_problem).
    """

    def __init__(self, model: str, channel: str, cache_dir: str | os.PathLike, *,
                 app_version: str | None = None, db: Any = None, storage_client: Any = None,
                 verify_model: Callable[[Path, dict | None], None] | None = None,
                 download_attempts: int = 4, keep: int = 2, max_install_attempts: int = 3,
                 supervise_interval_s: float = 0.5, conditions: cache.DownloadConditions | None = None,
                 network: Callable[[], cache.NetworkState] | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 conditions_recheck_s: float = 5.0, first_snapshot_timeout_s: float = 15.0) -> None:
        self.model = mf.check_name(model, "model name")
        self.channel = mf.check_channel(channel)
        self.cache_dir = Path(cache_dir)
        self.app_version = app_version
        self._app = mf.app_version_tuple(app_version, "app version") if app_version else None
        self._db = db
        self._gcs = storage_client
        self._verify = verify_model or smoke_check
        self.download_attempts = download_attempts
        self.keep = max(2, keep)
        self.max_install_attempts = max_install_attempts
        self.supervise_interval_s = supervise_interval_s
        self.conditions = conditions or cache.DownloadConditions()
        self._network = network or cache.env_network_state
        self._progress = progress
        self.conditions_recheck_s = conditions_recheck_s
        self.first_snapshot_timeout_s = first_snapshot_timeout_s
        self._recheck_at: float | None = None
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._newest: dict | None = None
        self._control: dict = {}
        self._have_release_snapshot = False
        self._current: HeldModel | None = None
        self._failures: dict[str, int] = {}
        self._release_cache: dict[str, dict] = {}
        self._watches: dict[str, Any] = {}
        self._generation, self._stuck_retries = 0, 0  # subscriptions made; stuck ones in a row
        self._subscribed_at, self._first_snapshots = 0.0, set()  # ChannelWatch._subscribe sets them
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.status: str = "idle"
        self.status_detail: str = ""
        self.history: list[dict] = []   # every decision: {"event", "version", "reason", "t"}
        self.reconnects = 0
        self.seen_at: dict[str, float] = {}  # version -> when the listener first reported it

    # ------------------------------------------------------------------------------------ API
    @property
    def current(self) -> HeldModel | None:
        """The verified model served now (None before the first install)."""
        with self._lock:
            return self._current

    @property
    def current_version(self) -> str | None:
        held = self.current
        return held.version if held else None

    def start(self) -> "ModelClient":
        """Load what the cache holds, subscribe, and start the worker thread. Returns self."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._load_cached()
        if self._db is None:
            from google.cloud import firestore

            self._db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        if self._gcs is None:
            from edgeship.base import storage

            self._gcs = storage.gcs_client()
        self._subscribe()
        self._thread = threading.Thread(target=self._run, name=f"model-client-{self.model}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unsubscribe and stop the worker (the installed model stays on disk)."""
        self._stop.set()
        self._wake.set()
        self._unsubscribe(wait_s=5.0)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def wait_for(self, version: str, timeout: float = 60.0) -> HeldModel | None:
        """Block until the client holds ``version`` (verified); the HeldModel, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._current is None or self._current.version != version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)
            return self._current

    def wait_until(self, predicate: Callable[["ModelClient"], bool], timeout: float = 60.0) -> bool:
        """Block until predicate(self) is true (checked after every decision); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.5))
            return True

    # ------------------------------------------------------------------------------ listening
    # --------------------------------------------------------------------------------- worker
    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.supervise_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            problem = self._listener_problem()
            if problem:
                woke = True
                self._note("reconnect", None, f"{problem}; subscribing again")
                self._unsubscribe()
                try:
                    self._subscribe()
                    self.reconnects += 1
                except Exception as exc:  # noqa: BLE001 - server down: try again next round
                    self._fail(None, f"cannot subscribe: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
            if self._recheck_at is not None and time.monotonic() >= self._recheck_at:
                self._recheck_at, woke = None, True  # download conditions may allow it now
            if not woke:
                continue
            try:
                self._reconcile()
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                self._fail(None, f"{type(exc).__name__}: {str(exc)[:300]}")

    def _reconcile(self) -> None:
        with self._lock:
            newest, control, ready = self._newest, dict(self._control), self._have_release_snapshot
        if not ready:
            return
        if control.get("paused"):  # unpublish pauses too: keep what is held, install nothing
            state = "unpublished" if control.get("unpublished") else "paused"
            self._set_status(state, f"channel {state} by {control.get('updated_by')}: {control.get('reason')}")
            return
        pinned = control.get("pinned_version")
        if pinned:
            target = self._release(pinned)
            if target is None:
                self._fail(pinned, f"pinned version {pinned} has no release on channel {self.channel}")
                return
        else:
            target = newest
            if target is not None and not self._compatible(target):
                self._note("skip", target.get("version"),
                           f"needs app {target.get('min_app_version')}, this app is {self.app_version}")
                target = self._newest_compatible(target["version"])
        if target is None:
            self._set_status("waiting", "no release this app can run")
            return
        version = target["version"]
        if self.current_version == version:
            self._set_status("serving", version)
            return
        if not self._compatible(target):
            self._fail(version, f"release {version} needs app {target.get('min_app_version')}, "
                                f"this app is {self.app_version}: keeping {self.current_version}")
            return
        if self._failures.get(version, 0) >= self.max_install_attempts:
            if not pinned:  # already said why; serve the newest release that does install
                self._fall_back(version)
            return
        if not self._may_download(target):
            return
        try:
            self._install(target)
        except InstallError as exc:
            self._failures[version] = self._failures.get(version, 0) + 1
            self._fail(version, f"not installing {version}: {exc}; keeping {self.current_version}")
            if self._failures[version] < self.max_install_attempts:
                self._wake.set()
            elif not pinned:
                self._fall_back(version)

    def _may_download(self, release: dict) -> bool:
        """Whether the download conditions allow fetching ``release`` now; if not, wait (status
        says why) and re-check later."""
        size = int((release.get("model_file") or {}).get("size") or 0)
        try:
            free = shutil.disk_usage(self.cache_dir).free
            blocked = self.conditions.blocker(self._network(), free, size)
        except (OSError, ValueError) as exc:
            blocked = f"cannot check the download conditions: {exc}"
        if blocked is None:
            return True
        self._set_status("waiting", f"not downloading {release.get('version')} yet: {blocked}")
        self._recheck_at = time.monotonic() + self.conditions_recheck_s
        return False

    def _fall_back(self, broken: str) -> None:
        """The channel's newest release ``broken`` cannot be installed: install the newest older
        release this app can run that does install, unless what the client holds is already at
        least that new (version ids sort in publish order), and say why. Each older release gets
        one try here; a new release or a control change starts over."""
        held = self.current_version
        for release in self._older_compatible(broken):
            version = release["version"]
            if held is not None and version <= held:
                return  # what we hold is the newest release that installs
            if self._failures.get(version, 0) >= self.max_install_attempts:
                continue
            if not self._may_download(release):
                return
            self._note("fallback", version, f"the newest release {broken} cannot be installed "
                                            f"(see above): trying {version}, the next older one")
            try:
                self._install(release)
            except InstallError as exc:
                self._failures[version] = self.max_install_attempts
                self._fail(version, f"fallback: not installing {version} either: {exc}")
                continue
            return

    def _compatible(self, release: dict) -> bool:
        if self._app is None:
            return True
        try:
            return mf.app_version_tuple(str(release.get("min_app_version", "0")), "min_app_version") <= self._app
        except ValueError:
            return False

    # -------------------------------------------------------------------------------- install
    def _download(self, release: dict, dest: Path) -> None:
        """Download the release's model file to ``dest`` (retried), checking size and sha256."""
        cache.download_checked(self._gcs, release, dest, attempts=self.download_attempts,
                               progress=self._progress)

    def _install(self, release: dict) -> None:
        version = mf.check_version(str(release.get("version")), "release version")
        self._set_status("installing", version)
        tmp_root = self.cache_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        work = tmp_root / f"{version}-{secrets.token_hex(4)}"
        work.mkdir()
        try:
            model_path = work / "model.tflite"
            self._download(release, model_path)
            self._verify(model_path, release.get("input"))
            (work / "release.json").write_text(json.dumps(release, default=str, indent=1))
            final = self.cache_dir / "versions" / version
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # an earlier install of the same version (same sha, verified)
                shutil.rmtree(final)
            os.replace(work, final)
            held = HeldModel(version, final / "model.tflite", release["model_file"]["sha256"],
                             int(release["model_file"]["size"]), release)
            self._swap(held)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._failures.pop(version, None)
        self._prune()

    def _swap(self, held: HeldModel) -> None:
        """Point ``current`` at the new version atomically; record it in current.json."""
        cache.point_current(self.cache_dir, held)
        with self._lock:
            previous = self._current
            self._current = held
            self.last_error = None
            self.status, self.status_detail = "serving", held.version
            self._lock.notify_all()
        name = held.release.get("version_name")
        self._note("swapped", held.version,
                   f"verified and swapped in{f' (version name {name})' if name else ''} "
                   f"(was {previous.version if previous else 'nothing'})")

    def _prune(self) -> None:
        cache.prune(self.cache_dir, self.current_version, self.keep)

    def _load_cached(self) -> None:
        """Serve what a previous run installed, if its file still verifies."""
        try:
            held = cache.read_current(self.cache_dir)
        except cache.CacheError as exc:
            self._fail(exc.version, str(exc))
            return
        if held is not None:
            with self._lock:
                self._current = held
            self._note("cached", held.version, "serving the model installed earlier")

    # -------------------------------------------------------------------------------- records
    def _note(self, event: str, version: str | None, reason: str, level: int = logging.INFO) -> None:
        with self._lock:
            self.history.append({"event": event, "version": version, "reason": reason, "t": time.time()})
            del self.history[:-500]
            self._lock.notify_all()
        log.log(level, "client %s/%s: %s%s: %s", self.model, self.channel, event,
                f" {version}" if version else "", reason)

    def _fail(self, version: str | None, reason: str) -> None:
        with self._lock:
            self.last_error = reason
        self._note("error", version, reason, logging.WARNING)

    def _set_status(self, status: str, detail: str) -> None:
        if (self.status, self.status_detail) != (status, detail):
            self.status, self.status_detail = status, detail
            self._note(status, None, detail)


def start_listening(model_name: str, channel: str, cache_dir: str | os.PathLike, *,
                    app_version: str | None = None, **kwargs: Any) -> ModelClient:
    """Start a ModelClient on ``model_name``/``channel`` caching into ``cache_dir``; returns it."""
    return ModelClient(model_name, channel, cache_dir, app_version=app_version, **kwargs).start()

"""Cloud Storage and Firestore clients: created lazily (never at import), injectable, recycled after a transient fault so a backend that comes back is reached at once; per-call time bounds."""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .errors import DeadlineExceeded
from .settings import Config, _Budget

log = logging.getLogger("register_model")


class _Clients:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.firestore: Any = None
        self.storage: Any = None
        self.injected = False


_clients = _Clients()


def set_clients(firestore_client: Any = None, storage_client: Any = None) -> None:
    """Inject clients (tests, local stack). None resets to lazy creation."""
    with _clients.lock:
        _clients.firestore = firestore_client
        _clients.storage = storage_client
        _clients.injected = firestore_client is not None or storage_client is not None


def _firestore():
    with _clients.lock:
        if _clients.firestore is None:
            from google.cloud import firestore

            _clients.firestore = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
        return _clients.firestore


def _storage():
    with _clients.lock:
        if _clients.storage is None:
            from google.cloud import storage

            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                _clients.storage = storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "edgeship-local",
                    credentials=AnonymousCredentials())
            else:
                _clients.storage = storage.Client()
        return _clients.storage


def _recycle_clients() -> None:
    """After a transient failure: drop the clients this module made, closing the Firestore channel.

    gRPC keeps a failed connection in an exponential reconnect backoff (up to minutes), shared by
    every channel to the same target in the process; a closed channel releases it, so the next
    delivery connects at once when the backend is back. Injected clients are left alone.
    """
    with _clients.lock:
        if _clients.injected:
            return
        db, _clients.firestore, _clients.storage = _clients.firestore, None, None
    if db is not None:
        try:
            db._firestore_api.transport.close()
        except Exception as exc:  # noqa: BLE001 - best effort: it may never have been opened
            log.debug("closing the Firestore channel: %s", exc)


def _gcs_opts(cfg: Config, budget: _Budget) -> dict:
    """timeout + retry for one Cloud Storage call: bounded by its cap and by the event's budget."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    total = budget.take(cfg.storage_timeout_s)
    attempt = max(0.2, total / 2)
    return {"timeout": (attempt, attempt), "retry": DEFAULT_RETRY.with_timeout(total)}


def _fs_opts(cfg: Config, budget: _Budget) -> dict:
    """timeout + retry for one Firestore call: bounded by its cap and by the event's budget."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    total = budget.take(cfg.firestore_timeout_s)
    retry = gretry.Retry(predicate=gretry.if_exception_type(
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted),
        initial=0.1, maximum=1.0, multiplier=2.0, timeout=total)
    return {"retry": retry, "timeout": max(0.2, total / 2)}


def _transient_errors() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    errors: list[type[BaseException]] = [
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
        gexc.TooManyRequests, gexc.Aborted, gexc.RetryError, gexc.BadGateway, gexc.GatewayTimeout,
        gexc.Cancelled, ConnectionError, TimeoutError, DeadlineExceeded]
    try:
        import google.auth.exceptions

        errors.append(google.auth.exceptions.TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)

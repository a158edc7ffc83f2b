"""Shared fixtures: the local cloud stack (real servers on loopback), started once per session.

- ``local_stack`` (session): a running stack on free ports in a temp state dir, its env vars
  (STORAGE_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT) set in ``os.environ``
  for the whole session and restored afterwards. Yields the ``StackConfig``. The function served
  is ``functions/register_model/main.py:register_model`` when that file exists, else the event
  recorder from tests/local.
- ``clean_stack`` (function): ``local_stack`` with every bucket emptied (the default bucket
  recreated), Firestore cleared and the relay's queues and delivered set forgotten, before the test.
- ``stack_function`` (function): a factory ``stack_function(source, target, env=None) ->
  StackConfig`` that serves another function on the running stack for this test; the session's
  function is put back afterwards.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from edgeship.localcloud import stack as _ls

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
RECORDER = REPO / "tests/local/recorder_function.py"


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_ls.StackConfig]:
    """The local cloud stack, up for the whole session (see the module docstring)."""
    state_dir = tmp_path_factory.mktemp("edgeship-local")
    real = REPO / "functions/register_model/main.py"
    if real.is_file():
        source, target, env = real, "register_model", {}
    else:
        log.warning("%s does not exist yet; the stack serves the test recorder function", real)
        source, target, env = RECORDER, "record", {"RECORDER_FILE": str(state_dir / "events.jsonl")}
    config = _ls.StackConfig(
        gcs_port=_ls.free_port(), firestore_port=_ls.free_port(), function_port=_ls.free_port(),
        state_dir=state_dir, function_source=source, function_target=target, function_env=env,
        # a test may make the function fail on purpose: do not retry for minutes
        relay_max_attempts=20,
    )
    try:
        _ls.up(config)
    except Exception:
        _ls.down(config)
        raise
    mp = pytest.MonkeyPatch()
    for key, value in config.env().items():
        mp.setenv(key, value)
    try:
        yield config
    finally:
        mp.undo()
        _ls.down(config)


@pytest.fixture
def clean_stack(local_stack: _ls.StackConfig) -> _ls.StackConfig:
    """``local_stack`` with empty buckets, empty Firestore and a fresh relay, for one test."""
    _ls.up(local_stack)  # restarts anything a previous test stopped; no-op otherwise
    _ls.reset(local_stack)
    return local_stack


@pytest.fixture
def stack_function(local_stack: _ls.StackConfig
                   ) -> Iterator[Callable[..., _ls.StackConfig]]:
    """Factory: ``stack_function(source, target, env=None)`` serves that function for this test."""
    swapped: list[_ls.StackConfig] = []

    def serve(source: str | os.PathLike, target: str,
              env: dict[str, str] | None = None) -> _ls.StackConfig:
        config = _ls.serve_function(local_stack, Path(source), target, env)
        swapped.append(config)
        return config

    yield serve
    if swapped:
        _ls.serve_function(local_stack, local_stack.function_source, local_stack.function_target,
                           local_stack.function_env)


# ------------------------------------------------------------------------- no network in tests
# Tests run where only package registries answer (CI): a client library that quietly calls a
# cloud API (credentials, project lookup) waits out its retries there, or hangs. Every socket this
# process connects to a non-loopback address is recorded (an audit hook; subprocesses and gRPC's
# C sockets are not seen) and fails the test that made it, naming the address and the stack that asked for it.
_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_outbound: list[tuple[str, str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        address = args[1]
        host, port = (address[0], address[1]) if isinstance(address, tuple) and len(address) > 1 \
            else (None, None)
    elif event == "socket.getaddrinfo":  # a name looked up for a connection (http clients)
        host, port = args[0], args[1]
        host = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    else:
        return
    if isinstance(host, str) and host and not host.startswith(_LOOPBACK):
        import traceback

        _outbound.append((f"{host}:{port}", "".join(traceback.format_stack(limit=12)[:-1])))


def pytest_configure(config: pytest.Config) -> None:
    import sys

    sys.addaudithook(_audit)  # cannot be removed; it only appends to a list


@pytest.fixture(autouse=True)
def _no_outbound_connections() -> Iterator[None]:
    del _outbound[:]
    yield
    if _outbound:
        where, stack = _outbound[0]
        pytest.fail(f"the test connected to {where} ({len(_outbound)} outbound connection(s)); "
                    f"tests must not use the network. First one from:\n{stack}", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with a ``slow`` test run first, each module's tests in their own order: under
    pytest-xdist (scripts/test.sh: whole modules per worker) the long modules then start at once
    instead of leaving one worker with them at the end while the other idles."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)

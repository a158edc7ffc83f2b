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

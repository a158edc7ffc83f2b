"""Fixtures of the local-stack tests: the event-recording function served through the stack."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

RECORDER = Path(__file__).with_name("recorder_function.py")


class Recorder:
    """Reads what tests/local/recorder_function.py wrote: one dict per delivery, in order."""

    def __init__(self, path: Path, config) -> None:
        self.path = path
        self.config = config  # the StackConfig serving the recorder

    def deliveries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll until ``done(deliveries)``; fail with what did arrive after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.deliveries()
            if done(got):
                return got
            if time.monotonic() > deadline:
                summary = [(d["data"].get("name"), d["data"].get("generation"), d["answered"])
                           for d in got]
                raise AssertionError(f"events did not arrive within {timeout} s; got {summary}")
            time.sleep(0.02)


@pytest.fixture
def recorder(clean_stack, stack_function, tmp_path) -> Recorder:
    """A clean stack whose function records every CloudEvent into a file of this test."""
    path = tmp_path / "events.jsonl"
    config = stack_function(RECORDER, "record", {"RECORDER_FILE": str(path)})
    return Recorder(path, config)


@pytest.fixture
def bucket(clean_stack):
    """The default bucket of the clean local stack, through google-cloud-storage."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=clean_stack.project, credentials=AnonymousCredentials())
    return client.bucket(clean_stack.buckets[0])

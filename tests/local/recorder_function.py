"""A tiny CloudEvent function for the stack's tests: it records every event it receives.

Served by functions-framework through the local stack (``target="record"``). Each delivery is
appended as one JSON line to ``$RECORDER_FILE``: the CloudEvent attributes, the data, and
``received_at`` (time.time()). Objects whose name starts with ``$RECORDER_FAIL_PREFIX`` (default
``fail/``) get HTTP 500 (the function raises) for their first ``$RECORDER_FAIL_TIMES``
deliveries (default 1), the way the real function answers a transient error, so the relay must
redeliver.
"""
from __future__ import annotations

import json
import os
import threading
import time

import functions_framework

_lock = threading.Lock()
_failures: dict[str, int] = {}


@functions_framework.cloud_event
def record(cloud_event):
    received_at = time.time()
    data = cloud_event.data or {}
    attrs = {k: v for k, v in cloud_event.get_attributes().items()}
    name = str(data.get("name", ""))
    key = f"{data.get('bucket')}/{name}#{data.get('generation')}"
    prefix = os.environ.get("RECORDER_FAIL_PREFIX", "fail/")
    fail_times = int(os.environ.get("RECORDER_FAIL_TIMES", "1"))
    with _lock:
        failing = bool(prefix) and name.startswith(prefix) and _failures.get(key, 0) < fail_times
        if failing:
            _failures[key] = _failures.get(key, 0) + 1
        line = {"attributes": attrs, "data": data, "received_at": received_at,
                "answered": 500 if failing else 200}
        with open(os.environ["RECORDER_FILE"], "a") as f:
            f.write(json.dumps(line, default=str) + "\n")
    if failing:  # a CloudEvent function fails by raising: functions-framework answers 500
        raise RuntimeError(f"transient failure (test) for {key}")

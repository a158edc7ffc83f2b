"""Processes and ports of the local stack: spawn detached servers with their logs, find them again
(pid + start time), stop them, probe ports and HTTP health."""
from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

class StackError(RuntimeError):
    """The local stack could not be started, reached or stopped; the message says why."""


# ------------------------------------------------------------------------------------ processes
def proc_start_time(pid: int) -> str | None:
    """The process's start time (psutil: Linux, macOS), as text; None when it is not running
    (or a zombie). A pid plus its start time names one process even after pid reuse."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{proc.create_time():.6f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(record: dict[str, Any] | None) -> bool:
    if not record or not record.get("pid"):
        return False
    start = proc_start_time(int(record["pid"]))
    return start is not None and start == record.get("start_time")


def spawn(config: Any, name: str, cmd: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> dict[str, Any]:
    """Start ``cmd`` detached, its output appended to ``config.log_path(name)`` (a StackConfig);
    return its record {pid, start_time, cmd}."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    logf = config.log_path(name).open("ab")
    logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
    logf.flush()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    logf.close()
    start = None
    for _ in range(50):
        start = proc_start_time(proc.pid)
        if start:
            break
        time.sleep(0.01)
    log.debug("started %s pid %d: %s", name, proc.pid, " ".join(cmd))
    return {"pid": proc.pid, "start_time": start, "cmd": cmd, "log": str(config.log_path(name))}


def stop_process(record: dict[str, Any], name: str, timeout: float = 5.0) -> None:
    if not alive(record):
        return
    pid = int(record["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(record):
            reap(pid)
            return
        reap(pid)
        time.sleep(0.05)
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, pid, timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap(pid)


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# --------------------------------------------------------------------------------------- ports
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_holder(port: int) -> str:
    """Best effort: 'pid N (cmdline)' of the process listening on TCP ``port`` (psutil)."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without root: look process by process
        conns = None
    if conns is not None:
        pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}
    else:
        pids = set()
        for proc in psutil.process_iter():
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                       for c in proc.net_connections(kind="tcp")):
                    pids.add(proc.pid)
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
    for pid in sorted(p for p in pids if p):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            cmd = "?"
        return f"pid {pid} ({cmd[:120]})"
    return "a process whose sockets this user cannot see" if pids else ""


def check_port_free(host: str, port: int, what: str) -> None:
    """Raise StackError naming the port, its use and its holder if ``port`` cannot be bound."""
    with socket.socket() as s:
        # like the servers themselves: SO_REUSEADDR, so TIME_WAIT leftovers do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            holder = port_holder(port)
            held = f", held by {holder}" if holder else ""
            raise StackError(
                f"port {port} ({what}) on {host} is already in use{held}: {exc.strerror}. "
                f"Stop that process or choose another port (--{what}-port).") from None


# ------------------------------------------------------------------------------------- health
def http_request(method: str, host: str, port: int, path: str, body: bytes | None = None,
          timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])

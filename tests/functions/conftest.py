"""Fixtures for the register_model function tests: private fake-gcs-server + Firestore emulator
(real servers; the Firestore one can be stopped and restarted), the function module loaded from
its folder with injected clients, and a variants artifact to publish."""
from __future__ import annotations

import os

import pytest

from tests.support import delivery as support


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
    module = support.load_function()
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


@pytest.fixture(autouse=True)
def _model_bucket(monkeypatch):
    """The function serves one model bucket (env MODEL_BUCKET): the private servers' bucket."""
    monkeypatch.setenv("MODEL_BUCKET", support.BUCKET)


@pytest.fixture(scope="session")
def function_server(servers, tmp_path_factory):
    """register_model served by functions-framework in its own process (real HTTP), on the
    private servers, with short backend timeouts (tests/functions/test_hostile_inputs.py)."""
    from tests.functions.test_hostile_inputs import FunctionServer

    server = FunctionServer(tmp_path_factory.mktemp("function"), {
        **servers.env(), "REGISTER_MODEL_FIRESTORE_TIMEOUT_S": "2",
        "REGISTER_MODEL_STORAGE_TIMEOUT_S": "2"}).start()
    yield server
    server.stop()


@pytest.fixture()
def hostile(stores, function_server, servers):
    """(function server, bucket) on emptied servers, Firestore answering."""
    from tests.functions.test_hostile_inputs import wait_firestore_ready

    wait_firestore_ready(servers)
    _, _, bucket = stores
    return function_server, bucket

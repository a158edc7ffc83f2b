"""The champion lookup against the local stack's real Firestore emulator and GCS server."""
import json

import pytest

from components.select import core

pytestmark = pytest.mark.stack

V1 = "20261124t100000000000z-aaaaaa"
V2 = "20261124t110000000000z-bbbbbb"


def register(db, model, channel, version, map_value, fingerprint="sha256:f"):
    ref = db.collection("models").document(model)
    manifest = {"version": version, "channel": channel, "variant": "full_int8",
                "dataset_fingerprint": fingerprint,
                "metrics": {"map": map_value, "map50": 0.9, "delta_map_vs_float": -0.5,
                            "size_bytes": 10, "latency_ms": 1.0}}
    ref.collection("versions").document(version).set({"manifest": manifest, "version": version})
    ref.collection("releases").document(f"{channel}-{version}").set(
        {"channel": channel, "version": version})


@pytest.fixture
def db(clean_stack):
    from google.cloud import firestore

    return firestore.Client(project=clean_stack.project)


def test_no_release_means_no_champion(db):
    assert core.find_champion_firestore("m", "stable", db=db) is None


def test_newest_release_on_the_channel(db):
    register(db, "m", "stable", V1, 0.40)
    register(db, "m", "stable", V2, 0.45)
    register(db, "m", "beta", "20261124t120000000000z-cccccc", 0.10)
    champ = core.find_champion_firestore("m", "stable", db=db)
    assert champ.version == V2 and champ.map == 0.45 and champ.dataset_fingerprint == "sha256:f"
    assert "newest release" in champ.source


def test_pinned_version_is_the_champion(db):
    register(db, "m", "stable", V1, 0.40)
    register(db, "m", "stable", V2, 0.45)
    db.collection("models").document("m").collection("channels").document("stable").set(
        {"pinned_version": V1, "paused": True})
    champ = core.find_champion("edgeship", "m", "stable")
    assert champ.version == V1 and champ.map == 0.40
    assert "pinned" in champ.source and "paused" in champ.source


def test_gcs_manifests_fallback(clean_stack):
    from edgeship.base import storage

    bucket = storage.gcs_client().bucket(clean_stack.buckets[0])
    for version, channel, value in ((V1, "stable", 0.3), (V2, "beta", 0.5)):
        bucket.blob(f"models/m/{version}/manifest.json").upload_from_string(json.dumps(
            {"version": version, "channel": channel, "metrics": {"map": value}}))
    champ = core.find_champion_gcs(clean_stack.buckets[0], "m", "stable")
    assert champ.version == V1 and champ.map == 0.3
    assert core.find_champion_gcs(clean_stack.buckets[0], "m", "canary") is None

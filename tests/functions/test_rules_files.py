"""The security rules and index files shipped in infra/ say what docs/delivery.md says. (No local
emulator evaluates rules; these checks keep the files honest against the code's names.)"""
from __future__ import annotations

import json
import re
from pathlib import Path

from edgeship.contracts import manifest as mf

INFRA = Path(__file__).resolve().parents[2] / "infra"


def test_no_rule_lets_a_client_write():
    for name in ("firestore.rules", "storage.rules"):
        text = re.sub(r"//[^\n]*", "", (INFRA / name).read_text())
        writes = re.findall(r"allow\s+([a-z, ]*?(?:write|create|update|delete)[a-z, ]*):\s*if\s+([^;]+);", text)
        assert writes, name
        assert all(cond.strip() == "false" for _, cond in writes), (name, writes)


def test_firestore_rules_let_signed_in_clients_read_the_registry():
    text = (INFRA / "firestore.rules").read_text()
    for coll in ("versions", "releases", "channels"):
        assert f"match /{coll}/" in text
    assert "allow read: if request.auth != null;" in text


def test_storage_rules_name_patterns_match_the_code():
    text = (INFRA / "storage.rules").read_text()
    model_re, version_re = re.findall(r"matches\('([^']+)'\)", text)
    fresh = mf.new_version()
    assert re.match(version_re, fresh) and re.match(model_re, "detector")
    assert not re.match(version_re, "../x") and not re.match(model_re, "Detector")


def test_the_clients_release_query_has_its_index():
    indexes = json.loads((INFRA / "firestore.indexes.json").read_text())["indexes"]
    assert {"collectionGroup": "releases", "queryScope": "COLLECTION",
            "fields": [{"fieldPath": "channel", "order": "ASCENDING"},
                       {"fieldPath": "version", "order": "DESCENDING"}]} in indexes

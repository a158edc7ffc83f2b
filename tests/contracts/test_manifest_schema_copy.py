"""The manifest schema has two copies that must not drift: the one shipped as package data
(edgeship/contracts/manifest.schema.json, what `edgeship publish` validates against) and the Cloud
Function's (functions/register_model/manifest.schema.json, deployed on its own folder)."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_COPY = ROOT / "edgeship" / "contracts" / "manifest.schema.json"
FUNCTION_COPY = ROOT / "functions" / "register_model" / "manifest.schema.json"


def test_the_two_schema_copies_are_byte_identical():
    assert PACKAGE_COPY.read_bytes() == FUNCTION_COPY.read_bytes(), (
        f"{PACKAGE_COPY.relative_to(ROOT)} and {FUNCTION_COPY.relative_to(ROOT)} differ: "
        "edit one and copy it over the other")


def test_the_package_loads_the_shipped_copy():
    from edgeship.contracts import manifest

    assert manifest.schema_path().resolve() == PACKAGE_COPY.resolve()
    assert manifest.load_schema() == json.loads(PACKAGE_COPY.read_text())

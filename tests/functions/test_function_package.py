"""functions/register_model deploys on its own: pinned requirements cover every import of main.py,
at the versions the project tests with (pyproject.toml), and nothing imports edgeship."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FN = ROOT / "functions" / "register_model"
DIST_OF = {"functions_framework": "functions-framework", "google": None, "jsonschema": "jsonschema",
           "requests": None,  # google.* / requests come with the pinned google-cloud-* packages
           "flask": "flask", "werkzeug": "werkzeug"}  # the HTTP error handler


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (FN / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.txt line {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_every_import_is_stdlib_or_pinned():
    pins = _requirements()
    tree = ast.parse((FN / "main.py").read_text())
    modules = {n.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert "edgeship" not in modules and "components" not in modules
    for module in modules - set(sys.stdlib_module_names):
        assert module in DIST_OF, f"main.py imports {module!r}: add it to requirements.txt and here"
        if DIST_OF[module]:
            assert DIST_OF[module] in pins
    assert {"google-cloud-firestore", "google-cloud-storage"} <= set(pins)


def test_pins_match_the_project():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, version in _requirements().items():
        match = re.search(rf'"{re.escape(name)}==([^"]+)"', pyproject, re.IGNORECASE)
        if match:
            assert match.group(1) == version, f"{name}: requirements.txt {version}, pyproject {match.group(1)}"

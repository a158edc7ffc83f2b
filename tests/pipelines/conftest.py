import pytest

IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship:0.1.0-abc1234"


@pytest.fixture(scope="session")
def image() -> str:
    return IMAGE


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """The real pipeline compiled to IR YAML with IMAGE on every component."""
    from pipelines.compile import compile_pipeline

    return compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml", image=IMAGE)


@pytest.fixture(scope="session")
def spec(template):
    from pipelines.compile import load_spec

    return load_spec(template)


import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# tests/ is on sys.path (rootdir conftest, no __init__.py) and tests/components/ would shadow the
# real `components` package as a namespace package: put the repository first.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

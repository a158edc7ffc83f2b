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


from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

"""Structure of the compiled pipeline spec: steps, edges, parameters, the gate's condition."""
import pytest

from edgeship import cli
from pipelines.compile import load_spec, resolve_image

STEPS = ["data", "train", "qat", "quantize", "evaluate", "select"]


def producers(task: dict) -> set[str]:
    """Tasks this task consumes outputs from (artifact or parameter edges) or depends on."""
    out = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for art in inputs.get("artifacts", {}).values():
        if "taskOutputArtifact" in art:
            out.add(art["taskOutputArtifact"]["producerTask"])
    for par in inputs.get("parameters", {}).values():
        if "taskOutputParameter" in par:
            out.add(par["taskOutputParameter"]["producerTask"])
    return out


def find_branch(spec: dict, name_part: str) -> dict:
    """The component holding the tasks under a dsl.If / dsl.Else branch."""
    tasks = spec["root"]["dag"]["tasks"]
    branches = next(t for n, t in tasks.items() if n.startswith("condition-branches"))
    comp = spec["components"][branches["componentRef"]["name"]]
    for name, task in comp["dag"]["tasks"].items():
        inner = spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]
        if name_part in inner:
            return {"task": task, "inner": inner}
    raise AssertionError(f"no branch holding {name_part}")


def test_top_level_steps(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert set(STEPS) <= set(tasks)
    assert any(n.startswith("condition-branches") for n in tasks)
    assert "publish" not in tasks, "publish must only run inside the gate's dsl.If"


def test_edges_follow_the_data_flow(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert producers(tasks["data"]) == set()
    assert producers(tasks["train"]) == {"data"}
    assert producers(tasks["qat"]) == {"data", "train"}
    assert {"train", "qat"} <= producers(tasks["quantize"])
    assert "quantize" in producers(tasks["evaluate"])
    assert producers(tasks["select"]) == {"evaluate"}
    branches = next(t for n, t in tasks.items() if n.startswith("condition-branches"))
    assert "select" in producers(branches)


def test_publish_is_under_the_gate_condition(spec):
    publish = find_branch(spec, "publish")
    condition = publish["task"]["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--select-publish'] == true"
    refused = find_branch(spec, "not-published")
    assert refused["task"]["triggerPolicy"]["condition"] == \
        "!(inputs.parameter_values['pipelinechannel--select-publish'] == true)"
    arts = publish["inner"]["publish"]["inputs"]["artifacts"]
    assert {"variants", "evaluation", "decision"} <= set(arts)


def test_parameters_types_and_defaults(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {
        "data_uri": ("STRING", ""), "model_name": ("STRING", "edgeship-detector"),
        "channel": ("STRING", "stable"), "bucket": ("STRING", "edgeship"),
        "input_size": ("NUMBER_INTEGER", None), "epochs": ("NUMBER_INTEGER", None),
        "qat_epochs": ("NUMBER_INTEGER", None), "accuracy_budget": ("STRING", "1.0"),
        "latency_budget_ms": ("NUMBER_DOUBLE", 0.0), "tolerance": ("NUMBER_DOUBLE", 0.5),
        "force_promote": ("BOOLEAN", False), "min_app_version": ("STRING", None),
    }
    assert set(params) == set(expected)
    for name, (kind, default) in expected.items():
        assert params[name]["parameterType"] == kind, name
        assert "defaultValue" in params[name], f"{name} needs a default (kfp.local quirk)"
        if default is not None:
            assert params[name]["defaultValue"] == default, name


def test_gate_inputs_wired_from_pipeline_parameters(spec):
    sel = spec["root"]["dag"]["tasks"]["select"]["inputs"]["parameters"]
    for name in ("accuracy_budget", "latency_budget_ms", "tolerance", "force_promote", "channel"):
        assert sel[name]["componentInputParameter"] == name
    assert spec["root"]["dag"]["tasks"]["select"]["cachingOptions"] == {}  # caching off


def test_every_executor_uses_the_image(spec, image):
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 8
    assert {e["container"]["image"] for e in executors.values()} == {image}


def test_cli_compile_and_env_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESHIP_IMAGE", "registry.example/x/edgeship:9")
    out = tmp_path / "p.yaml"
    assert cli.main(["pipeline", "compile", "--out", str(out)]) == 0
    images = {e["container"]["image"] for e in load_spec(out)["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/x/edgeship:9"}
    assert str(out) in capsys.readouterr().out


def test_resolve_image_rules(monkeypatch):
    monkeypatch.delenv("EDGESHIP_IMAGE", raising=False)
    assert resolve_image(None).startswith("us-docker.pkg.dev/edgeship/")
    with pytest.raises(ValueError, match="no container image given"):
        resolve_image(None, required=True)
    with pytest.raises(ValueError, match="not a valid container image"):
        resolve_image("bad image")
    monkeypatch.setenv("EDGESHIP_IMAGE", "r/e:1")
    assert resolve_image(None, required=True) == "r/e:1"
    assert resolve_image("x/y:2") == "x/y:2"

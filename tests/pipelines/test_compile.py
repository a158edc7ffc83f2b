"""Structure of the compiled pipeline spec: steps, edges, parameters, the gate's condition."""
import pytest

from edgeship import cli
from pipelines.compile import load_spec, resolve_image

STEPS = ["data", "train", "qat"]  # top level; the candidate steps run inside a branch


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


def branches_of(spec: dict, dag: dict) -> list[dict]:
    """The dsl.If / dsl.Else branches directly under a DAG: each {"task", "inner"}."""
    out = []
    for name, task in dag["tasks"].items():
        if name.startswith("condition-branches"):
            comp = spec["components"][task["componentRef"]["name"]]
            for branch in comp["dag"]["tasks"].values():
                out.append({"task": branch, "dag": spec["components"][branch["componentRef"]["name"]]["dag"]})
    return out


def candidate_branch(spec: dict, step: str) -> dict:
    """The top-level branch whose tasks include ``step`` (quantize or autoquant)."""
    for b in branches_of(spec, spec["root"]["dag"]):
        if step in b["dag"]["tasks"]:
            return b
    raise AssertionError(f"no top-level branch runs {step}")


def gate_branch(spec: dict, outer: dict, step: str) -> dict:
    for b in branches_of(spec, outer["dag"]):
        if any(t == step or t.startswith(step + "-") for t in b["dag"]["tasks"]):
            return b
    raise AssertionError(f"no gate branch runs {step}")


def test_top_level_steps(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert set(STEPS) <= set(tasks)
    assert not {"quantize", "autoquant", "evaluate", "select", "publish"} & set(tasks)


def test_training_parameters_reach_the_train_step(spec):
    params = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    for name in ("epochs", "learning_rate", "input_size"):
        assert params[name]["componentInputParameter"] == name


def test_edges_follow_the_data_flow(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert producers(tasks["data"]) == set()
    assert producers(tasks["train"]) == {"data"}
    assert producers(tasks["qat"]) == {"data", "train"}
    fixed = candidate_branch(spec, "quantize")["dag"]["tasks"]
    assert producers(fixed["evaluate"]) == {"quantize"}
    assert producers(fixed["select"]) == {"evaluate"}
    auto = candidate_branch(spec, "autoquant")["dag"]["tasks"]
    assert "quantize" not in auto  # the search converts its own candidates
    assert producers(auto["evaluate-2"]) == {"autoquant"}
    assert producers(auto["select-2"]) == {"evaluate-2"}
    inputs = auto["autoquant"]["inputs"]
    assert {a: v["componentInputArtifact"] for a, v in inputs["artifacts"].items()} == {
        "dataset": "pipelinechannel--data-dataset", "float_model": "pipelinechannel--train-model",
        "qat_model": "pipelinechannel--qat-model"}


def test_auto_quantize_picks_the_candidate_source(spec):
    fixed = candidate_branch(spec, "quantize")["task"]["triggerPolicy"]["condition"]
    auto = candidate_branch(spec, "autoquant")["task"]["triggerPolicy"]["condition"]
    assert fixed == "inputs.parameter_values['pipelinechannel--auto_quantize'] == false"
    assert auto == "!(inputs.parameter_values['pipelinechannel--auto_quantize'] == false)"
    params = candidate_branch(spec, "autoquant")["dag"]["tasks"]["autoquant"]["inputs"]["parameters"]
    # one budget for the search and the gate; the search limits are pipeline parameters
    assert {k: v["componentInputParameter"] for k, v in params.items()} == {
        "accuracy_budget": "pipelinechannel--accuracy_budget",
        "max_latency_ms": "pipelinechannel--latency_budget_ms",
        "max_candidates": "pipelinechannel--autoquant_max_candidates",
        "max_seconds": "pipelinechannel--autoquant_max_seconds"}


@pytest.mark.parametrize("source, suffix", [("quantize", ""), ("autoquant", "-2")])
def test_publish_is_under_the_gate_condition(spec, source, suffix):
    outer = candidate_branch(spec, source)
    publish = gate_branch(spec, outer, "publish")
    condition = publish["task"]["triggerPolicy"]["condition"]
    assert condition == f"inputs.parameter_values['pipelinechannel--select{suffix}-publish'] == true"
    refused = gate_branch(spec, outer, "not-published")
    assert refused["task"]["triggerPolicy"]["condition"] == \
        f"!(inputs.parameter_values['pipelinechannel--select{suffix}-publish'] == true)"
    arts = publish["dag"]["tasks"][f"publish{suffix}"]["inputs"]["artifacts"]
    assert {"variants", "evaluation", "decision"} <= set(arts)
    # publish takes the variants from the same source as evaluate
    assert arts["variants"]["componentInputArtifact"] == \
        ("pipelinechannel--quantize-variants" if source == "quantize" else "pipelinechannel--autoquant-result")


def test_parameters_types_and_defaults(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {
        "data_uri": ("STRING", ""), "model_name": ("STRING", "edgeship-detector"),
        "channel": ("STRING", "stable"), "bucket": ("STRING", "edgeship"),
        "input_size": ("NUMBER_INTEGER", None), "epochs": ("NUMBER_INTEGER", None),
        "learning_rate": ("NUMBER_DOUBLE", None),
        "qat_epochs": ("NUMBER_INTEGER", None), "accuracy_budget": ("STRING", "1.0"),
        "latency_budget_ms": ("NUMBER_DOUBLE", 0.0), "tolerance": ("NUMBER_DOUBLE", 0.5),
        "force_promote": ("BOOLEAN", False), "min_app_version": ("STRING", None),
        "min_map": ("NUMBER_DOUBLE", 0.0), "min_map50": ("NUMBER_DOUBLE", 0.0),
        "auto_quantize": ("BOOLEAN", False), "autoquant_max_candidates": ("NUMBER_INTEGER", None),
        "autoquant_max_seconds": ("NUMBER_DOUBLE", 0.0),
        "alpha": ("NUMBER_DOUBLE", 0.35), "patience": ("NUMBER_INTEGER", None),
        "anchors": ("STRING", None), "backbone_weights": ("STRING", "none"),
        "frozen_epochs": ("NUMBER_INTEGER", 0), "init_from": ("STRING", ""), "head": ("STRING", "ssd"),
        "train_min_steps": ("NUMBER_INTEGER", None), "seed": ("NUMBER_INTEGER", 0),
        "qat_objective": ("STRING", "both"), "early_stop": ("STRING", "none"),
    }
    assert set(params) == set(expected)
    for name, (kind, default) in expected.items():
        assert params[name]["parameterType"] == kind, name
        assert "defaultValue" in params[name], f"{name} needs a default (kfp.local quirk)"
        if default is not None:
            assert params[name]["defaultValue"] == default, name


@pytest.mark.parametrize("source, name", [("quantize", "select"), ("autoquant", "select-2")])
def test_gate_inputs_wired_from_pipeline_parameters(spec, source, name):
    sel = candidate_branch(spec, source)["dag"]["tasks"][name]
    for param in ("accuracy_budget", "latency_budget_ms", "tolerance", "force_promote", "channel"):
        assert sel["inputs"]["parameters"][param]["componentInputParameter"] == f"pipelinechannel--{param}"
    assert sel["cachingOptions"] == {}  # caching off


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


def test_cli_compile_prints_each_steps_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EDGESHIP_GPU_IMAGE", raising=False)
    out = tmp_path / "p.yaml"
    assert cli.main(["pipeline", "compile", "--out", str(out), "--image", "r.example/x/edgeship:9",
                     "--profile", "gpu", "--resource", "train.memory=32G"]) == 0
    printed = capsys.readouterr().out
    assert "train            8 vCPU, 32G, 1 x NVIDIA_TESLA_T4" in printed
    assert "r.example/x/edgeship-gpu:9" in printed
    train = load_spec(out)["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == "r.example/x/edgeship-gpu:9"
    assert train["resources"]["resourceMemoryLimit"] == "32G"

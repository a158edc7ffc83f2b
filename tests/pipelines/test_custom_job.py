"""Multi-worker training on Vertex AI: train as a CustomJob with several replicas.

pipelines/custom_job.py reproduces Google Cloud Pipeline Components 2.22.0's
create_custom_training_job_from_component (the package itself cannot be installed next to
google-cloud-aiplatform 2.x); here its output is compared with GCPC's own, recorded from GCPC's
wheel (tests/pipelines/_custom_job_reference.py), and what the CustomJob launcher will send is
parsed into the Vertex AI API's CustomJob message, strictly (an unknown or mistyped field fails).
"""
import json
import re
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1.types import CustomJob, WorkerPoolSpec
from google.protobuf import json_format

from pipelines import resources as R
from pipelines.compile import compile_pipeline, load_spec
from pipelines.custom_job import LAUNCHER_IMAGE, custom_training_job_from_component
from pipelines.placement import step_summary, worker_pool_specs
from tests.pipelines._custom_job_reference import ARGS, fit_step

REFERENCE = Path(__file__).parent / "data" / "gcpc_2.22.0_custom_job.json"
CPU_IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship:0.1.0-abc1234"
GPU_IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship-gpu:0.1.0-abc1234"
PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([a-z_]+)'\]\}\}")


def without_descriptions(obj):
    if isinstance(obj, dict):
        return {k: without_descriptions(v) for k, v in obj.items() if k != "description"}
    if isinstance(obj, list):
        return [without_descriptions(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def mw_spec(tmp_path_factory):
    """The pipeline compiled with --profile gpu --multi-worker 3."""
    out = tmp_path_factory.mktemp("mw") / "pipeline.yaml"
    return load_spec(compile_pipeline(out, image=CPU_IMAGE, plan=R.resolve("gpu", multi_worker=3)))


def test_same_component_as_gcpc_builds():
    reference = json.loads(REFERENCE.read_text())
    ours = custom_training_job_from_component(fit_step, **ARGS)
    assert reference["gcpc"] == "2.22.0" and ours.component_spec.name == reference["name"]
    # parameter descriptions (GCPC's docstrings) aside, the component spec is the same
    assert without_descriptions(json_format.MessageToDict(ours.pipeline_spec)) == \
        without_descriptions(reference["pipeline_spec"])


def test_train_runs_as_a_custom_job_with_three_replicas(mw_spec):
    pools = worker_pool_specs(mw_spec, "exec-train")
    command = [c for c in mw_spec["deploymentSpec"]["executors"]["exec-qat"]["container"]["command"]]
    assert command[:2] == ["sh", "-ec"]  # the lightweight components' launcher, as train's
    machine = {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
    assert [p["replica_count"] for p in pools] == [1, 2]  # pool 0: the chief; pool 1: 2 workers
    for pool in pools:
        assert pool["machine_spec"] == machine
        assert pool["disk_spec"] == {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100}
        spec = pool["container_spec"]
        assert spec["image_uri"] == GPU_IMAGE and spec["env"] == []
        assert spec["args"] == ["--executor_input", "{{$.json_escape[1]}}", "--function_to_execute", "train"]
        assert spec["command"][:2] == ["sh", "-ec"] and "def train(" in spec["command"][3]
        json_format.ParseDict(pool, WorkerPoolSpec.pb(WorkerPoolSpec()))  # strict: Vertex's fields
    launcher = mw_spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert launcher["image"] == LAUNCHER_IMAGE
    assert launcher["command"][-1] == "google_cloud_pipeline_components.container.v1.custom_job.launcher"
    assert step_summary(mw_spec)["train"] == {
        "image": GPU_IMAGE, "cpu": None, "memory": None, "accelerator": "NVIDIA_TESLA_T4", "count": 1,
        "replicas": 3, "machine": "n1-standard-8", "launcher": LAUNCHER_IMAGE}


def test_the_custom_job_keeps_trains_inputs_and_outputs(mw_spec):
    task = mw_spec["root"]["dag"]["tasks"]["train"]
    assert task["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "dataset", "producerTask": "data"}
    assert {k: v["componentInputParameter"] for k, v in task["inputs"]["parameters"].items()} == {
        **{name: name for name in ("epochs", "input_size", "learning_rate", "alpha", "patience", "anchors",
                                   "backbone_weights", "frozen_epochs", "init_from", "head", "seed",
                                   "early_stop")},
        "min_steps": "train_min_steps"}
    comp = mw_spec["components"]["comp-train"]
    assert set(comp["outputDefinitions"]["artifacts"]) == {"model", "metrics"}
    assert "gcp_resources" in comp["outputDefinitions"]["parameters"]
    qat = mw_spec["root"]["dag"]["tasks"]["qat"]["inputs"]["artifacts"]["float_model"]
    assert qat["taskOutputArtifact"] == {"outputArtifactKey": "model", "producerTask": "train"}
    params = comp["inputDefinitions"]["parameters"]
    assert params["restart_job_on_worker_restart"]["defaultValue"] is True
    assert params["service_account"]["defaultValue"] == "{{$.pipeline_service_account}}"
    assert params["location"]["defaultValue"] == "{{$.pipeline_google_cloud_location}}"
    assert params["project"]["defaultValue"] == "{{$.pipeline_google_cloud_project_id}}"


def test_the_payload_is_a_vertex_custom_job(mw_spec):
    """The launcher's --payload, with the placeholders filled as Vertex AI fills them, parses as
    a CustomJob (strictly) with the worker pools, scheduling and service account above."""
    args = mw_spec["deploymentSpec"]["executors"]["exec-train"]["container"]["args"]
    payload = args[args.index("--payload") + 1]
    params = mw_spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    runtime = {"service_account": "edgeship-pipeline@my-proj-123.iam.gserviceaccount.com",
               "persistent_resource_id": ""}
    executor_input = json.dumps({"inputs": {"parameterValues": {"epochs": 40}}})

    def fill(match):
        name = match.group(1)
        value = runtime.get(name, params[name].get("defaultValue", [] if name == "reserved_ip_ranges" else {}))
        if params[name]["parameterType"] == "STRING":
            return value
        text = json.dumps(value)
        return text.replace("{{$.json_escape[1]}}", json.dumps(executor_input)[1:-1])  # escaped once

    job = json.loads(PLACEHOLDER.sub(fill, payload))
    message = CustomJob.from_json(json.dumps(job), ignore_unknown_fields=False)
    spec = message.job_spec
    assert message.display_name == "train"
    assert [p.replica_count for p in spec.worker_pool_specs] == [1, 2]
    assert spec.worker_pool_specs[1].machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert spec.worker_pool_specs[0].container_spec.image_uri == GPU_IMAGE
    assert json.loads(spec.worker_pool_specs[0].container_spec.args[1]) == json.loads(executor_input)
    assert spec.scheduling.restart_job_on_worker_restart is True
    assert spec.service_account == runtime["service_account"]


def test_cpu_only_multi_worker(tmp_path):
    spec = load_spec(compile_pipeline(tmp_path / "p.yaml", image=CPU_IMAGE,
                                      plan=R.resolve("cpu", multi_worker=2)))
    pools = worker_pool_specs(spec, "exec-train")
    assert [p["machine_spec"] for p in pools] == [{"machine_type": "e2-standard-4"}] * 2
    assert [p["replica_count"] for p in pools] == [1, 1]
    assert {p["container_spec"]["image_uri"] for p in pools} == {CPU_IMAGE}
    assert worker_pool_specs(spec, "exec-qat") is None

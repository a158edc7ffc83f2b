"""The exact requests `edgeship pipeline submit | schedule` send, checked offline.

Vertex AI: the generated GAPIC clients' create methods are replaced (the boundary where the
request object leaves the SDK), so the PipelineJob / Schedule protos are inspected as sent.
Kubeflow Pipelines: the real kfp.Client talks HTTP to a recording server on loopback.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
from google.cloud.aiplatform_v1.types import PipelineJob as GcaPipelineJob
from google.cloud.aiplatform_v1.types import Schedule as GcaSchedule

from edgeship import cli
from pipelines import schedule as S

PROJECT, REGION, SA = "my-proj-123", "europe-west4", "edgeship-pipeline@my-proj-123.iam.gserviceaccount.com"
VERTEX = ["--target", "vertex", "--project", PROJECT, "--region", REGION,
          "--pipeline-root", "gs://my-bucket/pipeline-root", "--service-account", SA]


@pytest.fixture
def vertex(monkeypatch):
    """Capture what the SDK sends to Vertex AI; nothing leaves the machine."""
    sent = {"jobs": [], "schedules": []}

    def create_job(self, *, parent, pipeline_job, pipeline_job_id=None, timeout=None, **_):
        sent["jobs"].append({"parent": parent, "job": pipeline_job, "job_id": pipeline_job_id})
        out = GcaPipelineJob(pipeline_job)
        out.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return out

    def create_schedule(self, *, parent, schedule, timeout=None, **_):
        sent["schedules"].append({"parent": parent, "schedule": schedule})
        out = GcaSchedule(schedule)
        out.name = f"{parent}/schedules/123"
        return out

    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_job)
    monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)
    monkeypatch.setattr("google.cloud.aiplatform.utils.gcs_utils."
                        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                        lambda **kw: None)
    monkeypatch.setattr("google.auth.default", lambda *a, **k: (AnonymousCredentials(), PROJECT))
    monkeypatch.delenv("EDGESHIP_IMAGE", raising=False)
    # with GOOGLE_CLOUD_PROJECT set (the local stack sets it) the SDK resolves the project number
    # through the Resource Manager API: a network call, retried for ~50 s where there is none
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("CLOUD_ML_PROJECT_ID", raising=False)
    return sent


class _Recorder(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path.split("?")[0], body))
        if self.path.startswith("/apis/v2beta1/experiments") and self.command == "GET":
            resp = {"experiments": []}
        elif self.path.startswith("/apis/v2beta1/experiments"):
            resp = {"experiment_id": "exp-1", "display_name": body["display_name"]}
        elif self.path.startswith("/apis/v2beta1/recurringruns"):
            resp = {"recurring_run_id": "rr-1", "display_name": body["display_name"]}
        elif self.path.startswith("/apis/v2beta1/runs"):
            resp = {"run_id": "run-1", "display_name": body["display_name"]}
        else:
            resp = {}
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def executor_images(pipeline_spec: dict) -> set[str]:
    return {e["container"]["image"] for e in pipeline_spec["deploymentSpec"]["executors"].values()}


def test_vertex_submit_request(vertex, image, capsys):
    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", image, "--no-cache",
                   "--budget", "0.5", "--epochs", "3", "--force-promote",
                   "--data-uri", "", "--param", "channel=beta"])
    assert rc == 0, capsys.readouterr().err
    [sent] = vertex["jobs"]
    assert sent["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    job = GcaPipelineJob.to_dict(sent["job"])
    assert job["service_account"] == SA
    assert job["runtime_config"]["gcs_output_directory"] == "gs://my-bucket/pipeline-root"
    assert job["runtime_config"]["parameter_values"] == {
        "accuracy_budget": "0.5", "epochs": 3.0, "force_promote": True, "data_uri": "",
        "channel": "beta"}
    spec = job["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "edgeship"
    assert executor_images(spec) == {image}
    assert all(t["cachingOptions"] == {"enableCache": False} for t in spec["root"]["dag"]["tasks"].values())
    assert "submitted: projects/my-proj-123/locations/europe-west4/pipelineJobs/" in capsys.readouterr().out


def test_vertex_submit_with_caching_and_template(vertex, template):
    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", "x/y:1", "--template", str(template)])
    assert rc == 0
    job = GcaPipelineJob.to_dict(vertex["jobs"][0]["job"])
    assert all(t["cachingOptions"]["enableCache"] for t in job["pipeline_spec"]["root"]["dag"]["tasks"].values())
    assert job["runtime_config"].get("parameter_values", {}) == {}


def test_vertex_schedule_request(vertex, image):
    rc = cli.main(["pipeline", "schedule", *VERTEX, "--image", image, "--cron", "0 3 * * 1",
                   "--budget", "1.5"])
    assert rc == 0
    assert not vertex["jobs"], "a schedule must not also start a run"
    [sent] = vertex["schedules"]
    assert sent["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    schedule = GcaSchedule.to_dict(sent["schedule"])
    assert schedule["cron"] == "0 3 * * 1"
    assert schedule["max_concurrent_run_count"] == "1" or schedule["max_concurrent_run_count"] == 1
    request = schedule["create_pipeline_job_request"]
    assert request["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    job = request["pipeline_job"]
    assert job["service_account"] == SA
    assert job["runtime_config"]["parameter_values"] == {"accuracy_budget": "1.5"}
    assert job["runtime_config"]["gcs_output_directory"] == "gs://my-bucket/pipeline-root"
    assert executor_images(job["pipeline_spec"]) == {image}


def test_kfp_submit_request(kfp_server, image, monkeypatch):
    monkeypatch.delenv("EDGESHIP_IMAGE", raising=False)
    host = f"http://127.0.0.1:{kfp_server.server_port}"
    rc = cli.main(["pipeline", "submit", "--target", "kfp", "--host", host, "--image", image,
                   "--no-cache", "--pipeline-root", "gs://b/root", "--service-account", "runner",
                   "--budget", "2", "--latency-budget", "12.5"])
    assert rc == 0
    [run] = [b for m, p, b in kfp_server.requests if m == "POST" and p == "/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-1" and run["service_account"] == "runner"
    assert run["runtime_config"] == {"parameters": {"accuracy_budget": "2", "latency_budget_ms": 12.5},
                                     "pipeline_root": "gs://b/root"}
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "edgeship"
    assert executor_images(run["pipeline_spec"]) == {image}
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"] == {} or t["cachingOptions"].get("enableCache") is False
               for t in tasks.values())
    assert ("POST", "/apis/v2beta1/experiments", {"display_name": "edgeship", "namespace": ""}) \
        in kfp_server.requests


def test_kfp_recurring_run_request(kfp_server, image):
    host = f"http://127.0.0.1:{kfp_server.server_port}"
    rc = cli.main(["pipeline", "schedule", "--target", "kfp", "--host", host, "--image", image,
                   "--cron", "30 2 * * MON-FRI", "--channel", "beta"])
    assert rc == 0
    [rr] = [b for m, p, b in kfp_server.requests if m == "POST" and p == "/apis/v2beta1/recurringruns"]
    assert rr["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * MON-FRI"  # KFP takes seconds first
    assert rr["max_concurrency"] in (1, "1") and rr["mode"] == "ENABLE"
    assert rr["runtime_config"]["parameters"] == {"channel": "beta"}
    assert executor_images(rr["pipeline_spec"]) == {image}


@pytest.mark.parametrize("argv,message", [
    (["--image", "x/y:1", "--param", "momentum=0.9"], "unknown pipeline parameter 'momentum'"),
    (["--image", "x/y:1", "--budget", "-1"], "accuracy_budget must be >= 0"),
    (["--image", "x/y:1", "--budget", "lots"], "accuracy_budget must be a number"),
    (["--image", "x/y:1", "--tolerance", "abc"], "'tolerance' must be a number"),
    (["--image", "x/y:1", "--latency-budget", "-5"], "'latency_budget_ms' must be >= 0"),
    (["--image", "x/y:1", "--data-uri", "/no/such/dataset"], "is a local path"),
    (["--image", "x/y:1", "--param", "novalue"], "expected NAME=VALUE"),
    ([], "no container image given"),
])
def test_bad_input_is_refused_before_submitting(vertex, capsys, argv, message):
    rc = cli.main(["pipeline", "submit", *VERTEX, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not vertex["jobs"]


@pytest.mark.parametrize("cron,message", [
    ("0 3 * *", "expected 5 fields"), ("61 3 * * 1", "minute 61 is outside 0-59"),
    ("0 25 * * 1", "hour 25"), ("0 3 * * funday", "'funday' is not a number"),
    ("*/0 * * * *", "step '0'"), ("0 5-2 * * *", "reversed"), ("TZ=Bad Zone 0 3 * * 1", "expected 5 fields"),
])
def test_invalid_cron_is_refused(vertex, capsys, cron, message):
    rc = cli.main(["pipeline", "schedule", *VERTEX, "--image", "x/y:1", "--cron", cron])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not vertex["schedules"]


@pytest.mark.parametrize("cron", ["0 3 * * 1", "*/15 * * * *", "0 0 1 JAN,JUL *", "TZ=Europe/Paris 0 3 * * 1-5"])
def test_valid_crons(cron):
    assert S.validate_cron(cron) == cron


def test_vertex_target_checks(vertex, capsys):
    rc = cli.main(["pipeline", "submit", "--target", "vertex", "--project", PROJECT,
                   "--pipeline-root", "/local/root", "--image", "x/y:1"])
    assert rc == 2 and "must be a gs:// URI" in capsys.readouterr().err
    rc = cli.main(["pipeline", "submit", "--target", "kfp", "--image", "x/y:1"])
    assert rc == 2 and "needs --host" in capsys.readouterr().err


GPU_IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship-gpu:0.1.0-abc1234"


def test_vertex_submit_gpu_profile_and_multi_worker(vertex, image):
    """--profile gpu --multi-worker 2: the job sent carries train as a 2-replica CustomJob on the
    GPU image (derived from --image), qat on a T4 on the GPU image, the rest CPU-only."""
    from pipelines.placement import step_summary

    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", image, "--profile", "gpu",
                   "--multi-worker", "2"])
    assert rc == 0
    spec = GcaPipelineJob.to_dict(vertex["jobs"][0]["job"])["pipeline_spec"]
    rows = step_summary(spec)
    assert rows["train"]["replicas"] == 2 and rows["train"]["machine"] == "n1-standard-8"
    assert rows["train"]["image"] == rows["qat"]["image"] == GPU_IMAGE
    assert (rows["qat"]["accelerator"], rows["qat"]["count"], rows["qat"]["cpu"]) == ("NVIDIA_TESLA_T4", 1, "8")
    assert all(r["image"] == image and not r["accelerator"]
               for name, r in rows.items() if name not in ("train", "qat"))


def test_kfp_submit_asks_for_nvidia_gpus(kfp_server, image, monkeypatch):
    from pipelines.placement import step_summary

    host = f"http://127.0.0.1:{kfp_server.server_port}"
    rc = cli.main(["pipeline", "submit", "--target", "kfp", "--host", host, "--image", image,
                   "--gpu-image", "r.example/gpu:7", "--accelerator-type", "NVIDIA_L4"])
    assert rc == 0
    [run] = [b for m, p, b in kfp_server.requests if m == "POST" and p == "/apis/v2beta1/runs"]
    rows = step_summary(run["pipeline_spec"])
    assert (rows["train"]["accelerator"], rows["train"]["image"]) == ("nvidia.com/gpu", "r.example/gpu:7")
    assert rows["data"]["accelerator"] == "" and rows["data"]["image"] == image


def test_dry_run_shows_each_steps_machine(vertex, image, capsys):
    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", image, "--profile", "gpu", "--dry-run"])
    assert rc == 0 and not vertex["jobs"]
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert steps["train"]["accelerator"] == "NVIDIA_TESLA_T4" and steps["train"]["image"] == GPU_IMAGE
    assert steps["select"] == {"image": image, "cpu": "2", "memory": "8G", "accelerator": "",
                               "count": 0, "replicas": 1, "machine": None}


@pytest.mark.parametrize("argv,message", [
    (["--profile", "gpu", "--accelerator-count", "0"], "--accelerator-count 0: train has accelerator type"),
    (["--accelerator-type", "NVIDIA_TESLA_K80"], "--accelerator-type NVIDIA_TESLA_K80"),
    (["--accelerator-type", "A100"], "'A100' is not a GPU Vertex AI offers"),
    (["--resource", "train.memory=1G"], "--resource train.memory=1G: train memory 1G is below the 4G"),
    (["--resource", "quantize.accelerator_type=NVIDIA_L4"], "the quantize step cannot use a GPU"),
    (["--multi-worker", "0"], "--multi-worker 0"),
    (["--profile", "gpu", "--gpu-image", "bad image"], "--gpu-image: image name 'bad image'"),
])
def test_bad_machines_are_refused_before_submitting(vertex, capsys, image, argv, message):
    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", image, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not vertex["jobs"]


def test_machine_flags_cannot_change_a_template(vertex, capsys, template):
    rc = cli.main(["pipeline", "submit", *VERTEX, "--image", "x/y:1", "--template", str(template),
                   "--profile", "gpu"])
    assert rc == 2 and "--profile cannot change a compiled --template" in capsys.readouterr().err
    assert not vertex["jobs"]


def test_multi_worker_needs_vertex(kfp_server, capsys, image):
    host = f"http://127.0.0.1:{kfp_server.server_port}"
    rc = cli.main(["pipeline", "submit", "--target", "kfp", "--host", host, "--image", image,
                   "--multi-worker", "3"])
    assert rc == 2 and "multi-worker training runs as a Vertex AI CustomJob" in capsys.readouterr().err
    assert not [p for m, p, b in kfp_server.requests if p == "/apis/v2beta1/runs"]

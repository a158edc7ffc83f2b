"""Per-step machines and images in the compiled spec, for each profile and target, and the checks
that refuse bad settings (naming the option) before anything is compiled or sent."""
import pytest
from kfp import dsl

from edgeship.base.image import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, gpu_image_for
from pipelines import resources as R
from pipelines.compile import compile_pipeline, load_spec, resolve_gpu_image
from pipelines.placement import apply_resources, check_spec_resources, step_name, step_summary

CPU_IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship:0.1.0-abc1234"
GPU_IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship-gpu:0.1.0-abc1234"
T4_RESOURCES = {"accelerator": {"count": "1", "resourceCount": "1", "resourceType": "NVIDIA_TESLA_T4",
                                "type": "NVIDIA_TESLA_T4"},
                "cpuLimit": 8.0, "memoryLimit": 30.0, "resourceCpuLimit": "8", "resourceMemoryLimit": "30G"}


@pytest.fixture(scope="module")
def gpu_spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "pipeline.yaml"
    return load_spec(compile_pipeline(out, image=CPU_IMAGE, plan=R.resolve("gpu")))


@pytest.fixture(scope="module")
def kfp_spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    return load_spec(compile_pipeline(out, image=CPU_IMAGE, gpu_image="r.example/e-gpu:2",
                                      plan=R.resolve("gpu", target="kfp")))


def test_default_profile_asks_for_cpu_and_memory_only(spec, image):
    executors = spec["deploymentSpec"]["executors"]
    assert {step_name(e) for e in executors} == set(R.STEPS)
    for name, body in executors.items():
        want = R.PROFILES["cpu"][step_name(name)]
        res = body["container"]["resources"]
        assert res == {"cpuLimit": float(want.cpu), "memoryLimit": float(want.memory[:-1]),
                       "resourceCpuLimit": want.cpu, "resourceMemoryLimit": want.memory}, name
        assert body["container"]["image"] == image
    assert R.PROFILES["cpu"]["train"] == R.StepResources(cpu="4", memory="16G")  # e2-standard-4
    assert R.PROFILES["cpu"]["select"] == R.StepResources(cpu="2", memory="8G")


def test_gpu_profile_puts_a_t4_and_the_gpu_image_on_train_and_qat(gpu_spec):
    executors = gpu_spec["deploymentSpec"]["executors"]
    for name, body in executors.items():
        step = step_name(name)
        if step in ("train", "qat"):
            assert body["container"]["resources"] == T4_RESOURCES, name
            assert body["container"]["image"] == GPU_IMAGE, name
        else:
            assert "accelerator" not in body["container"]["resources"], name
            assert body["container"]["image"] == CPU_IMAGE, name
    rows = step_summary(gpu_spec)
    assert rows["train"] == {"image": GPU_IMAGE, "cpu": "8", "memory": "30G",
                             "accelerator": "NVIDIA_TESLA_T4", "count": 1, "replicas": 1, "machine": None}


def test_kfp_target_asks_for_nvidia_gpus(kfp_spec):
    rows = step_summary(kfp_spec)
    assert rows["train"]["accelerator"] == rows["qat"]["accelerator"] == "nvidia.com/gpu"
    assert rows["train"]["image"] == "r.example/e-gpu:2" and rows["quantize"]["image"] == CPU_IMAGE
    check_spec_resources(kfp_spec, "kfp")
    with pytest.raises(ValueError, match="compiled for a KFP cluster"):
        check_spec_resources(kfp_spec, "vertex")


def test_template_checks(gpu_spec):
    check_spec_resources(gpu_spec, "vertex")
    with pytest.raises(ValueError, match="step qat asks for NVIDIA_TESLA_T4, a Vertex AI name"):
        check_spec_resources(gpu_spec, "kfp")


def test_overrides_and_accelerator_flags():
    plan = R.resolve("cpu", accelerator_type="NVIDIA_L4", overrides=["train.memory=32G",
                                                                     "autoquant.accelerator_type=nvidia_l4"])
    assert plan.for_step("train") == R.StepResources("4", "32G", "NVIDIA_L4", 1)
    assert plan.for_step("qat") == R.StepResources("4", "16G", "NVIDIA_L4", 1)
    assert plan.for_step("autoquant").accelerator_count == 1  # a type alone means one GPU
    assert R.resolve("gpu", accelerator_count=2).for_step("train").accelerator_count == 2
    assert not any(R.resolve("cpu").accelerated(s) for s in R.STEPS)


@pytest.mark.parametrize("kwargs, message", [
    (dict(profile="gpu", accelerator_count=0),
     "--accelerator-count 0: train has accelerator type NVIDIA_TESLA_T4 but count 0"),
    (dict(overrides=["qat.accelerator_type=NVIDIA_L4", "qat.accelerator_count=0"]),
     "--resource qat.accelerator_count=0: qat has accelerator type NVIDIA_L4 but count 0"),
    (dict(accelerator_type="NVIDIA_TESLA_K80"), "--accelerator-type NVIDIA_TESLA_K80: NVIDIA_TESLA_K80 has "
                                                "reached end of support"),
    (dict(accelerator_type="NVIDIA_GTX_1080"), "--accelerator-type NVIDIA_GTX_1080: 'NVIDIA_GTX_1080' is "
                                               "not a GPU Vertex AI offers"),
    (dict(accelerator_type="TPU_V3"), "TPU_V3 is a TPU"),
    (dict(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=3),
     "--accelerator-count 3: NVIDIA_TESLA_T4 comes in counts of 1, 2 or 4 per machine, not 3"),
    (dict(overrides=["train.memory=2G"]), "--resource train.memory=2G: train memory 2G is below the 4G"),
    (dict(profile="gpu", overrides=["qat.memory=6G"]),
     "--resource qat.memory=6G: qat memory 6G is below the 8G the qat step needs with a GPU"),
    (dict(overrides=["evaluate.memory=700G"]), "above the 624G Vertex AI gives a pipeline step"),
    (dict(overrides=["train.memory=16GB"]), "'16GB' is not a memory size"),
    (dict(overrides=["train.cpu=0"]), "--resource train.cpu=0: train CPU limit 0 must be > 0"),
    (dict(overrides=["train.cpu=128"]), "at most 96 on Vertex AI"),
    (dict(overrides=["publish.accelerator_type=NVIDIA_L4"]), "the publish step cannot use a GPU"),
    (dict(overrides=["train.accelerator_count=2"]), "train asks for 2 accelerator(s) but no accelerator type"),
    (dict(overrides=["train.accelerator_count=two"]), "accelerator count 'two' is not a whole number"),
    (dict(overrides=["train.gpus=1"]), "unknown field 'gpus'"),
    (dict(overrides=["training.cpu=4"]), "unknown step 'training'"),
    (dict(overrides=["train.cpu"]), "expected STEP.FIELD=VALUE"),
    (dict(profile="huge"), "--profile 'huge'"),
    (dict(multi_worker=0), "--multi-worker 0: the number of train replicas must be >= 1"),
    (dict(multi_worker=2, target="kfp"), "--multi-worker 2: multi-worker training runs as a Vertex AI"),
    (dict(overrides=["train.machine_type=n1-standard-8"]), "a machine type applies only to the multi-worker"),
    (dict(multi_worker=2, accelerator_type="NVIDIA_H100_MEGA_80GB", accelerator_count=8),
     "--multi-worker 2: no listed machine has 8 x NVIDIA_H100_MEGA_80GB"),
])
def test_bad_settings_name_the_option(kwargs, message):
    with pytest.raises(ValueError) as info:
        R.resolve(**kwargs)
    assert message in str(info.value)


def test_gpu_names_are_vertex_accelerator_types():
    from google.cloud.aiplatform_v1.types import AcceleratorType

    names = {a.name for a in AcceleratorType} - {"ACCELERATOR_TYPE_UNSPECIFIED"}
    assert set(R.VERTEX_GPUS) | set(R.REFUSED_ACCELERATORS) == names  # every one decided
    assert not set(R.VERTEX_GPUS) & set(R.REFUSED_ACCELERATORS)


@pytest.mark.parametrize("res, machine", [
    (R.StepResources("4", "16G"), "e2-standard-4"),
    (R.StepResources("2", "8G"), "e2-standard-2"),
    (R.StepResources("8", "30G", "NVIDIA_TESLA_T4", 1), "n1-standard-8"),
    (R.StepResources("4", "15G", "NVIDIA_TESLA_T4", 2), "n1-standard-4"),
    (R.StepResources("8", "32G", "NVIDIA_L4", 1), "g2-standard-8"),
    (R.StepResources("8", "32G", "NVIDIA_L4", 2), "g2-standard-24"),
    (R.StepResources("8", "32G", "NVIDIA_TESLA_A100", 1), "a2-highgpu-1g"),
    (R.StepResources("8", "32G", "NVIDIA_L4", 1, machine_type="g2-standard-16"), "g2-standard-16"),
])
def test_machine_for_a_step(res, machine):
    assert R.machine_type_for(res) == machine


def test_image_names():
    assert gpu_image_for(CPU_IMAGE) == GPU_IMAGE
    assert gpu_image_for("localhost:5000/edgeship") == "localhost:5000/edgeship-gpu"
    assert gpu_image_for(DEFAULT_IMAGE) == DEFAULT_GPU_IMAGE
    with pytest.raises(ValueError, match="pinned by digest"):
        gpu_image_for("r/e@sha256:" + "0" * 64)


def test_gpu_image_resolution(monkeypatch):
    monkeypatch.delenv("EDGESHIP_GPU_IMAGE", raising=False)
    assert resolve_gpu_image(None, CPU_IMAGE) == GPU_IMAGE
    monkeypatch.setenv("EDGESHIP_GPU_IMAGE", "r/env-gpu:3")
    assert resolve_gpu_image(None, CPU_IMAGE) == "r/env-gpu:3"
    assert resolve_gpu_image("r/flag-gpu:4", CPU_IMAGE) == "r/flag-gpu:4"
    with pytest.raises(ValueError, match="--gpu-image: image name 'bad image'"):
        resolve_gpu_image("bad image", CPU_IMAGE)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def produce(n: int) -> int:
    return n + 1


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def consume(n: int) -> str:
    print("GOT", n)
    return str(n)


@dsl.pipeline(name="resources-local")
def limited_pipeline(n: int = 1):
    plan = R.resolve("gpu")
    first = apply_resources(produce(n=n), plan.for_step("train"), plan.target)  # a T4 asked for
    apply_resources(consume(n=first.output), plan.for_step("evaluate"), plan.target)


def test_kfp_local_runs_a_pipeline_with_limits(tmp_path, recwarn):
    """kfp.local ignores CPU, memory and GPU limits: the default (cpu) build still runs locally,
    and even a task asking for a GPU runs on this GPU-less machine."""
    from google.protobuf import json_format

    from pipelines.local import run_local

    ir = json_format.MessageToDict(limited_pipeline.pipeline_spec)["deploymentSpec"]["executors"]
    assert ir["exec-produce"]["container"]["resources"]["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    result = run_local({"n": 41}, pipeline_root=tmp_path, pipeline_func=limited_pipeline)
    assert result.statuses == {"produce": "SUCCESS", "consume": "SUCCESS"}, result
    assert "GOT 42" in result.log_path.read_text()
    assert not [w for w in recwarn if "no effect in the current local runner" in str(w.message)]


def test_cloud_build_builds_and_pushes_both_images():
    """cloudbuild.yaml's GPU image is the CPU image's repository + GPU_SUFFIX, as compile assumes."""
    from pathlib import Path

    import yaml

    from edgeship.base.image import GPU_SUFFIX

    build = yaml.safe_load((Path(__file__).resolve().parents[2] / "cloudbuild.yaml").read_text())
    steps = {s["id"]: " ".join(s.get("args", [])) for s in build["steps"]}
    assert "-f Dockerfile -t" in steps["build-cpu"] and "/${_IMAGE}\n" in steps["build-cpu"]
    assert "-f Dockerfile.gpu -t" in steps["build-gpu"]
    assert f"/${{_IMAGE}}{GPU_SUFFIX}\n" in steps["build-gpu"]
    assert f"for image in ${{_IMAGE}} ${{_IMAGE}}{GPU_SUFFIX}; do" in steps["push"]

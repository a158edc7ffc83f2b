"""A pipeline step run as a Vertex AI CustomJob with several replicas (multi-worker training).

This is Google Cloud Pipeline Components' ``create_custom_training_job_from_component``
(google-cloud-pipeline-components 2.22.0, ``v1/custom_job``, Apache-2.0), reproduced here because
that package requires ``google-cloud-aiplatform<2`` and this project pins 2.7.0 (its ``cloud``
extra): installing it would downgrade the Vertex AI SDK. The engine is GCPC's, unchanged: the
task runs GCPC's CustomJob launcher image, which creates a CustomJob from the payload below and
waits for it; the wrapped component's own container (command, args, image) becomes every worker
pool's container, with its executor input JSON-escaped into the payload. Worker pool 0 holds one
replica (the chief), pool 1 the other ``replica_count - 1`` (Vertex AI sets TF_CONFIG on each, so
``edgeship.detection.distribute`` picks MultiWorkerMirroredStrategy).

tests/pipelines/test_custom_job.py compares what this builds with what GCPC 2.22.0 builds for
the same component and arguments (recorded in tests/pipelines/data/), and parses the worker pool
specs and the payload into the Vertex AI API's own CustomJob messages.
"""
import copy
import json
import textwrap
from typing import Any, Dict, List, Optional, Union

from kfp import dsl

GCPC_VERSION = "2.22.0"
LAUNCHER_IMAGE = f"gcr.io/ml-pipeline/google-cloud-pipeline-components:{GCPC_VERSION}"
PROJECT = "{{$.pipeline_google_cloud_project_id}}"
LOCATION = "{{$.pipeline_google_cloud_location}}"
PERSISTENT_RESOURCE_ID = "{{$.pipeline_persistent_resource_id}}"
SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"  # the pipeline run's own service account
_NON_STRING = ("worker_pool_specs", "restart_job_on_worker_restart", "enable_web_access",
               "reserved_ip_ranges", "labels", "psc_interface_config")


def _dumps(payload: dict) -> str:
    """JSON with KFP placeholders inside; non-string parameters' placeholders left unquoted
    (GCPC's container_component_dumps). No ``from __future__ import annotations`` in this module:
    KFP reads the container component's annotations as types."""
    text = json.dumps(payload, default=str)
    for name in _NON_STRING:
        text = text.replace(f"\"{{{{$.inputs.parameters['{name}']}}}}\"",
                            f"{{{{$.inputs.parameters['{name}']}}}}")
    return text


@dsl.container_component
def custom_training_job(
    display_name: str,
    gcp_resources: dsl.OutputPath(str),
    location: str = LOCATION,
    worker_pool_specs: List[Dict[str, str]] = [],  # noqa: B006 - KFP defaults, as in GCPC
    timeout: str = "604800s",
    restart_job_on_worker_restart: bool = False,
    service_account: str = "",
    tensorboard: str = "",
    enable_web_access: bool = False,
    network: str = "",
    reserved_ip_ranges: List[str] = [],  # noqa: B006
    base_output_directory: str = "",
    labels: Dict[str, str] = {},  # noqa: B006
    encryption_spec_key_name: str = "",
    persistent_resource_id: str = PERSISTENT_RESOURCE_ID,
    project: str = PROJECT,
    strategy: str = "STANDARD",
    max_wait_duration: str = "86400s",
    psc_interface_config: Dict[str, Union[str, List[Dict[str, str]]]] = {},  # noqa: B006
):
    """Launch a Vertex AI CustomJob (GCPC's CustomTrainingJobOp interface and payload)."""
    payload = {
        "display_name": display_name,
        "job_spec": {
            "worker_pool_specs": worker_pool_specs,
            "scheduling": {"timeout": timeout,
                           "restart_job_on_worker_restart": restart_job_on_worker_restart,
                           "strategy": strategy, "max_wait_duration": max_wait_duration},
            "service_account": service_account, "tensorboard": tensorboard,
            "enable_web_access": enable_web_access, "network": network,
            "reserved_ip_ranges": reserved_ip_ranges,
            "base_output_directory": {"output_uri_prefix": base_output_directory},
            "persistent_resource_id": persistent_resource_id,
            "psc_interface_config": psc_interface_config,
        },
        "labels": labels,
        "encryption_spec": {"kms_key_name": encryption_spec_key_name},
    }
    return dsl.ContainerSpec(
        image=LAUNCHER_IMAGE,
        command=["python3", "-u", "-m",
                 "google_cloud_pipeline_components.container.v1.custom_job.launcher"],
        args=["--type", "CustomJob", "--payload", _dumps(payload), "--project", project,
              "--location", location, "--gcp_resources", gcp_resources])


def _escape_executor_input(parts: List[str]) -> List[str]:
    # the executor input is JSON inside the (JSON) payload: escaped once more
    return ["{{$.json_escape[1]}}" if p == "{{$}}" else p for p in parts]


def worker_pool_specs_for(container: dict, *, replica_count: int, machine_type: str,
                          accelerator_type: str = "", accelerator_count: int = 1,
                          boot_disk_type: str = "pd-ssd", boot_disk_size_gb: int = 100,
                          env: Optional[List[Dict[str, str]]] = None) -> List[dict]:
    """Worker pool 0: the chief (1 replica); pool 1: the other replicas, same spec."""
    pool: dict[str, Any] = {
        "machine_spec": {"machine_type": machine_type},
        "replica_count": 1,
        "container_spec": {"image_uri": container["image"],
                           "command": _escape_executor_input(container.get("command", [])),
                           "args": _escape_executor_input(container.get("args", [])),
                           "env": env or []},
    }
    if accelerator_type:
        pool["machine_spec"]["accelerator_type"] = accelerator_type
        pool["machine_spec"]["accelerator_count"] = accelerator_count
    if boot_disk_type:
        pool["disk_spec"] = {"boot_disk_type": boot_disk_type, "boot_disk_size_gb": boot_disk_size_gb}
    pools = [pool]
    if int(replica_count) > 1:
        more = copy.deepcopy(pool)
        more["replica_count"] = int(replica_count) - 1
        pools.append(more)
    return pools


def custom_training_job_from_component(component: Any, *, replica_count: int, machine_type: str,
                                       accelerator_type: str = "", accelerator_count: int = 1,
                                       boot_disk_type: str = "pd-ssd", boot_disk_size_gb: int = 100,
                                       timeout: str = "604800s",
                                       restart_job_on_worker_restart: bool = False,
                                       service_account: str = "", base_output_directory: str = "",
                                       env: Optional[List[Dict[str, str]]] = None,
                                       display_name: str = "") -> Any:
    """``component`` as a CustomJob task with ``replica_count`` replicas: the same inputs and
    outputs, plus the CustomJob parameters (defaults set from these arguments). GCPC's merge:
    the CustomJob component's parameters win over the component's of the same name."""
    import yaml
    from google.protobuf import json_format
    from kfp import components

    cj_spec = json_format.MessageToDict(custom_training_job.pipeline_spec)
    user_spec = json_format.MessageToDict(component.pipeline_spec)
    container = list(user_spec["deploymentSpec"]["executors"].values())[0]["container"]
    pools = worker_pool_specs_for(container, replica_count=replica_count, machine_type=machine_type,
                                  accelerator_type=accelerator_type,
                                  accelerator_count=accelerator_count, boot_disk_type=boot_disk_type,
                                  boot_disk_size_gb=boot_disk_size_gb, env=env)
    cj_comp = list(cj_spec["components"].values())[0]
    user_comp = list(user_spec["components"].values())[0]
    defaults = {"display_name": display_name or component.component_spec.name,
                "worker_pool_specs": pools, "timeout": timeout,
                "restart_job_on_worker_restart": restart_job_on_worker_restart,
                "strategy": "STANDARD", "max_wait_duration": "86400s",
                "service_account": service_account, "tensorboard": "", "enable_web_access": False,
                "network": "", "reserved_ip_ranges": None, "base_output_directory": base_output_directory,
                "labels": None, "encryption_spec_key_name": "",
                "persistent_resource_id": PERSISTENT_RESOURCE_ID, "psc_interface_config": None}
    params = cj_comp["inputDefinitions"]["parameters"]
    for name, value in defaults.items():
        if value is None:  # as GCPC: an unset optional parameter has no default
            params[name].pop("defaultValue", None)
        else:
            params[name]["defaultValue"] = value
    params.update(user_comp.get("inputDefinitions", {}).get("parameters", {}))
    cj_comp["outputDefinitions"]["parameters"].update(
        user_comp.get("outputDefinitions", {}).get("parameters", {}))
    cj_comp["inputDefinitions"]["artifacts"] = user_comp.get("inputDefinitions", {}).get("artifacts", {})
    cj_comp["outputDefinitions"]["artifacts"] = user_comp.get("outputDefinitions", {}).get("artifacts", {})
    cj_spec["root"]["inputDefinitions"] = copy.deepcopy(cj_comp["inputDefinitions"])
    cj_spec["root"]["outputDefinitions"] = copy.deepcopy(cj_comp["outputDefinitions"])
    cj_task = list(cj_spec["root"]["dag"]["tasks"].values())[0]
    user_task = list(user_spec["root"]["dag"]["tasks"].values())[0]
    cj_task["inputs"].update(user_task.get("inputs", {}))
    wrapped = components.load_component_from_text(yaml.safe_dump(cj_spec))
    wrapped.component_spec.name = component.component_spec.name
    if component.description:
        wrapped.description = textwrap.dedent(f"""
    A CustomJob that wraps {component.component_spec.name}.

    Original component description:
    {component.description}

    Custom Job wrapper description:
    {custom_training_job.description}
    """)
    return wrapped

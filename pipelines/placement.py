"""Where each step runs, on the KFP side: a component copy on the right image, a task's resource
limits from a ResourcePlan, and the reverse, what a compiled spec asks for per step (printed by
`edgeship pipeline compile`, shown by `submit --dry-run`, checked by the tests)."""
from __future__ import annotations

import copy
import re
from typing import Any

from pipelines.resources import StepResources, kfp_accelerator

CUSTOM_JOB_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"


def with_image(component: Any, image: str) -> Any:
    """A copy of a (lightweight) component whose container runs ``image``."""
    comp = copy.deepcopy(component)
    comp.component_spec.implementation.container.image = image
    return comp


def apply_resources(task: Any, res: StepResources, target: str) -> Any:
    """CPU and memory limits, and the accelerator when the step has one, on a pipeline task."""
    task.set_cpu_limit(res.cpu)
    task.set_memory_limit(res.memory)
    if res.accelerated:
        task.set_accelerator_type(kfp_accelerator(res, target))
        task.set_accelerator_limit(res.accelerator_count)
    return task


def step_name(executor: str) -> str:
    """'exec-evaluate-2' → 'evaluate' (KFP numbers a component's second use)."""
    return re.sub(r"-\d+$", "", executor.removeprefix("exec-"))


def _component_of(spec: dict, executor: str) -> dict:
    for comp in spec.get("components", {}).values():
        if comp.get("executorLabel") == executor:
            return comp
    return {}


def worker_pool_specs(spec: dict, executor: str) -> list[dict] | None:
    """The CustomJob worker pools an executor launches (None for an ordinary step)."""
    container = spec["deploymentSpec"]["executors"][executor].get("container", {})
    if CUSTOM_JOB_LAUNCHER not in container.get("command", []):
        return None
    params = _component_of(spec, executor).get("inputDefinitions", {}).get("parameters", {})
    return params.get("worker_pool_specs", {}).get("defaultValue", [])


def step_summary(spec: dict) -> dict[str, dict[str, Any]]:
    """executor (without 'exec-') → {image, cpu, memory, accelerator, count, replicas, machine}."""
    out = {}
    for executor, body in spec.get("deploymentSpec", {}).get("executors", {}).items():
        container = body.get("container", {})
        pools = worker_pool_specs(spec, executor)
        if pools:
            machine = pools[0].get("machine_spec", {})
            out[executor.removeprefix("exec-")] = {
                "image": pools[0]["container_spec"]["image_uri"], "cpu": None, "memory": None,
                "accelerator": machine.get("accelerator_type", ""),
                "count": int(machine.get("accelerator_count", 0) or 0) if machine.get("accelerator_type") else 0,
                "replicas": sum(int(p.get("replica_count", 1)) for p in pools),
                "machine": machine.get("machine_type", ""), "launcher": container.get("image")}
            continue
        res = container.get("resources", {})
        acc = res.get("accelerator", {})
        out[executor.removeprefix("exec-")] = {
            "image": container.get("image"), "cpu": res.get("resourceCpuLimit"),
            "memory": res.get("resourceMemoryLimit"), "accelerator": acc.get("resourceType", ""),
            "count": int(acc.get("resourceCount", 0) or 0), "replicas": 1, "machine": None}
    return out


def summary_lines(spec: dict) -> list[str]:
    """One line per step of step_summary, for the terminal."""
    lines = []
    for name, row in sorted(step_summary(spec).items()):
        gpu = f", {row['count']} x {row['accelerator']}" if row["accelerator"] else ""
        if row["replicas"] > 1 or row["machine"]:
            where = f"CustomJob {row['replicas']} x {row['machine']}{gpu}"
        else:
            where = f"{row['cpu']} vCPU, {row['memory']}{gpu}"
        lines.append(f"  {name:<16} {where:<40} {row['image']}")
    return lines


def check_spec_resources(spec: dict, target: str) -> None:
    """A compiled template's accelerators, checked as a ResourcePlan's are (for --template).

    Raises ValueError naming --template, the step and what is wrong.
    """
    from pipelines.resources import KFP_GPU, REFUSED_ACCELERATORS, VERTEX_GPUS

    for name, row in step_summary(spec).items():
        kind, count = row["accelerator"], row["count"]
        if not kind:
            continue
        where = f"--template: step {name}"
        if target == "kfp":
            if kind != KFP_GPU:
                raise ValueError(f"{where} asks for {kind}, a Vertex AI name; a KFP cluster takes "
                                 f"{KFP_GPU}: recompile with --target kfp")
            continue
        if kind == KFP_GPU:
            raise ValueError(f"{where} asks for {KFP_GPU} (compiled for a KFP cluster): recompile "
                             "with --target vertex")
        if kind in REFUSED_ACCELERATORS:
            raise ValueError(f"{where}: {kind} {REFUSED_ACCELERATORS[kind]}")
        if kind not in VERTEX_GPUS:
            raise ValueError(f"{where}: {kind!r} is not a GPU Vertex AI offers")
        if count not in VERTEX_GPUS[kind]:
            raise ValueError(f"{where}: {kind} comes in counts of {VERTEX_GPUS[kind]}, not {count}")

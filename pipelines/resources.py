"""Per-step machines: the one place that says what every step asks for (CPU, memory, GPU) and on
which image it runs, as profiles, command-line overrides and the checks that run before anything
is compiled or submitted. No KFP here (pipelines/placement.py applies a ResourcePlan to tasks).

Profiles (docs/deploy.md "Machines, GPUs and what a run costs"):

- ``cpu`` (the default, and what the compiled spec carries unless asked): every step CPU-only;
  the TensorFlow steps 4 vCPU / 16 GB (e2-standard-4, Vertex AI's default machine, now asked for
  explicitly), the small steps 2 vCPU / 8 GB.
- ``gpu``: as ``cpu``, plus one NVIDIA T4 for train and qat on 8 vCPU / 30 GB (n1-standard-8:
  T4s attach to N1 machines); those two steps run the GPU image.

Vertex AI takes accelerator names from its AcceleratorType enum (NVIDIA_TESLA_T4, NVIDIA_L4, ...);
a Kubeflow Pipelines cluster takes the Kubernetes resource name, so for ``target="kfp"`` every
NVIDIA type becomes ``nvidia.com/gpu`` (which GPU model: the cluster's node pools decide).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable

STEPS = ("data", "train", "qat", "quantize", "autoquant", "evaluate", "select", "publish",
         "not-published")
ACCELERABLE = ("train", "qat", "autoquant")  # steps whose code can use a GPU
GPU_STEPS = ("train", "qat")                 # what --accelerator-type / --profile gpu accelerate
TARGETS = ("vertex", "kfp")
KFP_GPU = "nvidia.com/gpu"
FIELDS = ("cpu", "memory", "accelerator_type", "accelerator_count", "machine_type")

# Vertex AI limits for a pipeline step (docs: "at most 96 CPUs", "at most 624GB").
MAX_CPU, MAX_MEMORY_GB = 96.0, 624.0
# GPUs Vertex AI custom training offers (AcceleratorType enum of aiplatform v1; the test checks the
# names against the installed client) and the counts one machine takes.
VERTEX_GPUS = {
    "NVIDIA_TESLA_T4": (1, 2, 4), "NVIDIA_TESLA_P4": (1, 2, 4), "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8), "NVIDIA_L4": (1, 2, 4, 8),
    "NVIDIA_TESLA_A100": (1, 2, 4, 8, 16), "NVIDIA_A100_80GB": (1, 2, 4, 8),
    "NVIDIA_H100_80GB": (1, 2, 4, 8), "NVIDIA_H100_MEGA_80GB": (8,), "NVIDIA_H200_141GB": (8,),
    "NVIDIA_B200": (8,), "NVIDIA_RTX_PRO_6000": (1, 2, 4, 8),
}
REFUSED_ACCELERATORS = {
    "NVIDIA_TESLA_K80": "has reached end of support on Vertex AI",
    "NVIDIA_GB200": "runs on Arm (Grace) hosts; the edgeship images are x86-64",
    "TPU_V2": "is a TPU; the edgeship images are built for CPUs and NVIDIA CUDA",
    "TPU_V3": "is a TPU; the edgeship images are built for CPUs and NVIDIA CUDA",
    "TPU_V4_POD": "is a TPU; the edgeship images are built for CPUs and NVIDIA CUDA",
    "TPU_V5_LITEPOD": "is a TPU; the edgeship images are built for CPUs and NVIDIA CUDA",
}
# What a step needs, in GB. The whole local main job peaked at 3.04 GiB over all its processes
# (README, embedded data); a TensorFlow step gets 4 GB, a GPU step 8 GB (CUDA's host-side
# libraries and pinned buffers, not measured here), the JSON-sized steps 1 GB.
MIN_MEMORY_GB = {"data": 2.0, "train": 4.0, "qat": 4.0, "quantize": 4.0, "autoquant": 4.0,
                 "evaluate": 4.0, "select": 1.0, "publish": 1.0, "not-published": 1.0}
MIN_GPU_MEMORY_GB = 8.0

# Machine families for the multi-worker CustomJob (it needs a machine type; a pipeline step lets
# Vertex AI choose one from the limits). (name, vCPUs, GB, GPUs), smallest first.
_E2 = [(f"e2-standard-{n}", n, 4 * n, 0) for n in (2, 4, 8, 16, 32)]
_N1 = [(f"n1-standard-{n}", n, 3.75 * n, 0) for n in (4, 8, 16, 32, 64, 96)]
_G2 = [("g2-standard-4", 4, 16, 1), ("g2-standard-8", 8, 32, 1), ("g2-standard-12", 12, 48, 1),
       ("g2-standard-16", 16, 64, 1), ("g2-standard-24", 24, 96, 2), ("g2-standard-32", 32, 128, 1),
       ("g2-standard-48", 48, 192, 4), ("g2-standard-96", 96, 384, 8)]
_A2 = [("a2-highgpu-1g", 12, 85, 1), ("a2-highgpu-2g", 24, 170, 2), ("a2-highgpu-4g", 48, 340, 4),
       ("a2-highgpu-8g", 96, 680, 8), ("a2-megagpu-16g", 96, 1360, 16)]
_A2U = [(f"a2-ultragpu-{g}g", 12 * g, 170 * g, g) for g in (1, 2, 4, 8)]
_A3 = [(f"a3-highgpu-{g}g", 26 * g, 234 * g, g) for g in (1, 2, 4, 8)]
_FAMILY = {"NVIDIA_TESLA_T4": _N1, "NVIDIA_TESLA_P4": _N1, "NVIDIA_TESLA_P100": _N1,
           "NVIDIA_TESLA_V100": _N1, "NVIDIA_L4": _G2, "NVIDIA_TESLA_A100": _A2,
           "NVIDIA_A100_80GB": _A2U, "NVIDIA_H100_80GB": _A3}


@dataclass(frozen=True)
class StepResources:
    """What one step asks for. ``machine_type`` is used only by the multi-worker CustomJob."""

    cpu: str = "4"
    memory: str = "16G"
    accelerator_type: str = ""
    accelerator_count: int = 0
    machine_type: str = ""

    @property
    def accelerated(self) -> bool:
        return bool(self.accelerator_type) and self.accelerator_count > 0


_SMALL = StepResources(cpu="2", memory="8G")
_TF = StepResources(cpu="4", memory="16G")
_CPU_PROFILE = {"data": _SMALL, "train": _TF, "qat": _TF, "quantize": _TF, "autoquant": _TF,
                "evaluate": _TF, "select": _SMALL, "publish": _SMALL, "not-published": _SMALL}
_T4 = StepResources(cpu="8", memory="30G", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1)
PROFILES = {"cpu": dict(_CPU_PROFILE), "gpu": {**_CPU_PROFILE, "train": _T4, "qat": _T4}}


@dataclass(frozen=True)
class ResourcePlan:
    """The checked resources of every step for one compile (see resolve)."""

    profile: str = "cpu"
    target: str = "vertex"
    steps: dict = field(default_factory=lambda: dict(PROFILES["cpu"]))
    multi_worker: int = 1  # replicas of the train step as a Vertex AI CustomJob (1 = a plain step)
    origins: dict = field(default_factory=dict)  # (step, field) -> the option that set it

    def for_step(self, step: str) -> StepResources:
        return self.steps[step]

    def accelerated(self, step: str) -> bool:
        return self.steps[step].accelerated

    def train_machine_type(self) -> str:
        return machine_type_for(self.steps["train"])


def memory_gb(text: str) -> float:
    """'16G' → 16.0, '512Mi' → 0.537, '30000000000' → 30.0 (GB, decimal); ValueError otherwise."""
    m = re.fullmatch(r"(\d+)(K|Ki|M|Mi|G|Gi|T|Ti)?", str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a memory size (a whole number, optionally followed by "
                         "K, M, G, T or Ki, Mi, Gi, Ti)")
    unit = m.group(2) or ""
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}[unit]
    return int(m.group(1)) * scale / 1e9


def cpu_count(text: str) -> float:
    """'4' → 4.0, '500m' → 0.5; ValueError otherwise."""
    m = re.fullmatch(r"(\d*\.?\d+)(m?)", str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a CPU count (a number, or millicores like 500m)")
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _where(plan: ResourcePlan, step: str, name: str) -> str:
    return plan.origins.get((step, name)) or f"--profile {plan.profile} ({step}.{name})"


def check_step(plan: ResourcePlan, step: str) -> None:
    """Raise ValueError naming the option that set a value this step cannot run with."""
    res = plan.steps[step]
    try:
        cpus = cpu_count(res.cpu)
    except ValueError as exc:
        raise ValueError(f"{_where(plan, step, 'cpu')}: {exc}") from None
    if cpus <= 0 or (plan.target == "vertex" and cpus > MAX_CPU):
        raise ValueError(f"{_where(plan, step, 'cpu')}: {step} CPU limit {res.cpu} must be > 0"
                         + (f" and at most {MAX_CPU:g} on Vertex AI" if plan.target == "vertex" else ""))
    try:
        gb = memory_gb(res.memory)
    except ValueError as exc:
        raise ValueError(f"{_where(plan, step, 'memory')}: {exc}") from None
    need = max(MIN_MEMORY_GB[step], MIN_GPU_MEMORY_GB if res.accelerated else 0.0)
    if gb < need:
        raise ValueError(f"{_where(plan, step, 'memory')}: {step} memory {res.memory} is below the "
                         f"{_fmt(need)}G the {step} step needs" + (" with a GPU" if res.accelerated else ""))
    if plan.target == "vertex" and gb > MAX_MEMORY_GB:
        raise ValueError(f"{_where(plan, step, 'memory')}: {step} memory {res.memory} is above the "
                         f"{MAX_MEMORY_GB:g}G Vertex AI gives a pipeline step")
    _check_accelerator(plan, step, res)


def _check_accelerator(plan: ResourcePlan, step: str, res: StepResources) -> None:
    kind, count = res.accelerator_type, res.accelerator_count
    where_t, where_c = _where(plan, step, "accelerator_type"), _where(plan, step, "accelerator_count")
    if count < 0:
        raise ValueError(f"{where_c}: {step} accelerator count {count} must be >= 0")
    if not kind and count:
        raise ValueError(f"{where_c}: {step} asks for {count} accelerator(s) but no accelerator type")
    if not kind:
        return
    if step not in ACCELERABLE:
        raise ValueError(f"{where_t}: the {step} step cannot use a GPU (only {', '.join(ACCELERABLE)})")
    if count == 0:
        raise ValueError(f"{where_c}: {step} has accelerator type {kind} but count 0; give a count "
                         f"({_counts(kind)}) or no type")
    if plan.target == "kfp" and kind == KFP_GPU:
        return
    if kind in REFUSED_ACCELERATORS:
        raise ValueError(f"{where_t}: {kind} {REFUSED_ACCELERATORS[kind]}")
    if kind not in VERTEX_GPUS:
        raise ValueError(f"{where_t}: {kind!r} is not a GPU Vertex AI offers; use one of "
                         f"{', '.join(VERTEX_GPUS)}")
    if count not in VERTEX_GPUS[kind]:
        raise ValueError(f"{where_c}: {kind} comes in counts of {_counts(kind)} per machine, not {count}")


def _counts(kind: str) -> str:
    counts = VERTEX_GPUS.get(kind, (1,))
    return ", ".join(str(c) for c in counts[:-1]) + (" or " if len(counts) > 1 else "") + str(counts[-1])


def machine_type_for(res: StepResources) -> str:
    """The smallest Vertex AI machine with the step's GPUs, CPUs and memory (or its machine_type).

    For the multi-worker CustomJob, which needs one, and for the cost table; a pipeline step gets
    the machine Vertex AI picks from its limits. Raises ValueError when no listed machine fits.
    """
    if res.machine_type:
        return res.machine_type
    cpus, gb = cpu_count(res.cpu), memory_gb(res.memory)
    family = _FAMILY.get(res.accelerator_type, []) if res.accelerated else _E2 + _N1
    attached = family is _N1  # N1 GPUs attach to any N1 machine; the others come built in
    for name, vcpus, mem, gpus in family:
        fits_gpu = attached or gpus == (res.accelerator_count if res.accelerated else 0)
        if fits_gpu and vcpus >= cpus and mem >= gb:
            return name
    raise ValueError(f"no listed machine has {res.accelerator_count} x {res.accelerator_type or 'no GPU'} "
                     f"with {res.cpu} vCPUs and {res.memory}; name one with train.machine_type=...")


def parse_override(text: str, option: str = "--resource") -> tuple[str, str, str]:
    """'train.memory=32G' → ('train', 'memory', '32G'); ValueError naming the option."""
    name, sep, value = str(text).partition("=")
    step, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise ValueError(f"{option} {text!r}: expected STEP.FIELD=VALUE, e.g. train.memory=32G")
    if step not in STEPS:
        raise ValueError(f"{option} {text!r}: unknown step {step!r}; steps: {', '.join(STEPS)}")
    if key not in FIELDS:
        raise ValueError(f"{option} {text!r}: unknown field {key!r}; fields: {', '.join(FIELDS)}")
    return step, key, value.strip()


def _set(steps: dict, origins: dict, step: str, key: str, value: str, origin: str) -> None:
    if key == "accelerator_count":
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{origin}: accelerator count {value!r} is not a whole number") from None
    elif key == "accelerator_type":
        value = value.strip().upper() if value.strip() != KFP_GPU else KFP_GPU
    steps[step] = replace(steps[step], **{key: value})
    origins[(step, key)] = origin


def resolve(profile: str = "cpu", *, target: str = "vertex", overrides: Iterable[str] = (),
            accelerator_type: str | None = None, accelerator_count: int | None = None,
            multi_worker: int = 1) -> ResourcePlan:
    """Profile + overrides → a checked ResourcePlan. ``accelerator_type`` / ``accelerator_count``
    (the CLI's --accelerator-type / --accelerator-count) apply to train and qat; ``overrides``
    are --resource STEP.FIELD=VALUE items, applied last. Raises ValueError naming the option."""
    if profile not in PROFILES:
        raise ValueError(f"--profile {profile!r}: use one of {', '.join(PROFILES)}")
    if target not in TARGETS:
        raise ValueError(f"--target {target!r}: use one of {', '.join(TARGETS)}")
    steps, origins = dict(PROFILES[profile]), {}
    for step in GPU_STEPS:
        if accelerator_type is not None:
            _set(steps, origins, step, "accelerator_type", accelerator_type,
                 f"--accelerator-type {accelerator_type}")
            if accelerator_count is None and steps[step].accelerator_count == 0 and accelerator_type:
                _set(steps, origins, step, "accelerator_count", "1", f"--accelerator-type {accelerator_type}")
        if accelerator_count is not None:
            _set(steps, origins, step, "accelerator_count", str(accelerator_count),
                 f"--accelerator-count {accelerator_count}")
    for item in overrides:
        step, key, value = parse_override(item)
        _set(steps, origins, step, key, value, f"--resource {item}")
        if key == "accelerator_type" and value and steps[step].accelerator_count == 0 \
                and (step, "accelerator_count") not in origins:
            _set(steps, origins, step, "accelerator_count", "1", f"--resource {item}")  # KFP's default
    plan = ResourcePlan(profile, target, steps, int(multi_worker), origins)
    for step in STEPS:
        check_step(plan, step)
    _check_multi_worker(plan)
    return plan


def _check_multi_worker(plan: ResourcePlan) -> None:
    if plan.multi_worker < 1:
        raise ValueError(f"--multi-worker {plan.multi_worker}: the number of train replicas must be >= 1")
    if plan.multi_worker > 1 and plan.target != "vertex":
        raise ValueError(f"--multi-worker {plan.multi_worker}: multi-worker training runs as a Vertex AI "
                         "CustomJob (--target vertex); on a KFP cluster train is one pod with the "
                         "step's resources")
    if plan.multi_worker > 1:
        try:
            plan.train_machine_type()
        except ValueError as exc:
            raise ValueError(f"--multi-worker {plan.multi_worker}: {exc}") from None
    elif plan.steps["train"].machine_type:
        raise ValueError(f"{_where(plan, 'train', 'machine_type')}: a machine type applies only to the "
                         "multi-worker CustomJob (--multi-worker N > 1); a pipeline step's machine is "
                         "chosen by Vertex AI from its CPU, memory and GPU limits")


def kfp_accelerator(res: StepResources, target: str) -> str:
    """The accelerator name to put in the compiled spec for ``target``."""
    return KFP_GPU if target == "kfp" else res.accelerator_type

"""Distribution inside a training step: which tf.distribute strategy, at what batch and learning
rate, in which precision, and the train/eval step functions that run under it.

The strategy follows from what the step sees (:func:`choose_strategy`): ``TF_CONFIG`` naming more
than one training task (Vertex AI sets it on each replica of a multi-replica CustomJob: ``chief``
for worker pool 0, ``worker`` for pool 1) → ``MultiWorkerMirroredStrategy`` (NCCL between GPUs,
RING on CPU; created before anything starts TensorFlow's runtime, as collectives require); more
than one local GPU (or logical CPU device, as in the tests) → ``MirroredStrategy``; otherwise the
default strategy: one device, exactly today's training.

Scaling (:func:`scale_hyperparameters`): each replica keeps the configured batch, so the global
batch is ``batch_size × replicas`` and the peak learning rate grows by the same factor (linear
rule; ``training.lr_schedule``'s warm-up makes it safe); the returned dict goes to history.json.

Precision (:func:`precision_policy`): ``mixed_float16`` only for float training on tensor-core
GPUs (compute capability >= 7.0: T4, V100, A100, L4, H100); never for QAT (fake-quant ranges are
float32 statistics) nor conversion. A model trained in mixed precision is exported through
:func:`float32_copy`, so later steps load a float32 model. XLA stays off unless EDGESHIP_XLA=1
(:func:`configure_xla`): nobody has measured it faster for this model yet.

The step functions (:func:`make_distributed_step_fns`) compute exactly the loss of
``loss.make_step_fns``: detection_loss divides each sum by the batch's positive anchors, so
under several replicas each replica's sums are divided by the *global* positive count (an
all-reduce), and the optimizer's sum of the replicas' gradients is the gradient of the one-device
loss. Known difference: BatchNormalization normalizes with each replica's own part of the batch.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger(__name__)

ONE_DEVICE, MIRRORED, MULTI_WORKER = "one_device", "mirrored", "multi_worker"
MIXED, FLOAT32, MIN_TENSOR_CORE_CC = "mixed_float16", "float32", (7, 0)
XLA_ENV = "EDGESHIP_XLA"                        # "1" turns XLA on for the train step
MIXED_PRECISION_ENV = "EDGESHIP_MIXED_PRECISION"  # "0" keeps GPU training in float32
RESUME_ENV = "EDGESHIP_RESUME"                  # "1": fit resumes from out_dir/checkpoints
TRAINING_TASKS = ("chief", "master", "worker")  # TF_CONFIG task types that train
STRATEGY_NAMES = {ONE_DEVICE: "default strategy", MIRRORED: "MirroredStrategy",
                  MULTI_WORKER: "MultiWorkerMirroredStrategy"}


@dataclass(frozen=True)
class ClusterInfo:
    """The training cluster described by TF_CONFIG: how many training tasks, and which one this is."""

    workers: int
    task_type: str
    task_index: int
    is_chief: bool


def parse_tf_config(text: str | None) -> ClusterInfo | None:
    """ClusterInfo from TF_CONFIG's JSON, or None when it is unset or names no cluster.

    Raises ValueError (naming TF_CONFIG) when it is not JSON or its task is not in its cluster.
    """
    if not text or not text.strip():
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not JSON ({exc.msg}): {text[:200]!r}") from None
    cluster = cfg.get("cluster") or {}
    workers = sum(len(cluster.get(kind) or []) for kind in TRAINING_TASKS)
    if not workers:
        return None
    task = cfg.get("task") or {}
    task_type, task_index = str(task.get("type", "chief")), int(task.get("index", 0))
    if task_type in TRAINING_TASKS and task_index >= len(cluster.get(task_type) or []):
        raise ValueError(f"TF_CONFIG task {task_type}:{task_index} is not in its cluster {cluster}")
    has_chief = bool(cluster.get("chief") or cluster.get("master"))
    is_chief = task_type in ("chief", "master") or (not has_chief and task_type == "worker"
                                                     and task_index == 0)
    return ClusterInfo(workers, task_type, task_index, is_chief)


@dataclass(frozen=True)
class DevicePlan:
    """What one step trains on (decided without touching TensorFlow's runtime; see plan_devices)."""

    kind: str                                   # one_device | mirrored | multi_worker
    device_type: str                            # GPU | CPU
    devices: tuple[str, ...]                    # local devices holding a replica
    gpu_names: tuple[str, ...] = ()
    compute_capability: tuple[int, int] | None = None  # lowest of the local GPUs
    cluster: ClusterInfo | None = None

    @property
    def workers(self) -> int:
        return self.cluster.workers if self.kind == MULTI_WORKER and self.cluster else 1

    @property
    def is_chief(self) -> bool:
        return self.cluster.is_chief if self.kind == MULTI_WORKER and self.cluster else True


def plan_devices(local_devices: Sequence[str], *, device_type: str, gpu_names: Sequence[str] = (),
                 compute_capability: tuple[int, int] | None = None,
                 cluster: ClusterInfo | None = None) -> DevicePlan:
    """The rule: a cluster of several training tasks → multi_worker; several local devices →
    mirrored; else one_device."""
    devices = tuple(local_devices) or ("/device:CPU:0",)
    if cluster is not None and cluster.workers > 1:
        kind = MULTI_WORKER
    elif len(devices) > 1:
        kind = MIRRORED
    else:
        kind = ONE_DEVICE
    return DevicePlan(kind, device_type, devices, tuple(gpu_names), compute_capability, cluster)


def _gpu_details(tf: Any, gpus: Sequence[Any]) -> tuple[list[str], tuple[int, int] | None]:
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    caps = [tuple(int(v) for v in d["compute_capability"]) for d in details if d.get("compute_capability")]
    return [str(d.get("device_name", g.name)) for d, g in zip(details, gpus)], (min(caps) if caps else None)


def detect_plan(tf_config: str | None = None) -> DevicePlan:
    """The DevicePlan for this process: TF_CONFIG (argument, else the environment), the physical
    GPUs, and (when no cluster) the logical devices. Only the last initializes the runtime."""
    from edgeship.base.tfcompat import tf

    text = tf_config if tf_config is not None else os.environ.get("TF_CONFIG")
    cluster = parse_tf_config(text)
    gpus = tf.config.list_physical_devices("GPU")
    names, cap = _gpu_details(tf, gpus)
    if cluster is not None and cluster.workers > 1:  # collectives: before the runtime starts
        local = tuple(f"/device:GPU:{i}" for i in range(len(gpus))) or ("/device:CPU:0",)
        return plan_devices(local, device_type="GPU" if gpus else "CPU", gpu_names=names,
                            compute_capability=cap, cluster=cluster)
    kind = "GPU" if gpus else "CPU"
    local = tuple(d.name for d in tf.config.list_logical_devices(kind))
    return plan_devices(local, device_type=kind, gpu_names=names, compute_capability=cap,
                        cluster=cluster)


@dataclass
class Distribution:
    """A DevicePlan and its tf.distribute strategy (``precision`` set by the caller when it
    decides one; the step builder reads it)."""

    plan: DevicePlan
    strategy: Any
    precision: str = FLOAT32
    notes: dict = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    is_chief = property(lambda self: self.plan.is_chief)

    def scope(self):  # variables (model, optimizer, checkpoint) are created in it
        return self.strategy.scope()


def one_device() -> Distribution:
    """The default strategy on one device: what training did before (nothing distributed)."""
    from edgeship.base.tfcompat import tf

    return Distribution(plan_devices(["/device:CPU:0"], device_type="CPU"), tf.distribute.get_strategy())


def should_resume(dist: Distribution, env: dict | None = None) -> bool:
    """Whether fit restores the newest checkpoint of its output folder: in a multi-worker CustomJob
    (Vertex AI restarts every replica, same outputs, when one is preempted) or with
    EDGESHIP_RESUME=1. Never by default: a reused --out folder must not silently resume."""
    env = os.environ if env is None else env
    return dist.plan.kind == MULTI_WORKER or str(env.get(RESUME_ENV, "0")).strip() == "1"


def make_strategy(plan: DevicePlan) -> Any:
    """The tf.distribute strategy for a plan (the default strategy for one device)."""
    from edgeship.base.tfcompat import tf

    if plan.kind == MULTI_WORKER:
        impl = (tf.distribute.experimental.CommunicationImplementation.NCCL if plan.device_type == "GPU"
                else tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=impl))
    if plan.kind == MIRRORED:
        return tf.distribute.MirroredStrategy(devices=list(plan.devices))
    return tf.distribute.get_strategy()


def choose_strategy(tf_config: str | None = None) -> Distribution:
    """Detect the devices / cluster and build the strategy (see the module docstring)."""
    plan = detect_plan(tf_config)
    return Distribution(plan, make_strategy(plan))


def scale_hyperparameters(batch_size: int, learning_rate: float, replicas: int, *,
                          rule: str = "linear") -> dict[str, Any]:
    """Global batch and peak learning rate for ``replicas`` replicas, each with ``batch_size``.

    rule: "linear" (lr × replicas), "sqrt" (lr × √replicas) or "none". Returns the record
    (history.json "distribution" → "scaling"). Raises ValueError for a bad count or rule.
    """
    if replicas < 1 or batch_size < 1:
        raise ValueError(f"replicas and batch_size must be >= 1, got {replicas}, {batch_size}")
    factors = {"linear": float(replicas), "sqrt": float(replicas) ** 0.5, "none": 1.0}
    if rule not in factors:
        raise ValueError(f"learning-rate scaling rule {rule!r}: use one of {sorted(factors)}")
    return {"replicas": int(replicas), "rule": rule, "per_replica_batch_size": int(batch_size),
            "global_batch_size": int(batch_size) * int(replicas),
            "base_learning_rate": float(learning_rate),
            "learning_rate": float(learning_rate) * factors[rule], "lr_factor": factors[rule]}


def precision_policy(plan: DevicePlan, *, qat: bool = False, converting: bool = False,
                     env: dict | None = None) -> str:
    """``mixed_float16`` for float training on tensor-core GPUs, else ``float32`` (module docstring)."""
    env = os.environ if env is None else env
    if qat or converting or plan.device_type != "GPU":
        return FLOAT32
    if str(env.get(MIXED_PRECISION_ENV, "1")).strip() in ("0", "false", "no"):
        return FLOAT32
    cap = plan.compute_capability
    return MIXED if cap is not None and tuple(cap) >= MIN_TENSOR_CORE_CC else FLOAT32


@contextmanager
def precision_scope(policy: str) -> Iterator[str]:
    """Keras global dtype policy ``policy`` while building models; restored afterwards."""
    from edgeship.base.tfcompat import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer: Any, policy: str) -> Any:
    """A LossScaleOptimizer around ``optimizer`` under mixed precision; ``optimizer`` otherwise."""
    if policy != MIXED:
        return optimizer
    from edgeship.base.tfcompat import keras

    return keras.mixed_precision.LossScaleOptimizer(optimizer)


def float32_copy(model: Any, build: Callable[[], Any]) -> Any:
    """``build()`` under the float32 policy, with ``model``'s weights (its variables are float32
    under mixed precision): what export and conversion must see."""
    with precision_scope(FLOAT32):
        fresh = build()
    fresh.set_weights(model.get_weights())
    return fresh


def configure_xla(env: dict | None = None) -> bool:
    """XLA auto-clustering on only when EDGESHIP_XLA=1; returns whether it is on."""
    from edgeship.base.tfcompat import tf

    env = os.environ if env is None else env
    on = str(env.get(XLA_ENV, "0")).strip() in ("1", "true", "yes")
    tf.config.optimizer.set_jit(on)
    return on


def describe(dist: Distribution, *, scaling: dict | None = None, xla: bool = False) -> dict[str, Any]:
    """What the step used, as recorded in history.json ("distribution")."""
    p = dist.plan
    return {"strategy": STRATEGY_NAMES[p.kind], "kind": p.kind, "replicas": dist.replicas,
            "workers": p.workers, "is_chief": p.is_chief, "device_type": p.device_type,
            "devices": list(p.devices), "gpus": list(p.gpu_names),
            "compute_capability": list(p.compute_capability) if p.compute_capability else None,
            "precision": dist.precision, "xla": bool(xla), "scaling": dict(scaling or {})}


def device_line(dist: Distribution, *, scaling: dict | None = None, xla: bool = False,
                log_it: bool = False) -> str:
    """One line saying what the step used (strategy, devices, batch / lr, precision, XLA);
    ``log_it`` also logs it (INFO, which KFP's executor prints to the step's log)."""
    p = dist.plan
    cap = f", cc {p.compute_capability[0]}.{p.compute_capability[1]}" if p.compute_capability else ""
    hw = (f"{len(p.gpu_names)}x GPU ({p.gpu_names[0]}{cap})" if p.gpu_names else
          f"{len(p.devices)}x CPU device" + ("s" if len(p.devices) > 1 else ""))
    text = f"device: {STRATEGY_NAMES[p.kind]} ({p.kind}), {dist.replicas} replica(s) on {hw}"
    if p.kind == MULTI_WORKER and p.cluster:
        text += f", worker {p.cluster.task_type}:{p.cluster.task_index} of {p.workers}"
    if scaling:
        text += (f"; batch {scaling['per_replica_batch_size']}/replica = {scaling['global_batch_size']} "
                 f"global, lr {scaling['base_learning_rate']:g} -> {scaling['learning_rate']:g} "
                 f"({scaling['rule']})")
    text += f"; precision {dist.precision}; XLA {'on' if xla else 'off'}"
    if log_it:
        log.info("%s", text)
    return text


def worker_dir(path: str | Path, dist: Distribution) -> Path:
    """``path`` for the chief; a private temporary folder for every other worker (whatever it
    writes there is thrown away: only the chief's outputs count)."""
    if dist.is_chief:
        return Path(path)
    c = dist.plan.cluster
    return Path(tempfile.mkdtemp(prefix=f"edgeship-{c.task_type}{c.task_index}-" if c else "edgeship-"))


def checkpoint_dirs(base: str | Path, dist: Distribution) -> tuple[Path, Path]:
    """(restore from, save to): every worker restores the chief's checkpoints (the pipeline root);
    every worker must save (collectives), non-chief ones into a private folder."""
    return Path(base), (Path(base) if dist.is_chief else worker_dir(base, dist) / "checkpoints")


def restore_latest(checkpoint: Any, directory: str | Path) -> int:
    """Restore the newest checkpoint in ``directory`` into ``checkpoint``; returns its number
    (fit saves one per epoch, numbered by epoch) or 0 when there is none."""
    from edgeship.base.tfcompat import tf

    latest = tf.train.latest_checkpoint(str(directory))
    if not latest:
        return 0
    checkpoint.restore(latest).expect_partial()
    number = latest.rsplit("-", 1)[-1]
    log.info("resumed from checkpoint %s", latest)
    return int(number) if number.isdigit() else 0


def make_distributed_step_fns(dist: Distribution, model: Any, optimizer: Any, num_classes: int,
                              loss_config: Any, *, jit_compile: bool = False,
                              loss: Callable | None = None) -> tuple[Callable, Callable]:
    """(train_step, eval_step) with ``loss.make_step_fns``' signature and results under
    ``dist``: train_step(images, targets) takes a global batch (split across the replicas here)
    or per-replica values from ``strategy.experimental_distribute_dataset`` and returns the
    global (cls_loss, box_loss); eval_step runs the model once, in cross-replica context.
    One device in float32 gets ``loss.make_step_fns`` itself. ``loss``: a ``loss.step_loss``."""
    from edgeship.base.tfcompat import tf
    from edgeship.detection.loss import make_step_fns, step_loss

    if dist.plan.kind == ONE_DEVICE and dist.precision == FLOAT32 and not jit_compile:
        return make_step_fns(model, optimizer, num_classes, loss_config, loss=loss)
    loss = loss or step_loss()
    strategy, replicas = dist.strategy, dist.replicas
    scaled = hasattr(optimizer, "get_scaled_loss")
    SUM = tf.distribute.ReduceOp.SUM

    def as_float32(outputs):
        return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs)

    def replica_step(images, targets):
        ctx = tf.distribute.get_replica_context()
        pos = tf.reduce_sum(tf.cast(targets["cls"] > 0, tf.float32))
        local_npos = tf.maximum(pos, 1.0)  # detection_loss's divisor on this replica's part
        global_npos = tf.maximum(ctx.all_reduce(SUM, pos), 1.0)
        with tf.GradientTape() as tape:
            outputs = as_float32(model(images, training=True))
            cls_loss, box_loss = loss(outputs, images, targets, num_classes, loss_config)
            cls_part = cls_loss * local_npos / global_npos
            box_part = box_loss * local_npos / global_npos
            total = cls_part + box_part
            if model.losses:
                total += tf.add_n(model.losses) / replicas
            target = optimizer.get_scaled_loss(total) if scaled else total
        grads = tape.gradient(target, model.trainable_variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # sums across replicas
        return cls_part, box_part

    @tf.function(jit_compile=jit_compile or None)
    def distributed_step(images, targets):
        cls_part, box_part = strategy.run(replica_step, args=(images, targets))
        return strategy.reduce(SUM, cls_part, axis=None), strategy.reduce(SUM, box_part, axis=None)

    def split(batch: Any) -> Any:
        size = int(tf.nest.flatten(batch)[0].shape[0])
        if size % replicas:
            raise ValueError(f"global batch {size} does not split over {replicas} replicas")
        per = size // replicas

        def value(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.nest.map_structure(lambda t: t[i * per:(i + 1) * per], batch)

        return strategy.experimental_distribute_values_from_function(value)

    def train_step(images, targets):
        if not isinstance(images, tf.distribute.DistributedValues):
            images, targets = split(images), split(targets)
        return distributed_step(images, targets)

    @tf.function
    def eval_step(images, targets):
        outputs = as_float32(model(images, training=False))
        return loss(outputs, images, targets, num_classes, loss_config)

    return train_step, eval_step

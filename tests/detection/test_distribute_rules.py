"""The decisions of edgeship.detection.distribute, without TensorFlow's runtime: the strategy from
the devices and TF_CONFIG, batch / learning-rate scaling, the mixed-precision rule, the device
line, and where non-chief workers write."""
import json
from pathlib import Path

import pytest

from edgeship.detection import distribute as D

GPU2 = ["/device:GPU:0", "/device:GPU:1"]


def tf_config(chief=1, workers=0, task=("chief", 0)):
    cluster = {}
    if chief:
        cluster["chief"] = [f"chief-{i}:2222" for i in range(chief)]
    if workers:
        cluster["worker"] = [f"worker-{i}:2222" for i in range(workers)]
    return json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]},
                       "environment": "cloud"})


class FakeStrategy:
    def __init__(self, replicas):
        self.num_replicas_in_sync = replicas


class MirroredStrategy(FakeStrategy):
    pass


class MultiWorkerMirroredStrategy(FakeStrategy):
    pass


@pytest.mark.parametrize("devices, config, kind", [
    (["/device:CPU:0"], None, D.ONE_DEVICE),
    (["/device:GPU:0"], tf_config(chief=1), D.ONE_DEVICE),       # Vertex, one replica
    (GPU2, None, D.MIRRORED),
    (["/device:CPU:0", "/device:CPU:1"], None, D.MIRRORED),       # two logical CPU devices
    (["/device:GPU:0"], tf_config(chief=1, workers=2), D.MULTI_WORKER),
    (GPU2, tf_config(chief=1, workers=1, task=("worker", 0)), D.MULTI_WORKER),
])
def test_strategy_follows_devices_and_tf_config(devices, config, kind):
    plan = D.plan_devices(devices, device_type="GPU" if "GPU" in devices[0] else "CPU",
                          cluster=D.parse_tf_config(config))
    assert plan.kind == kind


def test_tf_config_roles():
    chief = D.parse_tf_config(tf_config(chief=1, workers=2))
    assert (chief.workers, chief.task_type, chief.is_chief) == (3, "chief", True)
    worker = D.parse_tf_config(tf_config(chief=1, workers=2, task=("worker", 1)))
    assert (worker.workers, worker.task_index, worker.is_chief) == (3, 1, False)
    no_chief = D.parse_tf_config(tf_config(chief=0, workers=2, task=("worker", 0)))
    assert no_chief.is_chief  # without a chief task, worker 0 is the chief (TensorFlow's rule)
    evaluator = json.dumps({"cluster": {"chief": ["c:1"]}, "task": {"type": "evaluator", "index": 0}})
    assert D.parse_tf_config(evaluator).workers == 1
    assert D.parse_tf_config(None) is None and D.parse_tf_config("  ") is None
    assert D.parse_tf_config(json.dumps({"cluster": {}})) is None


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not JSON"),
    (tf_config(chief=1, workers=1, task=("worker", 3)), "task worker:3 is not in its cluster"),
])
def test_bad_tf_config_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        D.parse_tf_config(text)


def test_scaling_is_linear_and_recorded():
    s = D.scale_hyperparameters(16, 0.02, 4)
    assert s == {"replicas": 4, "rule": "linear", "per_replica_batch_size": 16, "global_batch_size": 64,
                 "base_learning_rate": 0.02, "learning_rate": pytest.approx(0.08), "lr_factor": 4.0}
    assert D.scale_hyperparameters(16, 0.02, 1)["learning_rate"] == 0.02  # one device: unchanged
    assert D.scale_hyperparameters(16, 0.02, 4, rule="sqrt")["learning_rate"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="scaling rule 'cubic'"):
        D.scale_hyperparameters(16, 0.02, 2, rule="cubic")
    with pytest.raises(ValueError, match="replicas and batch_size must be >= 1"):
        D.scale_hyperparameters(16, 0.02, 0)


def gpu_plan(cc, n=1):
    return D.plan_devices(GPU2[:n], device_type="GPU", gpu_names=["Tesla T4"] * n, compute_capability=cc)


def test_mixed_precision_only_for_float_training_on_tensor_cores():
    assert D.precision_policy(gpu_plan((7, 5)), env={}) == D.MIXED          # T4
    assert D.precision_policy(gpu_plan((8, 9)), env={}) == D.MIXED          # L4
    assert D.precision_policy(gpu_plan((6, 0)), env={}) == D.FLOAT32        # P100: no tensor cores
    assert D.precision_policy(gpu_plan((7, 5)), qat=True, env={}) == D.FLOAT32
    assert D.precision_policy(gpu_plan((7, 5)), converting=True, env={}) == D.FLOAT32
    assert D.precision_policy(gpu_plan(None), env={}) == D.FLOAT32
    cpu = D.plan_devices(["/device:CPU:0"], device_type="CPU")
    assert D.precision_policy(cpu, env={}) == D.FLOAT32
    assert D.precision_policy(gpu_plan((7, 5)), env={D.MIXED_PRECISION_ENV: "0"}) == D.FLOAT32


def test_device_line_says_what_the_step_used():
    plan = gpu_plan((7, 5), n=2)
    dist = D.Distribution(plan, MirroredStrategy(2), precision=D.MIXED)
    line = D.device_line(dist, scaling=D.scale_hyperparameters(16, 0.02, 2), xla=False)
    assert line == ("device: MirroredStrategy (mirrored), 2 replica(s) on 2x GPU (Tesla T4, cc 7.5); "
                    "batch 16/replica = 32 global, lr 0.02 -> 0.04 (linear); precision "
                    "mixed_float16; XLA off")
    cluster = D.parse_tf_config(tf_config(chief=1, workers=1, task=("worker", 0)))
    mw = D.Distribution(D.plan_devices(["/device:CPU:0"], device_type="CPU", cluster=cluster),
                        MultiWorkerMirroredStrategy(2))
    assert D.device_line(mw).startswith("device: MultiWorkerMirroredStrategy (multi_worker), 2 "
                                        "replica(s) on 1x CPU device, worker worker:0 of 2")
    record = D.describe(mw, xla=True)
    assert record["workers"] == 2 and record["is_chief"] is False and record["xla"] is True


def test_only_the_chief_writes_to_the_real_folders(tmp_path):
    chief = D.Distribution(D.plan_devices(["/device:CPU:0"], device_type="CPU",
                                          cluster=D.parse_tf_config(tf_config(chief=1, workers=1))),
                           MultiWorkerMirroredStrategy(2))
    worker = D.Distribution(D.plan_devices(["/device:CPU:0"], device_type="CPU",
                                           cluster=D.parse_tf_config(
                                               tf_config(chief=1, workers=1, task=("worker", 0)))),
                            MultiWorkerMirroredStrategy(2))
    base = tmp_path / "model" / "checkpoints"
    assert D.worker_dir(tmp_path / "model", chief) == tmp_path / "model"
    assert D.checkpoint_dirs(base, chief) == (base, base)
    read, write = D.checkpoint_dirs(base, worker)
    assert read == base and write != base and not str(write).startswith(str(tmp_path))
    assert "edgeship-worker0-" in str(write)
    assert D.worker_dir(tmp_path / "model", worker) != Path(tmp_path / "model")


def test_resume_only_in_a_multi_worker_job_or_when_asked():
    one = D.Distribution(D.plan_devices(["/device:CPU:0"], device_type="CPU"), FakeStrategy(1))
    assert not D.should_resume(one, env={})  # a reused --out folder must not resume silently
    assert D.should_resume(one, env={D.RESUME_ENV: "1"})
    cluster = D.parse_tf_config(tf_config(chief=1, workers=1))
    mw = D.Distribution(D.plan_devices(["/device:CPU:0"], device_type="CPU", cluster=cluster),
                        MultiWorkerMirroredStrategy(2))
    assert D.should_resume(mw, env={})

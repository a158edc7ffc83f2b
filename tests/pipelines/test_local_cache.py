"""kfp.local's cache and Metrics outputs: a step with a Metrics output must be served from the
cache on a rerun (it was not: KFP never writes a Metrics artifact's file, and kfp.local treats a
cache entry whose local output file is missing as a miss, so train retrained on every rerun)."""
import json
import math
import re
from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._kfp import log_metrics
from pipelines.local import run_local

ROOT = Path(__file__).resolve().parents[2]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def make_data(dataset: Output[Dataset]):
    import os

    os.makedirs(dataset.path, exist_ok=True)
    open(os.path.join(dataset.path, "data.txt"), "w").write("1 2 3")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fit_with_helper(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    import os

    from components._kfp import log_metrics

    os.makedirs(model.path, exist_ok=True)
    open(os.path.join(model.path, "weights"), "w").write("w")
    log_metrics(metrics, {"loss": 0.5, "val_map": None})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fit_bare(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    import os

    os.makedirs(model.path, exist_ok=True)
    open(os.path.join(model.path, "weights"), "w").write("w")
    metrics.log_metric("loss", 0.5)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def score(model: Input[Model], budget: float) -> float:
    return budget


@dsl.pipeline(name="cache-helper")
def helper_pipeline(budget: float):
    data = make_data()
    fit = fit_with_helper(dataset=data.outputs["dataset"])
    score(model=fit.outputs["model"], budget=budget)


@dsl.pipeline(name="cache-bare")
def bare_pipeline(budget: float):
    data = make_data()
    fit = fit_bare(dataset=data.outputs["dataset"])
    score(model=fit.outputs["model"], budget=budget)


def _twice(tmp_path, func, fit_name):
    runs = []
    for budget in (1.0, 2.0):  # the second run changes only the last step's parameter
        runs.append(run_local({"budget": budget}, pipeline_root=tmp_path, pipeline_func=func,
                              enable_caching=True, cache_root=tmp_path / "cache"))
    assert runs[0].statuses[fit_name] == "SUCCESS"
    return runs


def test_a_step_with_metrics_is_served_from_the_cache(tmp_path):
    first, second = _twice(tmp_path, helper_pipeline, "fit-with-helper")
    assert second.statuses["make-data"] == "CACHED"
    assert second.statuses["fit-with-helper"] == "CACHED"
    assert second.statuses["score"] == "SUCCESS"
    saved = json.loads(first.output("fit-with-helper", "metrics").read_text())
    assert saved == {"loss": 0.5}


def test_without_the_file_kfp_local_reruns_the_step(tmp_path):
    """The behaviour the helper works around; if kfp.local changes it, this test says so."""
    _, second = _twice(tmp_path, bare_pipeline, "fit-bare")
    assert second.statuses["make-data"] == "CACHED"
    assert second.statuses["fit-bare"] == "SUCCESS"


class _FakeMetrics:
    def __init__(self, path):
        self.path = str(path)
        self.metadata = {}

    def log_metric(self, name, value):
        self.metadata[name] = value


def test_log_metrics_skips_missing_and_non_finite_values(tmp_path):
    art = _FakeMetrics(tmp_path / "deep" / "metrics")
    logged = log_metrics(art, [("map", 0.25), ("latency", None), ("ap_hexagon", math.nan), ("n", 3)])
    assert logged == {"map": 0.25, "n": 3.0}
    assert art.metadata == {"map": 0.25, "n": 3.0}
    assert json.loads(Path(art.path).read_text()) == {"map": 0.25, "n": 3.0, "not_finite": ["ap_hexagon"]}


def test_every_component_logs_metrics_through_the_helper():
    offenders = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "components").glob("*/component.py"))
                 if re.search(r"\.log_metric\(", p.read_text())]
    assert offenders == [], f"use components._kfp.log_metrics (writes the file the cache needs): {offenders}"

"""Recurring runs: a Vertex AI PipelineJobSchedule or a Kubeflow Pipelines recurring run."""
from __future__ import annotations

import logging
import re
from typing import Any

from pipelines.submit import VertexTarget, build_vertex_job

log = logging.getLogger(__name__)

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_NAMES = {3: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
          4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]}


def _value(text: str, index: int, cron: str) -> int:
    name, low, high = _FIELDS[index]
    names = _NAMES.get(index)
    if names and text.upper() in names:
        return names.index(text.upper()) + (1 if index == 3 else 0)
    if not text.isdigit():
        raise ValueError(f"invalid cron {cron!r}: {name} {text!r} is not a number")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"invalid cron {cron!r}: {name} {number} is outside {low}-{high}")
    return number


def validate_cron(cron: str) -> str:
    """Check a 5-field Unix cron (optionally prefixed "TZ=Area/City " as Vertex AI accepts).

    Returns the cron stripped; raises ValueError naming the bad field.
    """
    text = (cron or "").strip()
    body = text
    if body.startswith(("TZ=", "CRON_TZ=")):
        tz, _, body = body.partition(" ")
        if not re.match(r"^(CRON_)?TZ=[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", tz):
            raise ValueError(f"invalid cron {cron!r}: bad time zone {tz!r}")
    fields = body.split()
    if len(fields) != 5:
        raise ValueError(f"invalid cron {cron!r}: expected 5 fields (minute hour day-of-month "
                         f"month day-of-week), got {len(fields)}")
    for index, field in enumerate(fields):
        for part in field.split(","):
            rng, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"invalid cron {cron!r}: step {step!r} in {_FIELDS[index][0]}")
            if rng == "*":
                continue
            lo, dash, hi = rng.partition("-")
            a = _value(lo, index, cron)
            if dash and a > _value(hi, index, cron):
                raise ValueError(f"invalid cron {cron!r}: range {rng!r} in {_FIELDS[index][0]} is reversed")
    return text


def kfp_cron(cron: str) -> str:
    """KFP recurring runs take a 6-field cron with seconds first: prepend "0"."""
    text = validate_cron(cron)
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise ValueError(f"cron {cron!r}: KFP recurring runs do not take a time zone prefix")
    return "0 " + text


def schedule_vertex(template_path: str, parameter_values: dict[str, Any], target: VertexTarget,
                    *, cron: str, max_concurrent_run_count: int = 1,
                    max_run_count: int | None = None, credentials=None):
    """Create a Vertex AI PipelineJobSchedule that runs the template on ``cron``."""
    from google.cloud import aiplatform

    cron = validate_cron(cron)
    if max_concurrent_run_count < 1:
        raise ValueError(f"max concurrent runs must be >= 1, got {max_concurrent_run_count}")
    job = build_vertex_job(template_path, parameter_values, target, credentials=credentials)
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=f"{target.display_name}-schedule",
        credentials=credentials, project=target.project, location=target.region)
    schedule.create(cron=cron, max_concurrent_run_count=max_concurrent_run_count,
                    max_run_count=max_run_count, service_account=target.service_account)
    log.info("created Vertex AI schedule %s (%s)", schedule.resource_name, cron)
    return schedule


def schedule_kfp(template_path: str, parameter_values: dict[str, Any], *, host: str, cron: str,
                 experiment: str = "edgeship", job_name: str = "edgeship-schedule",
                 enable_caching: bool = True, max_concurrency: int = 1,
                 service_account: str | None = None, existing_token: str | None = None):
    """Create a KFP recurring run (cron with seconds, see kfp_cron) on the cluster at ``host``."""
    import kfp

    cron6 = kfp_cron(cron)
    if not re.match(r"^https?://[^\s/]+", host or ""):
        raise ValueError(f"--host {host!r} must be an http(s):// URL of the KFP API")
    client = kfp.Client(host=host, existing_token=existing_token)
    exp = client.create_experiment(experiment)
    run = client.create_recurring_run(
        experiment_id=exp.experiment_id, job_name=job_name, cron_expression=cron6,
        pipeline_package_path=str(template_path), params=dict(parameter_values),
        enable_caching=enable_caching, max_concurrency=max_concurrency,
        service_account=service_account)
    log.info("created KFP recurring run %s (%s)", run.recurring_run_id, cron6)
    return run

"""Submit a compiled pipeline to Vertex AI Pipelines or to a Kubeflow Pipelines cluster.

Both take a compiled template (pipelines.compile) and typed parameter values
(pipelines.params.coerce_parameters). Nothing here runs at import; the cloud clients are
imported inside the functions.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SA = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")


@dataclass
class VertexTarget:
    """Where and as whom a Vertex AI pipeline job runs."""

    project: str
    region: str
    pipeline_root: str
    service_account: str | None = None
    enable_caching: bool = True
    display_name: str = "edgeship"
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ValueError naming the first field that cannot be right."""
        if not _PROJECT.match(self.project or ""):
            raise ValueError(f"--project {self.project!r} is not a GCP project id")
        if not _REGION.match(self.region or ""):
            raise ValueError(f"--region {self.region!r} is not a GCP region (e.g. us-central1)")
        if not (self.pipeline_root or "").startswith("gs://") or len(self.pipeline_root) <= 5:
            raise ValueError(f"--pipeline-root {self.pipeline_root!r} must be a gs:// URI")
        if self.service_account and not _SA.match(self.service_account):
            raise ValueError(f"--service-account {self.service_account!r} is not a service "
                             "account email (NAME@PROJECT.iam.gserviceaccount.com)")


def build_vertex_job(template_path: str, parameter_values: dict[str, Any], target: VertexTarget,
                     *, job_id: str | None = None, credentials=None):
    """A google.cloud.aiplatform.PipelineJob for the template (not submitted)."""
    from google.cloud import aiplatform

    target.check()
    return aiplatform.PipelineJob(
        display_name=target.display_name,
        template_path=str(template_path),
        job_id=job_id,
        pipeline_root=target.pipeline_root,
        parameter_values=dict(parameter_values),
        enable_caching=target.enable_caching,
        labels=dict(target.labels) or None,
        project=target.project,
        location=target.region,
        credentials=credentials,
    )


def submit_vertex(template_path: str, parameter_values: dict[str, Any], target: VertexTarget,
                  *, job_id: str | None = None, credentials=None):
    """Build and submit a PipelineJob to Vertex AI (returns without waiting for it to finish)."""
    job = build_vertex_job(template_path, parameter_values, target, job_id=job_id,
                           credentials=credentials)
    job.submit(service_account=target.service_account)
    log.info("submitted Vertex AI pipeline job %s", job.resource_name)
    return job


def submit_kfp(template_path: str, parameter_values: dict[str, Any], *, host: str,
               experiment: str = "edgeship", run_name: str | None = None,
               pipeline_root: str | None = None, enable_caching: bool = True,
               service_account: str | None = None, existing_token: str | None = None):
    """Create a run on a Kubeflow Pipelines cluster at ``host`` with kfp.Client."""
    import kfp

    if not re.match(r"^https?://[^\s/]+", host or ""):
        raise ValueError(f"--host {host!r} must be an http(s):// URL of the KFP API")
    client = kfp.Client(host=host, existing_token=existing_token)
    result = client.create_run_from_pipeline_package(
        str(template_path), arguments=dict(parameter_values), run_name=run_name,
        experiment_name=experiment, pipeline_root=pipeline_root, enable_caching=enable_caching,
        service_account=service_account)
    log.info("created KFP run %s on %s", result.run_id, host)
    return result

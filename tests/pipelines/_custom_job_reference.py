"""The reference for tests/pipelines/test_custom_job.py: a small lightweight component wrapped as
a multi-replica CustomJob by Google Cloud Pipeline Components 2.22.0 itself.

Regenerate (GCPC cannot be installed next to google-cloud-aiplatform 2.x, so from its unpacked
wheel, nothing installed):

    pip download --no-deps -d /tmp/gcpc google-cloud-pipeline-components==2.22.0
    unzip -q /tmp/gcpc/*.whl -d /tmp/gcpc/x
    PYTHONPATH=/tmp/gcpc/x python -m tests.pipelines._custom_job_reference \\
        tests/pipelines/data/gcpc_2.22.0_custom_job.json
"""
import json
import sys

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/edgeship/edgeship-gpu:0.1.0-abc1234"
ARGS = dict(replica_count=3, machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_T4",
            accelerator_count=1, restart_job_on_worker_restart=True,
            service_account="{{$.pipeline_service_account}}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fit_step(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
             epochs: int = 3, learning_rate: float = 0.01) -> str:
    """Train something on a dataset (a stand-in for the train step)."""
    print(dataset.path, model.path, metrics.path, epochs, learning_rate)
    return "done"


def pipeline_spec_dict(component) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(component.pipeline_spec)


def main(out: str) -> None:
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    wrapped = create_custom_training_job_from_component(fit_step, **ARGS)
    record = {"gcpc": "2.22.0", "args": ARGS, "name": wrapped.component_spec.name,
              "description": wrapped.description, "pipeline_spec": pipeline_spec_dict(wrapped)}
    with open(out, "w") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])

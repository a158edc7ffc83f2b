"""KFP interface of the publish step (logic in components/publish/core.py)."""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def publish(
    variants: Input[Artifact],
    evaluation: Input[Artifact],
    dataset: Input[Artifact],
    decision: Input[Artifact],
    variant: str,
    model_name: str,
    channel: str,
    bucket: str,
    min_app_version: str,
    manifest: Output[Artifact],
    pipeline_run_id: str = "",
) -> NamedTuple("PublishOutputs", [("version", str), ("uri", str)]):
    """Publish the gate's chosen variant to gs://bucket/models/model_name/VERSION/ (manifest last).

    Args:
        variants: the quantize step's artifact (variants.json, the .tflite files, labels.txt).
        evaluation: the evaluate step's artifact (report.json: metrics, dataset fingerprint).
        dataset: the data step's artifact (dataset.json: fingerprint, if the report lacks it).
        decision: the select step's decision (published as decision.json).
        variant: the chosen variant's name; model_name, channel, bucket: where it goes.
        min_app_version: the lowest client app version that can run it.
        pipeline_run_id: recorded in the manifest (pass dsl.PIPELINE_JOB_ID_PLACEHOLDER); when
            empty, $KFP_RUN_ID / $PIPELINE_RUN_ID if the runner sets one.
    Outputs: manifest (a copy of the published manifest.json), version (the new version id),
    uri (the version folder). Every upload is create-only; the Cloud Function registers the
    version when manifest.json lands.
    """
    import collections
    import os

    from components.publish import core

    run_id = pipeline_run_id or os.environ.get("KFP_RUN_ID") or os.environ.get("PIPELINE_RUN_ID") or ""
    result = core.publish(
        variants.path, variant, bucket=bucket, model=model_name, channel=channel,
        report_dir=evaluation.path, dataset_dir=dataset.path, decision_path=decision.path,
        min_app_version=min_app_version, pipeline_run_id=run_id)
    core.write_local_copy(result, manifest.path)
    manifest.metadata.update({"version": result.version, "uri": result.uri, "channel": channel})
    outputs = collections.namedtuple("PublishOutputs", ["version", "uri"])
    return outputs(result.version, result.uri)

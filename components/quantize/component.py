"""KFP interface of the quantize step (logic in components/quantize/core.py)."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from edgeship.base.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def quantize(
    float_model: Input[Model],
    qat_model: Input[Model],
    dataset: Input[Dataset],
    variants: Output[Artifact],
    sizes: Output[Metrics],
    num_calibration: int = 200,
    schemes: str = "fp32,dynamic_int8,float16,full_int8,full_int8_pt,int16x8,qat_int8",
    coreml: bool = True,
):
    """Convert the float and QAT detectors to every TFLite scheme (post-processing inside) and Core ML.

    Args:
        float_model: the train step's Model artifact. qat_model: the qat step's Model artifact.
        dataset: the data step's Dataset artifact (its calibration split feeds full_int8 / int16x8).
        num_calibration: calibration images (default 200). schemes: comma-separated variants.
        coreml: also write coreml_fp16 / coreml_int8w .mlpackage.zip.
    Outputs: variants (variants.json, <variant>.tflite, <variant>.ops.json/.ops.txt, labels.txt,
    *.mlpackage.zip), sizes (bytes per variant and size ratio vs fp32).
    """
    from components._kfp import log_metrics
    from components.quantize import core

    result = core.quantize(float_model.path, variants.path, qat_model_dir=qat_model.path,
                           calibration=dataset.path, num_calibration=num_calibration,
                           schemes=[s.strip() for s in schemes.split(",") if s.strip()],
                           coreml=coreml, progress=False)
    log_metrics(sizes, core.size_metrics(result))
    variants.metadata.update({"variants": [v["name"] for v in result.variants],
                              "coreml": [c["name"] for c in result.coreml],
                              "skipped": [s["name"] for s in result.skipped]})

"""The per-layer diagnosis the evaluation runs when int8 misses the accuracy budget: when it
triggers (generated rows), and end to end on a stand-in detector with the post-processing op
inside: the debugger's layer report, selective-int8 variants measured like the others, their cost
against full int8 in the report, and publish finding the chosen one under evaluation/selective."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.evaluate import diagnose
from tests.support.quantize_models import write_detector_model

SCHEMES = ("fp32", "float16", "dynamic_int8", "full_int8", "full_int8_pt", "qat_int8", "int16x8")


def _row(scheme, delta, ci):
    return SimpleNamespace(scheme=scheme, delta_map_vs_float=delta, delta_map_ci=ci)


rows_strategy = st.dictionaries(
    st.sampled_from(SCHEMES),
    st.tuples(st.floats(-5, 5), st.one_of(st.none(), st.tuples(st.floats(-5, 0), st.floats(0, 8)))),
    max_size=len(SCHEMES))


@given(rows_strategy, st.one_of(st.none(), st.floats(0, 3)))
def test_diagnosis_triggers_exactly_when_no_int8_variant_is_provably_within(spec, budget):
    rows = {name: _row(name, delta, None if ci is None else (delta + ci[0], delta + ci[1]))
            for name, (delta, ci) in spec.items()}
    missed = diagnose.missed_int8(rows, budget)
    int8 = sorted(n for n in rows if n in diagnose.INT8_SCHEMES)
    bounds = [r.delta_map_ci[1] if r.delta_map_ci else r.delta_map_vs_float for n, r in rows.items() if n in int8]
    if budget is None or not int8 or any(b <= budget for b in bounds):
        assert missed == []
    else:
        assert missed == int8


def test_upper_bound_not_point_estimate_decides():
    rows = {"full_int8": _row("full_int8", 0.4, (-0.2, 1.3)), "fp32": _row("fp32", 0.0, (0.0, 0.0))}
    assert diagnose.missed_int8(rows, 1.0) == ["full_int8"]      # point 0.4 is within, the bound is not
    rows["qat_int8"] = _row("qat_int8", 0.1, (-0.5, 0.9))
    assert diagnose.missed_int8(rows, 1.0) == []                  # one int8 variant is provably within


def test_a_failed_diagnosis_is_reported_and_the_evaluation_goes_on(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("debugger cannot run op FOO")

    monkeypatch.setattr(diagnose, "build_selective", broken)
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "variants.json").write_text(json.dumps({"variants": [{"name": "full_int8", "file": "f"}]}))
    hook = diagnose.hook_for(tmp_path / "variants", "data", tmp_path / "out", tmp_path / "model", "1.0")
    rows = {"full_int8": _row("full_int8", 2.0, (1.5, 2.5))}
    assert hook(rows) == []                                      # no extra variants, no exception
    found = hook.found.to_dict()
    assert found["triggered_by"] == ["full_int8"] and "debugger cannot run op FOO" in found["error"]
    from components.evaluate.report import render_markdown

    md = render_markdown({"variants": {}, "diagnosis": found})
    assert "diagnosis failed (RuntimeError: debugger cannot run op FOO)" in md
    assert diagnose.hook_for(tmp_path, "d", tmp_path, tmp_path, "none") is None   # no budget: no hook
    assert diagnose.hook_for(tmp_path, "d", tmp_path, None, "1.0") is None        # no float model: no hook


data = pytest.importorskip("components.data.core")


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    """quantize (fp32, full_int8) → evaluate with the diagnosis forced on (the trigger is tested above)."""
    from components.evaluate import core as evaluate_core
    from components.quantize.core import quantize

    root = tmp_path_factory.mktemp("diag")
    info = data.generate_dataset(root / "data", seed=3, train=1, val=4, calibration=6, image_size=48)
    model = write_detector_model(root / "model", labels=list(info.class_names))
    quantize(model, root / "variants", calibration=str(root / "data"), num_calibration=4,
             schemes=["fp32", "full_int8"], coreml=False, progress=False, strict_parity=False)
    seen = {}

    def always(rows, budget):
        seen["rows"] = {n: (r.scheme, r.delta_map_vs_float, r.delta_map_ci) for n, r in rows.items()}
        seen["budget"] = budget
        return ["full_int8"]

    mp = pytest.MonkeyPatch()
    mp.setattr(diagnose, "missed_int8", always)
    try:
        report = evaluate_core.evaluate(root / "variants", str(root / "data"), root / "eval", float_model_dir=model,
                                        latency_runs=3, latency_warmup=1, bootstrap_resamples=20, slices=[],
                                        show_progress=False, accuracy_budget="0.5")
    finally:
        mp.undo()
    return root, report, seen


@pytest.mark.slow
def test_selective_variants_are_built_measured_and_costed(diagnosed):
    root, report, seen = diagnosed
    assert seen["budget"] == 0.5 and set(seen["rows"]) == {"fp32", "full_int8"}
    assert seen["rows"]["full_int8"][1] is not None          # the hook saw ΔmAP before deciding
    doc = json.loads((root / "eval" / "report.json").read_text())
    diag = doc["diagnosis"]
    names = [c["name"] for c in diag["candidates"]]
    assert names and all(n.startswith("selective_int8_f") for n in names)
    assert diag["quantized_layers"] >= len(diag["candidates"]) and diag["worst_layers"]
    assert diag["calibration"]["images"] == 4                 # quantize's count and seed, reused
    for cand in diag["candidates"]:
        row = doc["variants"][cand["name"]]                   # measured like every variant
        assert row["scheme"] == "selective_int8" and row["map"] is not None
        assert row["latency_ms"]["threads_1"]["median"] > 0
        assert cand["size_bytes"] == row["size_bytes"]
        assert cand["size_vs_full_int8"] == pytest.approx(row["size_bytes"] / doc["variants"]["full_int8"]["size_bytes"], rel=1e-3)
        assert cand["latency_vs_full_int8"] > 0 and len(cand["float_layers"]) == int(cand["name"].rsplit("f", 1)[1])
    worst = diag["worst_layers"][0]["tensor_name"]
    assert diag["candidates"][0]["float_layers"] == [worst]   # the worst layer is the first kept float
    layers_md = (root / "eval" / "diagnosis" / "layers.md").read_text()
    assert worst in layers_md
    md = (root / "eval" / "report.md").read_text()
    assert "Per-layer diagnosis" in md and f"`{worst}`" in md


@pytest.mark.slow
def test_selective_variant_files_differ_from_full_int8_and_run(diagnosed):
    from edgeship.contracts.variants import load_variants
    from edgeship.detection.verify import inspect_tflite

    root, report, _ = diagnosed
    specs, labels = load_variants(root / "eval" / "selective")
    assert labels == (root / "variants" / "labels.txt").read_text().split()
    full = (root / "variants" / "full_int8.tflite").read_bytes()
    for spec in specs:
        assert spec.path.read_bytes() != full
        assert set(inspect_tflite(spec.path, spec.name)["outputs"]) == {"boxes", "classes", "scores", "count"}


@pytest.mark.slow
def test_publish_finds_a_chosen_selective_variant_in_the_evaluation(diagnosed):
    from components.publish import core as publish_core
    from edgeship.contracts import manifest as mf

    root, report, _ = diagnosed
    (root / "work").mkdir(exist_ok=True)
    name = json.loads((root / "eval" / "report.json").read_text())["diagnosis"]["candidates"][0]["name"]
    manifest, uploads = publish_core.build_manifest(
        root / "variants", name, model="detector", channel="stable", version=mf.new_version(),
        created_at="2026-12-01T00:00:00.000000Z", report_dir=root / "eval", work_dir=root / "work")
    mf.validate(manifest)
    assert manifest["variant"] == name and manifest["files"][0]["quantization"] == "selective_int8"
    assert manifest["metrics"]["map"] == report.variants[name].map
    assert [f["format"] for f in manifest["files"]][:2] == ["tflite", "labels"]   # no Core ML made here

    # the quantize step's Core ML packages go with the selective .tflite too (iOS apps use them)
    variants = root / "variants_coreml"
    shutil.copytree(root / "variants", variants)
    (variants / "coreml_fp16.mlpackage.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    index = json.loads((variants / "variants.json").read_text())
    index["coreml"] = [{"name": "coreml_fp16", "file": "coreml_fp16.mlpackage.zip", "size_bytes": 22}]
    (variants / "variants.json").write_text(json.dumps(index))
    manifest, uploads = publish_core.build_manifest(
        variants, name, model="detector", channel="stable", version=mf.new_version(),
        created_at="2026-12-01T00:00:00.000000Z", report_dir=root / "eval", work_dir=root / "work")
    assert manifest["variant"] == name and manifest["files"][0]["quantization"] == "selective_int8"
    coreml = [f for f in manifest["files"] if f["format"] == "coreml"]
    assert [f["path"] for f in coreml] == ["coreml_fp16.mlpackage.zip"]
    assert [u.local for u in uploads if u.format == "coreml"] == [variants / "coreml_fp16.mlpackage.zip"]
    with pytest.raises(ValueError, match="no_such_variant"):
        publish_core.build_manifest(root / "variants", "no_such_variant", model="detector", channel="stable",
                                    version=mf.new_version(), created_at="2026-12-01T00:00:00.000000Z",
                                    report_dir=root / "eval", work_dir=root / "work")

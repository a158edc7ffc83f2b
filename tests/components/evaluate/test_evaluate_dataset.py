"""`evaluate()` and `edgeship evaluate` on a tiny dataset written by the data step, with stand-in variants."""
import json
import shutil

import pytest

from components.evaluate import core
from edgeship import cli

data = pytest.importorskip("components.data.core")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    info = data.generate_dataset(out, seed=1, train=1, val=5, calibration=1, image_size=48)
    return out, info


@pytest.fixture(scope="module")
def matching_variants(tiny_dataset, tmp_path_factory, standin_variants):
    _, info = tiny_dataset
    root = tmp_path_factory.mktemp("variants5")
    for f in standin_variants.iterdir():
        shutil.copy(f, root / f.name)
    (root / "labels.txt").write_text("\n".join(info.class_names) + "\n")
    return root


def test_evaluate_on_the_data_steps_val_split(tiny_dataset, matching_variants, tmp_path):
    uri, info = tiny_dataset
    report = core.evaluate(matching_variants, str(uri), tmp_path / "eval", latency_runs=3,
                           latency_warmup=1, show_progress=False)
    assert report.images == 5 and report.dataset_fingerprint == info.fingerprint
    doc = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(doc["variants"]) == {"fp32", "full_int8"}
    assert set(doc["latency_host"]) >= {"load_1min_before", "load_1min_after", "cpus", "busy"}
    assert set(doc["variants"]["fp32"]["per_class_ap"]) == set(info.class_names)
    for name in ("report.md", "report.html", "tradeoff.png"):
        assert (tmp_path / "eval" / name).is_file()


def test_latency_timed_on_a_busy_host_is_marked_in_the_report(tiny_dataset, matching_variants, tmp_path,
                                                              monkeypatch):
    """The host's load is read before and after the 1-thread timing (the real os.getloadavg in the
    test above; here a reading the test controls): where other processes' CPU time is unknown
    (no /proc/stat), above one per usable CPU the report says busy."""
    from edgeship.detection import latency

    cpus = latency.usable_cpus()
    readings = iter([(0.2 * cpus, 0.0, 0.0), (1.6 * cpus, 0.0, 0.0)])
    monkeypatch.setattr(latency, "_loadavg", lambda: next(readings))
    monkeypatch.setattr(latency, "_cpu_seconds", lambda: None)
    uri, _ = tiny_dataset
    core.evaluate(matching_variants, str(uri), tmp_path / "eval", latency_runs=3, latency_warmup=1,
                  show_progress=False, slices=[])
    host = json.loads((tmp_path / "eval" / "report.json").read_text())["latency_host"]
    assert host["busy"] is True and host["cpus"] == cpus and host["load_per_cpu"] == pytest.approx(1.6)
    assert host["load_1min_before"] == pytest.approx(0.2 * cpus)
    assert "busy: the latencies are not trusted" in (tmp_path / "eval" / "report.md").read_text()


def test_label_map_that_disagrees_with_the_data_is_an_error(tiny_dataset, standin_variants, tmp_path):
    uri, _ = tiny_dataset  # standin_variants' labels.txt has 3 classes, the data 5
    with pytest.raises(ValueError, match="disagrees with the dataset's classes"):
        core.evaluate(standin_variants, str(uri), tmp_path / "eval", show_progress=False)


def test_missing_split_is_an_error(tiny_dataset, matching_variants, tmp_path):
    uri, _ = tiny_dataset
    with pytest.raises((ValueError, FileNotFoundError), match="test"):
        core.evaluate(matching_variants, str(uri), tmp_path / "eval", split="test", show_progress=False)


def test_cli_evaluate(tiny_dataset, matching_variants, tmp_path, capsys):
    uri, _ = tiny_dataset
    code = cli.main(["evaluate", "--variants", str(matching_variants), "--data", str(uri), "--out",
                     str(tmp_path / "cli"), "--latency-runs", "2", "--only", "full_int8", "--slices", "dark"])
    assert code == 0
    doc = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert list(doc["variants"]) == ["full_int8"]
    assert list(doc["variants"]["full_int8"]["robustness"]) == ["dark"]
    assert "report.html" in capsys.readouterr().out


def test_autoquant_artifact_keeps_the_search_in_the_report(tiny_dataset, matching_variants, tmp_path):
    """An autoquant result folder is evaluated like quantize's; its candidates, budget and curve
    become part of the evaluation report (the pipeline's auto-quantize branch)."""
    uri, _ = tiny_dataset
    aq = tmp_path / "aq"
    shutil.copytree(matching_variants, aq)
    search = {"budget_pt": 0.3, "chosen": "full_int8", "met_budget": True, "partial": False,
              "stop_reason": "full_int8 is the first candidate that fits", "message": "meets the budget",
              "reference_metric": 0.5, "layer_ranking": [{"layer": "x"}],
              "candidates": [
                  {"name": "fp32", "scheme": "fp32", "float_layers": [], "size_bytes": 4096, "latency_ms": 0.5,
                   "metric": 0.5, "delta_pt": 0.0, "fits": True, "misses": [], "error": None, "extra": {}},
                  {"name": "qat_int8", "scheme": "qat_int8", "float_layers": [], "size_bytes": 1024,
                   "latency_ms": 0.2, "metric": 0.49, "delta_pt": 1.0, "fits": False,
                   "misses": ["ΔmAP 1.00 pt > 0.30 pt"], "error": None, "extra": {}},
                  {"name": "full_int8", "scheme": "full_int8", "float_layers": [], "size_bytes": 1100,
                   "latency_ms": 0.25, "metric": 0.499, "delta_pt": 0.1, "fits": True, "misses": [],
                   "error": None, "extra": {}}]}
    (aq / "autoquant.json").write_text(json.dumps(search))
    (aq / "tradeoff.md").write_text("# Auto-quantize trade-off\n")
    (aq / "tradeoff.png").write_bytes(b"\x89PNG stand-in")
    report = core.evaluate(aq, str(uri), tmp_path / "eval", latency_runs=2, latency_warmup=1, show_progress=False)
    doc = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert doc["autoquant"]["chosen"] == "full_int8" and doc["autoquant"]["budget_pt"] == 0.3
    assert [c["name"] for c in doc["autoquant"]["candidates"]] == ["fp32", "qat_int8", "full_int8"]
    assert "layer_ranking" not in doc["autoquant"]  # the per-layer report stays in the autoquant artifact
    md = (tmp_path / "eval" / "report.md").read_text()
    section = md.split("## Auto-quantize search", 1)[1]
    assert "budget ΔmAP ≤ 0.30 pt" in section and "full_int8 ← chosen" in section
    assert "ΔmAP 1.00 pt > 0.30 pt" in section  # why qat_int8 was passed over
    assert "Auto-quantize search" in (tmp_path / "eval" / "report.html").read_text()
    assert (tmp_path / "eval" / "autoquant_tradeoff.png").read_bytes() == b"\x89PNG stand-in"
    assert "autoquant_tradeoff.md" in report.files


def test_quantize_artifact_has_no_search_section(tiny_dataset, matching_variants, tmp_path):
    uri, _ = tiny_dataset
    core.evaluate(matching_variants, str(uri), tmp_path / "eval", latency_runs=2, latency_warmup=1,
                  show_progress=False, variants=["fp32"])
    assert "autoquant" not in json.loads((tmp_path / "eval" / "report.json").read_text())
    assert "Auto-quantize" not in (tmp_path / "eval" / "report.md").read_text()


def test_corrupt_autoquant_json_is_named(tiny_dataset, matching_variants, tmp_path):
    uri, _ = tiny_dataset
    aq = tmp_path / "aq"
    shutil.copytree(matching_variants, aq)
    (aq / "autoquant.json").write_text("{not json")
    with pytest.raises(ValueError, match="autoquant.json is not valid JSON"):
        core.evaluate(aq, str(uri), tmp_path / "eval", latency_runs=2, latency_warmup=1, show_progress=False,
                      variants=["fp32"])


def test_other_processes_cpu_time_marks_the_host_busy(tiny_dataset, matching_variants, tmp_path, monkeypatch):
    """Where /proc/stat says how busy this process's CPUs were, other processes' share decides,
    whatever the load average (the evaluation's own threads lift that)."""
    from edgeship.detection import latency

    cpus = latency.usable_cpus()
    monkeypatch.setattr(latency, "_loadavg", lambda: (0.1, 0.0, 0.0))
    counters = iter([(0.0, 0.0), (1e6, 1.0)])  # others took every CPU-second there was
    monkeypatch.setattr(latency, "_cpu_seconds", lambda: next(counters))
    uri, _ = tiny_dataset
    core.evaluate(matching_variants, str(uri), tmp_path / "eval", latency_runs=3, latency_warmup=1,
                  show_progress=False, slices=[])
    host = json.loads((tmp_path / "eval" / "report.json").read_text())["latency_host"]
    assert host["busy"] is True and host["others_cpus"] > cpus and host["load_per_cpu"] < 1
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "busy: the latencies are not trusted" in md and "other processes kept" in md

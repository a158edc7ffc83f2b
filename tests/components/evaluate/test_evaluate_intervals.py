"""The evaluation's intervals in the report: table cells, the trade-off plot (log latency axis,
error bars, labels that do not overlap), AP@.5 per class, and each variant's calibration images."""
import json
import shutil

from components.evaluate import outputs
from components.evaluate.report import calibration_text, render_markdown
from components.evaluate.tradeoff_plot import tradeoff_figure


def _row(m, lat, size, ci=0.01, lat_ci=0.005, calib=None):
    return {"map": m, "map50": m + 0.13, "size_bytes": size, "delta_map_vs_float": round((0.415 - m) * 100, 2),
            "map_ci": [m - ci, m + ci], "map50_ci": [m + 0.12, m + 0.14],
            "delta_map_ci": [round((0.415 - m) * 100 - 0.4, 2), round((0.415 - m) * 100 + 0.4, 2)],
            "per_class_ap": {"circle": m, "square": m - 0.02}, "per_class_ap50": {"circle": m + 0.1, "square": m + 0.12},
            "latency_ms": {"threads_1": {"median": lat, "p90": lat * 1.05, "ci": [lat - lat_ci, lat + lat_ci]},
                           "threads_N": {"median": lat / 2, "p90": lat / 2, "ci": None}, "N": 2},
            "calibration_set": calib}


CALIB = {"images": 200, "requested": 200, "splits": {"calibration": 150, "train": 50}, "seed": 0}
# the embedded data's figures: four variants within 0.02 ms of each other, one at 25 ms
CROWDED = {
    "dataset_fingerprint": "sha256:x", "split": "val", "images": 300, "objects": 885,
    "classes": ["circle", "square"], "float_reference": "float_keras",
    "float_keras": {"map": 0.415, "map50": 0.548, "per_class_ap": {"circle": 0.42}, "per_class_ap50": {"circle": 0.55}},
    "intervals": {"method": "percentile bootstrap over images; ΔmAP paired", "resamples": 200, "confidence": 0.95,
                  "seed": 0, "images": 300, "latency": "every variant timed in turns"},
    "variants": {
        "fp32": _row(0.415, 0.510, 2_081_396), "float16": _row(0.415, 0.512, 1_085_496),
        "dynamic_int8": _row(0.414, 1.553, 727_280), "full_int8": _row(0.409, 0.390, 839_392, calib=CALIB),
        "full_int8_pt": _row(0.404, 0.393, 598_048, calib=CALIB), "qat_int8": _row(0.4135, 0.380, 847_568, calib=CALIB),
        "int16x8": _row(0.414, 24.49, 964_160, calib=CALIB),
    },
}


def test_plot_has_a_log_latency_axis_error_bars_and_labels_that_do_not_overlap():
    """Labels overlap neither each other nor the frame's edge."""
    import matplotlib.pyplot as plt

    fig = tradeoff_figure(CROWDED)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        assert len(ax.containers) == len(CROWDED["variants"])  # one errorbar container per variant
        renderer = fig.canvas.get_renderer()
        labels = [t for t in ax.texts if t.get_text() in CROWDED["variants"]]
        assert sorted(t.get_text() for t in labels) == sorted(CROWDED["variants"])
        boxes = [t.get_window_extent(renderer) for t in labels]
        frame = ax.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
        for i, a in enumerate(boxes):
            for j, b in enumerate(boxes[:i]):
                assert not a.overlaps(b), f"{labels[i].get_text()} overlaps {labels[j].get_text()}"
    finally:
        plt.close(fig)


def test_markdown_shows_intervals_per_class_ap50_and_calibration_images():
    md = render_markdown(CROWDED)
    line = next(l for l in md.splitlines() if l.startswith("| full_int8_pt |"))
    assert "0.4040 [0.3940, 0.4140]" in line  # mAP [CI]
    assert "+1.10 [+0.70, +1.50]" in line      # ΔmAP [CI]
    assert "0.393 [0.388, 0.398] / 0.413" in line  # latency median [CI] / p90
    assert "200 (calibration 150 + train 50)" in line
    assert next(l for l in md.splitlines() if l.startswith("| fp32 |")).endswith("| — |")  # no calibration
    assert "## AP@.5 per class" in md and "95% intervals" in md and "timed in turns" in md
    per_class50 = md.split("## AP@.5 per class")[1]
    assert "| full_int8 | 0.5090 | 0.5290 |" in per_class50


def test_calibration_text_says_when_fewer_images_than_asked():
    assert calibration_text({"images": 30, "requested": 200, "splits": {"calibration": 10, "train": 20}}) \
        == "30 (calibration 10 + train 20; fewer than the 200 asked)"
    assert calibration_text({"images": 8, "from": "split 'calibration' in d"}) == "8 (split 'calibration' in d)"
    assert calibration_text(None) == "—"


def test_calibration_records_come_from_variants_json(standin_variants, tmp_path):
    copy = tmp_path / "variants"
    shutil.copytree(standin_variants, copy)
    doc = json.loads((copy / "variants.json").read_text())
    doc["variants"][1]["calibration"] = CALIB
    (copy / "variants.json").write_text(json.dumps(doc))
    assert outputs.calibration_records(copy) == {doc["variants"][1]["name"]: CALIB}


def test_key_metrics_carry_interval_bounds():
    metrics = outputs.key_metrics(CROWDED)
    assert metrics["full_int8_pt_delta_map_pt_lo"] == 0.7 and metrics["full_int8_pt_delta_map_pt_hi"] == 1.5
    assert metrics["qat_int8_latency_1t_ms_lo"] == 0.375 and "fp32_map50_hi" in metrics
    assert "float_keras_map_lo" not in metrics  # the Keras row here carries no interval

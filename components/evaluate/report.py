"""Human-readable outputs of the evaluation: a Markdown table, an HTML page with the trade-off plot
embedded, and the plot itself (mAP vs 1-thread latency on a log axis, marker size = file size,
error bars = the intervals, labels placed so they do not overlap: `tradeoff_plot.py`).

Works on the report dictionary (docs/contracts.md "Evaluation artifact"), so it can render any
report.json, not only one made in this process.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Mapping

from components.evaluate.tradeoff_plot import plot_tradeoff
from edgeship.contracts import evaluation
from edgeship.contracts.evaluation import LATENCY_1T, LATENCY_NT, host_busy_text

COLUMNS = ("variant", "size (KB)", "size ÷ fp32", "mAP@[.5:.95] [CI]", "mAP@.5 [CI]", "ΔmAP vs float (pt) [CI]",
           "1-thread median [CI] / p90 (ms)", "N-thread median [CI] / p90 (ms)", "latency ÷ fp32", "ECE",
           "score shift", "int8 calibration images")


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def _ms(value: float) -> str:
    return f"{value:.2f}" if value >= 1.0 else f"{value:.3f}"


def _with_ci(value: Any, pair: tuple[float, float] | None, fmt: str) -> str:
    text = _num(value, fmt)
    return text if pair is None or text == "—" else f"{text} [{format(pair[0], fmt)}, {format(pair[1], fmt)}]"


def _latency_cell(row: Mapping[str, Any], key: str) -> str:
    lat = _latency(row, key)
    if not lat:
        return "—"
    pair = evaluation.latency_interval(dict(row), key)
    ci = f" [{_ms(pair[0])}, {_ms(pair[1])}]" if pair else ""
    return f"{_ms(lat['median'])}{ci} / {_ms(lat['p90'])}"


def calibration_text(record: Mapping[str, Any] | None) -> str:
    """quantize's record of a variant's calibration images, in words: "200 (calibration 150 +
    train 50)"; "—" for a variant calibrated on nothing (float schemes)."""
    if not isinstance(record, Mapping) or not record.get("images"):
        return "—"
    splits = record.get("splits")
    if isinstance(splits, Mapping) and splits:
        parts = " + ".join(f"{name} {n}" for name, n in splits.items())
        short = record.get("requested") and int(record["requested"]) > int(record["images"])
        return f"{record['images']} ({parts}{'; fewer than the ' + str(record['requested']) + ' asked' if short else ''})"
    return f"{record['images']} ({record.get('from') or 'source not recorded'})"


def _latency(row: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    lat = row.get("latency_ms") or {}
    value = lat.get(key)
    return value if isinstance(value, Mapping) else None


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per measured model (the float Keras model first, then variants by 1-thread latency)."""
    variants = report.get("variants") or {}
    rows: list[list[str]] = []
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(report.get("float_keras"), Mapping):
        entries.append(("float (Keras)", report["float_keras"]))

    def lat_key(item):
        t1 = _latency(item[1], LATENCY_1T)
        return t1["median"] if t1 else math.inf

    entries.extend(sorted(variants.items(), key=lat_key))
    for name, row in entries:
        size = row.get("size_bytes")
        calib = row.get("calibration") or {}
        rows.append([
            name,
            _num(size / 1024.0, ".1f") if size else "—",
            _num(row.get("size_ratio_vs_fp32"), ".3f"),
            _with_ci(row.get("map"), evaluation.interval(dict(row), evaluation.MAP_CI), ".4f"),
            _with_ci(row.get("map50"), evaluation.interval(dict(row), evaluation.MAP50_CI), ".4f"),
            _with_ci(row.get("delta_map_vs_float"), evaluation.interval(dict(row), evaluation.DELTA_MAP_CI), "+.2f")
            + _views_cell(row),
            _latency_cell(row, LATENCY_1T),
            _latency_cell(row, LATENCY_NT),
            _num(row.get("latency_ratio_vs_fp32"), ".3f"),
            _num(calib.get("ece"), ".3f"),
            _num(calib.get("score_shift"), "+.3f"),
            calibration_text(row.get(evaluation.CALIBRATION_SET)),
        ])
    return rows


def robustness_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of mAP@[.5:.95] per robustness slice."""
    entries = []
    if isinstance(report.get("float_keras"), Mapping):
        entries.append(("float (Keras)", report["float_keras"]))
    entries.extend(sorted((report.get("variants") or {}).items()))
    slices: list[str] = []
    for _, row in entries:
        for name in (row.get("robustness") or {}):
            if name not in slices:
                slices.append(name)
    header = ["variant", "val", *slices]
    rows = []
    for name, row in entries:
        rob = row.get("robustness") or {}
        rows.append([name, _num(row.get("map")), *(_num((rob.get(s) or {}).get("map")) for s in slices)])
    return header, rows


def per_class_rows(report: Mapping[str, Any], key: str = "per_class_ap") -> tuple[list[str], list[list[str]]]:
    """Header and rows of AP per class (one column per class): ``key`` = "per_class_ap"
    (AP@[.5:.95]) or "per_class_ap50" (AP@.5)."""
    entries = []
    if isinstance(report.get("float_keras"), Mapping):
        entries.append(("float (Keras)", report["float_keras"]))
    entries.extend(sorted((report.get("variants") or {}).items()))
    classes: list[str] = list(report.get("classes") or [])
    for _, row in entries:
        for name in (row.get(key) or {}):
            if name not in classes:
                classes.append(name)
    rows = [[name, *(_num((row.get(key) or {}).get(c)) for c in classes)] for name, row in entries]
    return ["variant", *classes], rows


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _summary_lines(report: Mapping[str, Any]) -> list[str]:
    n = None
    for row in (report.get("variants") or {}).values():
        n = ((row.get("latency_ms") or {}).get("N")) or n
    lines = [f"- dataset fingerprint: `{report.get('dataset_fingerprint')}`, split `{report.get('split')}`, "
             f"{report.get('images', '?')} images, {report.get('objects', '?')} objects",
             f"- float reference for ΔmAP: `{report.get('float_reference', '?')}`; ΔmAP = (float − variant) "
             "× 100, in mAP points (positive = accuracy lost)",
             f"- latency: LiteRT + XNNPACK on this machine, 1 thread and N = {n} threads, "
             f"{report.get('latency_runs', '?')} timed runs after warm-up; every .tflite is the converted "
             "model itself",
             "- ECE: expected calibration error of detections (score vs IoU ≥ 0.5 hit); score shift: mean "
             "(variant − float) score of matched detections",
             "- int8 calibration images: how many images the variant's int8 ranges were calibrated on and "
             "from which split(s) (the calibration split, topped up from train when it is smaller)"]
    iv = report.get(evaluation.INTERVALS)
    if isinstance(iv, Mapping):
        lines.append(f"- [CI]: {float(iv.get('confidence') or 0):.0%} intervals: {iv.get('method')}, "
                     f"{iv.get('resamples')} resamples of the {iv.get('images')} images (seed {iv.get('seed')}); "
                     f"latency: {iv.get('latency') or 'not stated'}")
    else:
        lines.append("- no intervals in this report (bootstrap off)")
    host = report.get(evaluation.LATENCY_HOST)
    if isinstance(host, Mapping):
        lines.append(f"- host while the 1-thread latencies were timed: load average "
                     f"{host.get('load_1min_before')} before, {host.get('load_1min_after')} after, on "
                     f"{host.get('cpus')} CPUs ({host.get('load_per_cpu')} per CPU)"
                     + (f"; other processes' CPUs in use meanwhile {host.get('others_cpus')}"
                        if host.get("others_cpus") is not None else "")
                     + (f" ({host_busy_text(host)}); **busy: the latencies are not trusted to rank variants** "
                        "(the gate ranks by scheme instead)" if host.get("busy") else ""))
    for entry in report.get("set_aside") or []:
        lines.append(f"- **set aside by quantize, not evaluated**: {entry.get('name')} "
                     f"({entry.get('error')})")
    views = iv.get("views") if isinstance(iv, Mapping) else None
    if isinstance(views, Mapping):
        lines.append(f"- ΔmAP \"views\" (what the gate judges): over the {views.get('photos')} val photos each scored "
                     f"in {views.get('per_image')} views ({', '.join(views.get('kinds') or [])}; "
                     f"{views.get('scored_images')} images), resampled by photo with all its views; the "
                     "first ΔmAP is on the photos alone (components/evaluate/views.py)")
    champion = champion_line(report)
    return lines + ([champion] if champion else [])


def champion_line(report: Mapping[str, Any]) -> str | None:
    """The channel's champion in one line: re-scored on these images (its figures and every
    variant's paired ΔmAP against it), or why it was not."""
    record = report.get(evaluation.CHAMPION)
    if not isinstance(record, Mapping):
        return None
    who = f"the model `{record.get('model')}/{record.get('channel')}` serves now"
    if not record.get("rescored"):
        return f"- champion ({who}): not re-scored here: {record.get('reason')}"
    size = record.get("size_bytes")
    deltas = ", ".join(
        f"{name} {_with_ci(row.get(evaluation.DELTA_MAP_VS_CHAMPION), evaluation.interval(dict(row), evaluation.DELTA_MAP_VS_CHAMPION_CI), '+.2f')}"
        for name, row in sorted((report.get("variants") or {}).items())
        if row.get(evaluation.DELTA_MAP_VS_CHAMPION) is not None)
    return (f"- champion ({who}): {record.get('version')} ({record.get('variant')}, "
            f"{_num(size / 1024.0 if size else None, '.1f')} KB, {record.get('resize')} "
            f"{record.get('input_shape')}) re-scored on these images: mAP "
            f"{_with_ci(record.get('map'), evaluation.interval(dict(record), evaluation.MAP_CI), '.4f')}, mAP@.5 "
            f"{_num(record.get('map50'))}, 1-thread {_latency_cell(record, LATENCY_1T)} ms; ΔmAP vs the "
            f"champion (champion − variant, points, paired: the same resampled images; over the "
            f"{record.get('delta_scored_on') or 'photos'}, {record.get('delta_images')} images): {deltas or '—'}"
            + _champion_data_note(record, report))


def _champion_data_note(record: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    theirs, ours = record.get("dataset_fingerprint"), report.get("dataset_fingerprint")
    if not theirs or not ours or theirs == ours:
        return ""
    return ("; note: the champion was trained on another dataset (fingerprint "
            f"{str(theirs)[:19]}… vs {str(ours)[:19]}…): where its training images are among these, "
            "its score reads high, so the comparison errs toward keeping it")


def _views_cell(row: Mapping[str, Any]) -> str:
    """The gate's ΔmAP over the photos and their views, when the report has it."""
    delta, ci, with_views = evaluation.gate_delta(dict(row))
    return f"; views {_with_ci(delta, ci, '+.2f')}" if with_views and delta is not None else ""


AUTOQUANT_COLUMNS = ("#", "candidate", "layers kept float", "size (KB)", "latency 1 thr (ms)", "mAP",
                     "ΔmAP vs fp32 (pt)", "fits the budget")


def autoquant_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per candidate the auto-quantize search tried, in the order it tried them."""
    search = report.get("autoquant") or {}
    rows = []
    for i, c in enumerate(search.get("candidates") or []):
        name = str(c.get("name")) + (" ← chosen" if c.get("name") == search.get("chosen") else "")
        fits = "yes" if c.get("fits") else ("; ".join(c.get("misses") or []) or str(c.get("error") or "no"))
        rows.append([str(i), name, str(len(c.get("float_layers") or [])),
                     _num((c.get("size_bytes") or 0) / 1024, ".1f") if c.get("size_bytes") else "—",
                     _num(c.get("latency_ms"), ".3f"), _num(c.get("metric")), _num(c.get("delta_pt"), "+.2f"),
                     fits])
    return rows


def _autoquant_summary(report: Mapping[str, Any]) -> str:
    s = report.get("autoquant") or {}
    budget = s.get("budget_pt")
    return (f"Candidates from the auto-quantize search: budget ΔmAP ≤ {_num(budget, '.2f')} pt vs fp32; "
            f"chosen {s.get('chosen') or 'none'}; met the budget: {'yes' if s.get('met_budget') else 'NO'}"
            f"{' (partial search: ' + str(s.get('stop_reason')) + ')' if s.get('partial') else ''}. "
            f"{s.get('message') or ''}".strip())


DIAGNOSIS_COLUMNS = ("candidate", "layers kept float", "size (KB)", "size ÷ full_int8", "latency 1 thr (ms)",
                     "latency ÷ full_int8", "ΔmAP (pt) [CI]")


def diagnosis_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per selective-int8 candidate of the per-layer diagnosis: what it kept float, its
    cost against full int8, and its ΔmAP."""
    rows = []
    for c in (report.get("diagnosis") or {}).get("candidates") or []:
        ci = c.get("delta_map_ci")
        rows.append([str(c.get("name")), ", ".join(f"`{n}`" for n in c.get("float_layers") or []),
                     _num((c.get("size_bytes") or 0) / 1024, ".1f") if c.get("size_bytes") else "—",
                     _num(c.get("size_vs_full_int8"), ".3f"), _num(c.get("latency_ms_1thread"), ".3f"),
                     _num(c.get("latency_vs_full_int8"), ".3f"),
                     _with_ci(c.get("delta_map_pts"), tuple(ci) if ci else None, "+.2f")])
    return rows


def diagnosis_summary(report: Mapping[str, Any]) -> str:
    d = report.get("diagnosis") or {}
    if d.get("error") and not d.get("candidates"):
        return (f"No int8 variant ({', '.join(d.get('triggered_by') or [])}) was provably within the "
                f"{_num(d.get('budget_pt'), '.2f')} pt budget; the per-layer diagnosis failed ({d.get('error')}), "
                "so the gate saw the variants without selective-int8 candidates.")
    worst = ", ".join(f"`{w.get('tensor_name')}` ({_num(w.get('score'), '.3g')})" for w in (d.get("worst_layers") or [])[:5])
    return (f"No int8 variant ({', '.join(d.get('triggered_by') or [])}) was provably within the "
            f"{_num(d.get('budget_pt'), '.2f')} pt budget, so the quantization debugger ranked the "
            f"{d.get('quantized_layers')} quantized layers by int8 error ({d.get('rank_by')}; whole list in "
            f"{d.get('layer_report')}) and selective int8 kept the worst in float. Worst: {worst}. "
            f"Took {_num(d.get('seconds'), '.1f')} s" + (f"; error: {d.get('error')}" if d.get("error") else "."))


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown report: the variant table, mAP per robustness slice and per class, and the
    auto-quantize search's candidates when the variants came from it."""
    header, rob = robustness_rows(report)
    parts = [
        "# edgeship evaluation", "", *_summary_lines(report), "",
        _md_table(COLUMNS, table_rows(report)), "",
        "## Robustness (mAP@[.5:.95] per slice of val)", "", _md_table(header, rob), "",
        "## AP@[.5:.95] per class", "", _md_table(*per_class_rows(report)), "",
        "## AP@.5 per class", "", _md_table(*per_class_rows(report, "per_class_ap50")), "",
    ]
    if report.get("autoquant"):
        parts += ["## Auto-quantize search (the trade-off curve: autoquant_tradeoff.png)", "",
                  _autoquant_summary(report), "", _md_table(AUTOQUANT_COLUMNS, autoquant_rows(report)), ""]
    if report.get("diagnosis"):
        parts += ["## Per-layer diagnosis: int8 missed the budget", "", diagnosis_summary(report), "",
                  _md_table(DIAGNOSIS_COLUMNS, diagnosis_rows(report)), ""]
    return "\n".join(parts)


def render_html(report: Mapping[str, Any], png_path: str | Path | None) -> str:
    """A self-contained HTML page: summary, table, robustness table and the plot as a base64 PNG."""
    def table(header, rows) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    img = ""
    if png_path is not None and Path(png_path).is_file():
        data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
        img = f'<img alt="mAP vs latency" src="data:image/png;base64,{data}"/>'
    header, rob = robustness_rows(report)
    summary = "".join(f"<li>{html.escape(line[2:])}</li>" for line in _summary_lines(report))
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "th{background:#eee}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgeship evaluation</title>"
            f"<style>{style}</style></head><body><h1>edgeship evaluation</h1><ul>{summary}</ul>"
            f"{table(COLUMNS, table_rows(report))}{img}<h2>Robustness (mAP@[.5:.95] per slice of val)</h2>"
            f"{table(header, rob)}<h2>AP@[.5:.95] per class</h2>{table(*per_class_rows(report))}"
            f"<h2>AP@.5 per class</h2>{table(*per_class_rows(report, 'per_class_ap50'))}"
            f"{_autoquant_html(report, table)}</body></html>")


def _autoquant_html(report: Mapping[str, Any], table: Any) -> str:
    diag = ""
    if report.get("diagnosis"):
        diag = (f"<h2>Per-layer diagnosis: int8 missed the budget</h2><p>{html.escape(diagnosis_summary(report))}"
                f"</p>{table(DIAGNOSIS_COLUMNS, diagnosis_rows(report))}")
    if not report.get("autoquant"):
        return diag
    return diag + (f"<h2>Auto-quantize search</h2><p>{html.escape(_autoquant_summary(report))}</p>"
            f"{table(AUTOQUANT_COLUMNS, autoquant_rows(report))}")


def write_reports(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, tradeoff.png and report.html into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_tradeoff(report, out / "tradeoff.png")
    md = out / "report.md"
    md.write_text(render_markdown(report), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(report, png), encoding="utf-8")
    return {"report.md": md, "tradeoff.png": png, "report.html": page}

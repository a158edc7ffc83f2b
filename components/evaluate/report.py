"""Human-readable outputs of the evaluation: a Markdown table, an HTML page with the trade-off plot
embedded, and the plot itself (mAP vs 1-thread latency, marker size = file size).

Works on the report dictionary (docs/contracts.md "Evaluation artifact"), so it can render any
report.json, not only one made in this process.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Mapping

from edgeship.contracts.evaluation import LATENCY_1T, LATENCY_NT

COLUMNS = ("variant", "size (KB)", "size ÷ fp32", "mAP@[.5:.95]", "mAP@.5", "ΔmAP vs float (pt)",
           "1-thread median / p90 (ms)", "N-thread median / p90 (ms)", "latency ÷ fp32", "ECE",
           "score shift")


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def _ms(value: float) -> str:
    return f"{value:.2f}" if value >= 1.0 else f"{value:.3f}"


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
        t1, tn = _latency(row, LATENCY_1T), _latency(row, LATENCY_NT)
        size = row.get("size_bytes")
        calib = row.get("calibration") or {}
        rows.append([
            name,
            _num(size / 1024.0, ".1f") if size else "—",
            _num(row.get("size_ratio_vs_fp32"), ".3f"),
            _num(row.get("map")),
            _num(row.get("map50")),
            _num(row.get("delta_map_vs_float"), "+.2f"),
            f"{_ms(t1['median'])} / {_ms(t1['p90'])}" if t1 else "—",
            f"{_ms(tn['median'])} / {_ms(tn['p90'])}" if tn else "—",
            _num(row.get("latency_ratio_vs_fp32"), ".3f"),
            _num(calib.get("ece"), ".3f"),
            _num(calib.get("score_shift"), "+.3f"),
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


def per_class_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of AP@[.5:.95] per class (one column per class)."""
    entries = []
    if isinstance(report.get("float_keras"), Mapping):
        entries.append(("float (Keras)", report["float_keras"]))
    entries.extend(sorted((report.get("variants") or {}).items()))
    classes: list[str] = list(report.get("classes") or [])
    for _, row in entries:
        for name in (row.get("per_class_ap") or {}):
            if name not in classes:
                classes.append(name)
    rows = [[name, *(_num((row.get("per_class_ap") or {}).get(c)) for c in classes)] for name, row in entries]
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
             "(variant − float) score of matched detections"]
    return lines


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


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown report: the variant table, mAP per robustness slice and per class, and the
    auto-quantize search's candidates when the variants came from it."""
    header, rob = robustness_rows(report)
    parts = [
        "# edgeship evaluation", "", *_summary_lines(report), "",
        _md_table(COLUMNS, table_rows(report)), "",
        "## Robustness (mAP@[.5:.95] per slice of val)", "", _md_table(header, rob), "",
        "## AP@[.5:.95] per class", "", _md_table(*per_class_rows(report)), "",
    ]
    if report.get("autoquant"):
        parts += ["## Auto-quantize search (the trade-off curve: autoquant_tradeoff.png)", "",
                  _autoquant_summary(report), "", _md_table(AUTOQUANT_COLUMNS, autoquant_rows(report)), ""]
    return "\n".join(parts)


def plot_tradeoff(report: Mapping[str, Any], path: str | Path) -> Path:
    """Save mAP@[.5:.95] vs 1-thread median latency (marker area ∝ file size), labelled points."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    variants = report.get("variants") or {}
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    sizes = [row.get("size_bytes") or 0 for row in variants.values()]
    biggest = max(sizes) if sizes and max(sizes) > 0 else 1
    for name, row in variants.items():
        t1 = _latency(row, LATENCY_1T)
        if not t1 or row.get("map") is None:
            continue
        area = 60 + 1200 * (row.get("size_bytes") or 0) / biggest
        ax.scatter([t1["median"]], [row["map"]], s=area, alpha=0.55, edgecolors="black")
        ax.annotate(name, (t1["median"], row["map"]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    keras_row = report.get("float_keras")
    if isinstance(keras_row, Mapping) and keras_row.get("map") is not None:
        ax.axhline(keras_row["map"], linestyle="--", color="grey", linewidth=1)
        ax.annotate("float (Keras)", (ax.get_xlim()[0], keras_row["map"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="grey")
    ax.set_xlabel("latency, 1 thread, median (ms)")
    ax.set_ylabel("mAP@[.5:.95] (val)")
    ax.set_title("accuracy vs latency (marker size = file size)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


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
            f"{_autoquant_html(report, table)}</body></html>")


def _autoquant_html(report: Mapping[str, Any], table: Any) -> str:
    if not report.get("autoquant"):
        return ""
    return (f"<h2>Auto-quantize search</h2><p>{html.escape(_autoquant_summary(report))}</p>"
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

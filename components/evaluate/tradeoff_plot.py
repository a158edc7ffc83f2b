"""The evaluation's trade-off plot: mAP@[.5:.95] vs 1-thread median latency.

Latency on a log axis (the variants span 0.4 ms to 25 ms), marker area ∝ file size, error bars =
the report's intervals (mAP: bootstrap over images; latency: interval of the median), and the
labels placed greedily so that none overlaps another label or a marker: for each point (left to
right) the first of a ring of offsets whose text box is free is taken, else the least crowded one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from edgeship.contracts import evaluation
from edgeship.contracts.evaluation import LATENCY_1T

# label directions (degrees) around a marker, tried in order at growing distances (points from
# the marker's edge); beyond the first ring a leader line joins label and marker
_ANGLES = (45, -45, 135, -135, 0, 180, 90, -90, 20, -20, 160, -160)
_RINGS = (4.0, 14.0, 26.0, 40.0, 58.0)


def _points(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    variants = report.get("variants") or {}
    sizes = [row.get("size_bytes") or 0 for row in variants.values()]
    biggest = max(sizes) if sizes and max(sizes) > 0 else 1
    out = []
    for name, row in variants.items():
        lat = (row.get("latency_ms") or {}).get(LATENCY_1T)
        if not isinstance(lat, Mapping) or row.get("map") is None or not lat.get("median"):
            continue
        out.append({"name": name, "x": float(lat["median"]), "y": float(row["map"]),
                    "area": 60 + 1200 * (row.get("size_bytes") or 0) / biggest,
                    "xci": evaluation.latency_interval(row, LATENCY_1T),
                    "yci": evaluation.interval(row, evaluation.MAP_CI)})
    return sorted(out, key=lambda p: (p["x"], p["y"]))


def _overlap(box: Any, others: list[Any]) -> float:
    """Total area of ``box`` covered by ``others`` (display units)."""
    total = 0.0
    for other in others:
        w = min(box.x1, other.x1) - max(box.x0, other.x0)
        h = min(box.y1, other.y1) - max(box.y0, other.y0)
        if w > 0 and h > 0:
            total += w * h
    return total


def _candidates(radius_pt: float):
    """(offset in points, ha, va, leader?) around a marker of ``radius_pt``, nearest first."""
    for ring, gap in enumerate(_RINGS):
        for angle in _ANGLES:
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            r = radius_pt + gap
            ha = "left" if c > 0.1 else ("right" if c < -0.1 else "center")
            va = "bottom" if s > 0.1 else ("top" if s < -0.1 else "center")
            yield (r * c, r * s), ha, va, ring > 0


def place_labels(ax: Any, points: list[dict[str, Any]], fontsize: float = 9,
                 obstacles: tuple[Any, ...] = ()) -> list[Any]:
    """Annotate each point with its name where the text box overlaps no placed label, marker or
    other text artist in ``obstacles`` (the least crowded spot when there is none)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    taken: list[Any] = [artist.get_window_extent(renderer) for artist in obstacles]
    radius = {}
    for p in points:  # the markers themselves are obstacles
        cx, cy = ax.transData.transform((p["x"], p["y"]))
        radius[p["name"]] = math.sqrt(p["area"]) / 2.0  # scatter s = diameter² in points²
        r = radius[p["name"]] * fig.dpi / 72.0
        taken.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    frame = ax.get_window_extent(renderer)
    labels = []
    for p in points:
        best = None
        for offset, ha, va, leader in _candidates(radius[p["name"]]):
            ann = ax.annotate(p["name"], (p["x"], p["y"]), textcoords="offset points", xytext=offset,
                              fontsize=fontsize, ha=ha, va=va,
                              arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if leader else None)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            crowd = _overlap(box, taken) + box.width * box.height - _overlap(box, [frame])  # + outside
            if best is None or crowd < best[0]:
                if best is not None:
                    best[1].remove()
                best = (crowd, ann, box)
            else:
                ann.remove()
            if crowd == 0.0:
                break
        taken.append(best[2])
        labels.append(best[1])
    return labels


def tradeoff_figure(report: Mapping[str, Any]) -> Any:
    """The matplotlib Figure of the trade-off plot (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    points = _points(report)
    for p in points:
        xerr = [[p["x"] - p["xci"][0]], [p["xci"][1] - p["x"]]] if p["xci"] else None
        yerr = [[p["y"] - p["yci"][0]], [p["yci"][1] - p["y"]]] if p["yci"] else None
        ax.errorbar([p["x"]], [p["y"]], xerr=xerr, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=3, alpha=0.7, zorder=1)
        ax.scatter([p["x"]], [p["y"]], s=p["area"], alpha=0.55, edgecolors="black", zorder=2)
    keras_row = report.get("float_keras")
    if isinstance(keras_row, Mapping) and keras_row.get("map") is not None:
        ax.axhline(keras_row["map"], linestyle="--", color="grey", linewidth=1)
    if points:
        lo = min(min(p["x"], *(p["xci"] or ())) for p in points)
        hi = max(max(p["x"], *(p["xci"] or ())) for p in points)
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.35, hi * 1.35)
    obstacles = []
    if isinstance(keras_row, Mapping) and keras_row.get("map") is not None:
        obstacles.append(ax.annotate("float (Keras)", (ax.get_xlim()[0], keras_row["map"]),
                                     textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey"))
    ax.set_xlabel("latency, 1 thread, median (ms, log scale)")
    ax.set_ylabel("mAP@[.5:.95] (val)")
    ax.set_title("accuracy vs latency (marker size = file size; bars = intervals)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    place_labels(ax, points, obstacles=tuple(obstacles))
    return fig


def plot_tradeoff(report: Mapping[str, Any], path: str | Path) -> Path:
    """Save the trade-off plot as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = tradeoff_figure(report)
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path

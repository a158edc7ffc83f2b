"""Layer-wise quantization error with ``tf.lite.experimental.QuantizationDebugger``.

The debugger calibrates the model once, builds a debug model with a ``NumericVerify`` op after
every quantized layer (the float op run on the same dequantized input) and collects, per layer
output tensor, the difference statistics over a debug dataset. :class:`LayerDebugger` wraps it:
``layer_stats()`` ranks the layers, ``quantize(denylist)`` returns a *non-debug* int8 model with
the named tensors kept in float (``QuantizationDebugOptions(denylisted_nodes=...)``), reusing
the one calibration.

Ranking key (``score``): the mean over output channels of the per-channel noise-to-signal ratio
``rmse_c / std_c`` of (dequantized int8 - float). RMSE/scale alone (error in units of the int8
step) is ~0.3 for every layer that merely rounds; it cannot see a layer whose *range* is set by an
outlier channel so that the other channels' small signal falls below one step. The per-channel
ratio does (001_d2310fe20236e090.txt: small errors accumulate across layers). RMSE/scale, MSE and
the debugger's own statistics are kept in the report too.

The detector's ``TFLite_Detection_PostProcess`` custom op is fine inside the debug model (TF's
interpreter registers it; checked on TF 2.21), so the ranking runs on the full model and the
denylisted names are the full model's own tensor names.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


log = logging.getLogger(__name__)


@dataclass
class LayerStat:
    """One quantized layer (its output tensor) and its quantization error, from the debugger."""

    name: str                 # the float tensor name: what ``denylisted_nodes`` takes
    op: str = ""
    score: float = 0.0        # ranking key (``rank_by``; default the per-channel noise-to-signal ratio)
    rmse: float = 0.0
    scale: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)

_EPS = 1e-12


def _rmse_scale(float_values: np.ndarray, quant_values: np.ndarray, scale: float, zero_point: int) -> float:
    f = np.asarray(float_values, np.float64)
    q = (np.asarray(quant_values, np.int64) - int(zero_point)) * float(scale)
    return float(np.sqrt(np.mean((q - f) ** 2)) / max(float(scale), _EPS))


RANK_KEYS = ("channel_nsr", "rmse/scale", "mean_squared_error")


class LayerDebugger:
    """One calibration of a model for full int8, its per-layer errors and selective variants.

    Args:
        make_converter: returns a *fresh* ``tf.lite.TFLiteConverter`` for the float model (the
            debugger mutates it), with ``allow_custom_ops`` as the model needs.
        representative_dataset: callable yielding input lists (calibration and debug data).
        rank_by: one of RANK_KEYS (default channel_nsr, see the module docstring).
    """

    def __init__(self, make_converter: Callable[[], Any], representative_dataset: Callable[[], Iterable[Any]],
                 *, rank_by: str = "channel_nsr") -> None:
        if rank_by not in RANK_KEYS:
            raise ValueError(f"rank_by must be one of {RANK_KEYS}, got {rank_by!r}")
        self.make_converter = make_converter
        self.representative_dataset = representative_dataset
        self.rank_by = rank_by
        self._debugger: Any = None
        self._stats: list[LayerStat] | None = None

    def _converter(self) -> Any:
        from edgeship.base.tfcompat import tf

        conv = self.make_converter()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = self.representative_dataset
        return conv

    def _ensure(self) -> Any:
        from edgeship.base.tfcompat import tf

        if self._debugger is None:
            opts = tf.lite.experimental.QuantizationDebugOptions(
                layer_direct_compare_metrics={"rmse/scale": _rmse_scale})
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=self._converter(), debug_dataset=self.representative_dataset, debug_options=opts)
        return self._debugger

    def layer_stats(self) -> list[LayerStat]:
        """Run the debugger once; every quantized layer, worst first (ties by name)."""
        if self._stats is not None:
            return self._stats
        dbg = self._ensure()
        dbg.run()
        buf = io.StringIO()
        dbg.layer_statistics_dump(buf)
        buf.seek(0)
        try:
            nsr = self._channel_nsr(dbg)
        except Exception as exc:  # noqa: BLE001 - private debugger API: degrade to the public stats
            log.warning("per-channel noise-to-signal pass failed (%s); ranking falls back", exc)
            nsr = {}
        by_name: dict[str, LayerStat] = {}
        for row in csv.DictReader(buf):
            stats = {k: _to_float(v) for k, v in row.items() if k not in ("op_name", "tensor_name")}
            stats["channel_nsr"] = nsr.get(int(_to_float(row.get("tensor_idx"))), float("nan"))
            row["channel_nsr"] = stats["channel_nsr"]
            name = row["tensor_name"]
            stat = LayerStat(name=name, op=row.get("op_name", ""), score=_to_float(row.get(self.rank_by)),
                             rmse=math.sqrt(max(_to_float(row.get("mean_squared_error")), 0.0)),
                             scale=_to_float(row.get("scale")), stats=stats)
            if name not in by_name or _key(stat) < _key(by_name[name]):
                by_name[name] = stat
        self._stats = sorted(by_name.values(), key=_key)
        log.info("quantization debugger: %d quantized layers; worst: %s", len(self._stats),
                 ", ".join(f"{s.name} ({s.score:.3g})" for s in self._stats[:3]))
        return self._stats

    def _channel_nsr(self, dbg: Any) -> dict[int, float]:
        """Per quantized tensor index: mean over channels of rmse_c / std_c over the debug data.

        Runs the debug model once more over the debug dataset, reading each NumericVerify op's
        two inputs (the int8 tensor and the float op's result on the same dequantized input).
        Uses the debugger's interpreter and helpers (TF 2.21); statistics are accumulated per
        channel (last axis) across every sample and position, so batch-1 inputs work.
        """
        interp = dbg._quant_interpreter  # noqa: SLF001
        acc: dict[int, list[np.ndarray]] = {}
        quant: dict[int, tuple[float, int]] = {}
        ops = [op for op in interp._get_ops_details() if op["op_name"] == "NumericVerify"]  # noqa: SLF001
        first = True
        for sample in dbg._data_gen():  # noqa: SLF001
            dbg._set_input_tensors(interp, sample, first)  # noqa: SLF001
            first = False
            interp.invoke()
            for op in ops:
                q_idx, f_idx = int(op["inputs"][0]), int(op["inputs"][1])
                if q_idx not in quant:
                    p = interp._get_tensor_details(q_idx, subgraph_index=0)["quantization_parameters"]  # noqa: SLF001
                    quant[q_idx] = (float(p["scales"][0]), int(p["zero_points"][0]))
                scale, zp = quant[q_idx]
                f = np.asarray(interp.get_tensor(f_idx), np.float64)
                q = (np.asarray(interp.get_tensor(q_idx), np.int64) - zp) * scale
                c = f.shape[-1] if f.ndim else 1
                f2, d2 = f.reshape(-1, c), (q.reshape(f.shape) - f).reshape(-1, c)
                a = acc.setdefault(q_idx, [np.zeros(c), np.zeros(c), np.zeros(c), np.zeros(1)])
                a[0] += f2.sum(0)
                a[1] += (f2 ** 2).sum(0)
                a[2] += (d2 ** 2).sum(0)
                a[3] += f2.shape[0]
        out = {}
        for idx, (s1, s2, sd, n) in acc.items():
            var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
            live = var > _EPS
            out[idx] = float(np.mean(np.sqrt(sd[live] / n) / np.sqrt(var[live]))) if live.any() else 0.0
        return out

    def quantize(self, denylisted_nodes: Sequence[str] = ()) -> bytes:
        """The non-debug int8 model with ``denylisted_nodes`` (tensor names) kept in float.

        Input and outputs stay float32 (the model quantizes inside). Raises ValueError naming
        any denylisted name that is not a quantized layer of this model.
        """
        from edgeship.base.tfcompat import tf

        dbg = self._ensure()
        if denylisted_nodes:
            known = {s.name for s in self.layer_stats()}
            unknown = [n for n in denylisted_nodes if n not in known]
            if unknown:
                raise ValueError(f"denylisted nodes {unknown} are not quantized layers of this model "
                                 f"(known: {sorted(known)[:5]}...)")
        dbg.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylisted_nodes))
        return dbg.get_nondebug_quantized_model()


def _key(stat: LayerStat) -> tuple[float, str]:
    score = stat.score if math.isfinite(stat.score) else -math.inf
    return (-score, stat.name)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def write_layer_report(stats: Sequence[LayerStat], out_dir: str | Path, *, top: int = 10,
                       rank_by: str = "channel_nsr") -> dict[str, Path]:
    """Write layers.csv, layers.json and layers.md (top offenders named) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric_keys = sorted({k for s in stats for k in s.stats})
    rows = [{"rank": i + 1, "tensor_name": s.name, "op": s.op, "score": s.score, "rmse": s.rmse,
             "scale": s.scale, **{k: s.stats.get(k) for k in metric_keys}} for i, s in enumerate(stats)]
    paths = {"layers.csv": out / "layers.csv", "layers.json": out / "layers.json", "layers.md": out / "layers.md"}
    with paths["layers.csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["rank", "tensor_name", "op", "score", "rmse", "scale", *metric_keys])
        writer.writeheader()
        writer.writerows(rows)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    paths["layers.json"].write_text(json.dumps({"rank_by": rank_by, "layers": clean}, indent=2, default=_json_num))
    lines = [f"# Per-layer quantization error ({len(stats)} quantized layers)", "",
             f"Ranked by `{rank_by}` (see edgeship/detection/layer_debug.py). Layers at the top lose the",
             "most precision in int8; selective int8 keeps them in float.", "",
             "| # | layer (output tensor) | op | score | RMSE/scale | RMSE | scale |", "|---|---|---|---|---|---|---|"]
    for r in rows[:top]:
        lines.append(f"| {r['rank']} | `{r['tensor_name']}` | {r['op']} | {_f(r['score'])} | "
                     f"{_f(r.get('rmse/scale'))} | {_f(r['rmse'])} | {_f(r['scale'])} |")
    if len(rows) > top:
        lines.append(f"\n{len(rows) - top} more in layers.csv.")
    paths["layers.md"].write_text("\n".join(lines) + "\n")
    return paths


def _f(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


def _json_num(value: Any) -> Any:
    return float(value) if isinstance(value, (np.floating, np.integer)) else str(value)

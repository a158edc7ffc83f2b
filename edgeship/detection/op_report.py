"""Op reports for .tflite files, modelled on the Edge TPU compiler's operator log.

For every op of the (undelegated) graph: its type, the dtypes of its activation inputs, constant
inputs (weights, biases) and outputs, and a status:

- ``integer``: computes on int8/int16 activations (what a full-integer accelerator can run),
- ``float``: computes on float activations; ``hybrid``: float activations with int8 weights
  (dynamic-range kernels: they still compute in float),
- ``boundary``: QUANTIZE / DEQUANTIZE between the two worlds (at the model input, or feeding the
  post-processing op),
- ``weights``: a DEQUANTIZE of constant weights (float16 storage unpacked to float32),
- ``postprocess``: the fused ``TFLite_Detection_PostProcess`` custom op (float by design: it
  decodes boxes and runs NMS on dequantized scores).

A full-integer model must have no ``float`` op outside post-processing; the report lists each
float op by name (``float_ops_outside_postprocess``) and says ``int8_compute`` true/false.
The same module finds the post-processing op's output tensors, which is how the output map
(boxes/classes/scores/count → tensor index and name) is built: from the graph, not by position.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.detection.postprocess import OUTPUT_KEYS, POSTPROCESS_OP

FLOAT_DTYPES = {"float32", "float16", "float64"}
INT_ACTIVATION_DTYPES = {"int8", "uint8", "int16"}
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _interpreter(path_or_bytes: str | Path | bytes, *, delegates: bool = False) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {}
    if not delegates:  # the graph as written, not XNNPACK's fused DELEGATE node
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return Interpreter(model_content=bytes(path_or_bytes), **kwargs)
    return Interpreter(model_path=str(path_or_bytes), **kwargs)


def _dtype(d: Any) -> str:
    return np.dtype(d).name


def output_map(interpreter: Any) -> dict[str, dict[str, Any]]:
    """boxes/classes/scores/count → ``{"index": tensor index, "name", "position"}``.

    Found from the post-processing op's output tensors (its outputs are, in order, boxes, classes,
    scores, count: tensorflow/lite/kernels/detection_postprocess.cc), then matched to the model's
    output list. Raises ValueError when the graph has no such op or the op's outputs are not all
    model outputs.
    """
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] == POSTPROCESS_OP]
    if len(ops) != 1:
        raise ValueError(f"expected one {POSTPROCESS_OP} op in the graph, found {len(ops)}")
    op_outputs = [int(t) for t in ops[0]["outputs"]]
    if len(op_outputs) != 4:
        raise ValueError(f"{POSTPROCESS_OP} has {len(op_outputs)} outputs, expected 4")
    details = interpreter.get_output_details()
    by_index = {int(d["index"]): (pos, d) for pos, d in enumerate(details)}
    mapping = {}
    for key, tensor in zip(OUTPUT_KEYS, op_outputs):
        if tensor not in by_index:
            raise ValueError(f"{POSTPROCESS_OP} output {key!r} (tensor {tensor}) is not a model output; "
                             f"outputs are {[(d['index'], d['name']) for d in details]}")
        pos, d = by_index[tensor]
        mapping[key] = {"index": tensor, "name": d["name"], "position": pos}
    return mapping


def build_op_report(path_or_bytes: str | Path | bytes, *, name: str = "") -> dict[str, Any]:
    """The op report of one .tflite (a JSON-ready dict). Raises ValueError if LiteRT cannot read it."""
    interp, ops, tensors, inputs = _read_graph(path_or_bytes, name)
    rows = _op_rows(ops, tensors, activations={int(t) for op in ops for t in op["outputs"]} | set(inputs))
    _mark_dequantize_boundaries(rows, _consumers(ops))
    float_outside = [f"{r['op']} {r['name']}" for r in rows if r["status"] in ("float", "hybrid")]
    compute = [r for r in rows if r["status"] in ("integer", "float", "hybrid")]
    int8_compute = bool(compute) and not float_outside and all(
        set(r["outputs"]) <= {"int8", "uint8", "int32", "bool"} for r in compute)
    integer_compute = bool(compute) and not float_outside
    by_type = _by_type(rows)

    in_d = interp.get_input_details()[0] if inputs else {}
    for r in rows:
        r.pop("_outs")
    report = {
        "name": name,
        "ops_total": len(rows),
        "op_counts": {k: v["count"] for k, v in by_type.items()},
        "by_type": by_type,
        "status_counts": dict(Counter(r["status"] for r in rows)),
        "compute_dtypes": dict(_compute_dtypes(compute)),
        "int8_compute": int8_compute,
        "integer_compute": integer_compute,
        "float_ops_outside_postprocess": float_outside,
        "has_postprocess": any(r["status"] == "postprocess" for r in rows),
        "input": {"name": str(in_d.get("name", "")), "dtype": _dtype(in_d["dtype"]) if in_d else None,
                  "quantization": [float(in_d["quantization"][0]), int(in_d["quantization"][1])] if in_d else None},
        "ops": rows,
    }
    return report


def _read_graph(path_or_bytes: str | Path | bytes,
                name: str) -> tuple[Any, list[dict], dict[int, dict], list[int]]:
    """The interpreter, its ops, tensors by index and input tensor indices; ValueError if unreadable."""
    try:
        interp = _interpreter(path_or_bytes)
        ops = interp._get_ops_details()
        tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
        inputs = [int(d["index"]) for d in interp.get_input_details()]
    except Exception as exc:
        raise ValueError(f"op report {name or path_or_bytes!r}: LiteRT cannot read the model: {exc}") from exc
    return interp, ops, tensors, inputs


def _consumers(ops: list[dict]) -> dict[int, list[str]]:
    """Tensor index → the types of the ops that read it."""
    consumers: dict[int, list[str]] = defaultdict(list)
    for op in ops:
        for t in op["inputs"]:
            consumers[int(t)].append(op["op_name"])
    return consumers


def _op_rows(ops: list[dict], tensors: dict[int, dict], activations: set[int]) -> list[dict[str, Any]]:
    """One row per op: type, output tensor name, activation/constant/output dtypes and its status."""
    def tname(i: int) -> str:
        return str(tensors[i]["name"]) if i in tensors else f"tensor_{i}"

    def tdtype(i: int) -> str:
        return _dtype(tensors[i]["dtype"]) if i in tensors else "?"

    rows = []
    for op in ops:
        kind = op["op_name"]
        ins = [int(t) for t in op["inputs"] if int(t) >= 0]
        outs = [int(t) for t in op["outputs"]]
        act_in = [tdtype(t) for t in ins if t in activations]
        const_in = [tdtype(t) for t in ins if t not in activations]
        out_dt = [tdtype(t) for t in outs]
        rows.append({"index": int(op["index"]), "op": kind, "name": tname(outs[0]) if outs else "",
                     "inputs": act_in, "constants": const_in, "outputs": out_dt,
                     "status": _op_status(kind, act_in, const_in, out_dt), "_outs": outs})
    return rows


def _op_status(kind: str, act_in: list[str], const_in: list[str], out_dt: list[str]) -> str:
    """postprocess, boundary, hybrid, float or integer (see the module docstring)."""
    if kind == POSTPROCESS_OP:
        return "postprocess"
    if kind in BOUNDARY_OPS:
        return "boundary"
    if set(out_dt) & FLOAT_DTYPES or set(act_in) & FLOAT_DTYPES:
        # float activations; with int8 weights it is a hybrid (dynamic-range) kernel
        return "hybrid" if set(const_in) & {"int8"} else "float"
    return "integer"


def _mark_dequantize_boundaries(rows: list[dict[str, Any]], consumers: dict[int, list[str]]) -> None:
    """Re-mark DEQUANTIZE rows: of constants → ``weights``; feeding a float op → ``float``."""
    # a DEQUANTIZE only feeding the post-processing op, or a QUANTIZE of the model input, is a
    # boundary; any other DEQUANTIZE to float hands float activations to a float op (already flagged)
    for row in rows:
        if row["op"] == "DEQUANTIZE" and row["status"] == "boundary":
            if not row["inputs"]:  # float16 weights unpacked to float32 once: storage, not compute
                row["status"] = "weights"
                continue
            users = {u for t in row["_outs"] for u in consumers.get(t, [])}
            if users and users != {POSTPROCESS_OP} and set(row["outputs"]) & FLOAT_DTYPES:
                row["status"] = "float"  # dequantizes activations for a float op elsewhere


def _compute_dtypes(compute: list[dict[str, Any]]) -> Counter:
    """How many computing ops produce each activation dtype (index/bool outputs aside)."""
    compute_dtypes = Counter()
    for r in compute:
        act = [d for d in r["outputs"] if d not in ("int32", "int64", "bool")] or r["outputs"]
        compute_dtypes[act[0] if act else "?"] += 1
    return compute_dtypes


def _by_type(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per op type, most frequent first: count, statuses and dtype signatures."""
    counts: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = counts.setdefault(r["op"], {"count": 0, "status": Counter(), "dtypes": Counter()})
        c["count"] += 1
        c["status"][r["status"]] += 1
        sig = f"{','.join(r['inputs']) or '-'}"
        if r["constants"]:
            sig += f" (+{','.join(r['constants'])})"
        c["dtypes"][f"{sig} -> {','.join(r['outputs'])}"] += 1
    return {k: {"count": v["count"], "status": dict(v["status"]), "dtypes": dict(v["dtypes"])}
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1]["count"], kv[0]))}


def format_table(report: dict[str, Any]) -> str:
    """A human-readable operator log (like the Edge TPU compiler's) of one op report."""
    lines = [f"Op report: {report.get('name', '')}",
             f"Ops: {report['ops_total']}   int8 compute: {'yes' if report['int8_compute'] else 'no'}   "
             f"integer compute: {'yes' if report['integer_compute'] else 'no'}   "
             f"post-processing op: {'yes' if report['has_postprocess'] else 'no'}",
             f"Input: {report['input']['name']} {report['input']['dtype']} "
             f"(scale, zero point) = {tuple(report['input']['quantization'] or ())}", ""]
    w = max([len("Operator")] + [len(k) for k in report["by_type"]]) + 2
    lines.append(f"{'Operator':<{w}}{'Count':>6}  {'Status':<24}Dtypes (activations (+constants) -> outputs)")
    for op, info in report["by_type"].items():
        status = ", ".join(f"{s} x{n}" if len(info['status']) > 1 else s for s, n in info["status"].items())
        dtypes = "; ".join(f"{sig}" + (f" x{n}" if len(info['dtypes']) > 1 else "")
                           for sig, n in info["dtypes"].items())
        lines.append(f"{op:<{w}}{info['count']:>6}  {status:<24}{dtypes}")
    lines.append("")
    if report["float_ops_outside_postprocess"]:
        lines.append(f"Ops that stay float outside post-processing ({len(report['float_ops_outside_postprocess'])}):")
        lines += [f"  {n}" for n in report["float_ops_outside_postprocess"]]
    else:
        lines.append("No float ops outside post-processing.")
    return "\n".join(lines) + "\n"


def write_op_report(tflite_path: str | Path, out_dir: str | Path, name: str) -> dict[str, Any]:
    """Write ``<name>.ops.json`` and ``<name>.ops.txt`` into ``out_dir``; returns the report."""
    report = build_op_report(tflite_path, name=name)
    out_dir = Path(out_dir)
    (out_dir / f"{name}.ops.json").write_text(json.dumps(report, indent=1))
    (out_dir / f"{name}.ops.txt").write_text(format_table(report))
    return report

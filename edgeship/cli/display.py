"""What the main job shows: the live step table with each step's progress line, and the summary
table of the variants and the gate's decision."""
from __future__ import annotations

import re
import time
from typing import Any

from edgeship.contracts import evaluation


class _Progress:
    """Shows the steps as they run and where the time goes: on a terminal, a live table with one
    row per step and the running step's own progress (epoch, loss, ETA; variant i/n); otherwise
    one line per event (start, finish, an epoch or a variant done). The steps' log output goes to
    the pipeline log only, unless ``verbose`` (then every line is shown too)."""

    def __init__(self, console, steps: tuple[str, ...], *, verbose: bool = False):
        self.console = console
        self.verbose = verbose
        self.rows: dict[str, dict[str, Any]] = {s: self._row() for s in steps}
        self.live = None
        self.started = time.monotonic()
        self._printed: dict[str, tuple] = {}  # plain output: the last progress shown per step

    @staticmethod
    def _row() -> dict[str, Any]:
        return {"status": "waiting", "t0": None, "dt": None, "text": "", "fields": {}}

    @staticmethod
    def _summary(fields: dict[str, Any]) -> str:
        """A finished step's line: the figures of its last epoch, or how many items it did."""
        from edgeship.base.progress import describe

        if fields.get("epochs"):
            return describe({k: fields[k] for k in ("epoch", "epochs", "loss", "val_loss", "map", "map50",
                                                     "img_s") if k in fields})
        if fields.get("count"):
            return f"{fields.get('index', fields['count'])}/{fields['count']} done"
        return ""

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"edgeship pipeline (kfp.local) — {time.monotonic() - self.started:.0f} s",
                      expand=False, title_justify="left")
        table.add_column("step")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("progress", overflow="ellipsis", no_wrap=True)
        style = {"SUCCESS": "green", "CACHED": "cyan", "running": "yellow", "FAILURE": "red",
                 "SKIPPED": "dim"}
        for name, row in self.rows.items():
            dt = row["dt"] if row["dt"] is not None else (
                time.monotonic() - row["t0"] if row["t0"] else None)
            table.add_row(name, Text(row["status"], style=style.get(row["status"], "white")),
                          f"{dt:.0f} s" if dt is not None else "",
                          Text(row["text"], style="" if row["status"] == "running" else "dim"))
        return table

    def __enter__(self):
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=2,
                             get_renderable=self._table, redirect_stdout=False,
                             redirect_stderr=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        for row in self.rows.values():
            if row["status"] == "waiting":
                row["status"] = "SKIPPED"  # kfp.local does not log tasks a false dsl.If skips
            elif row["status"] == "running" and exc[0] is not None:
                row["status"] = "FAILURE"
        if self.live is not None:
            self.live.__exit__(*exc)

    def _say(self, text: str) -> None:
        self.console.print(f"[{time.strftime('%H:%M:%S')}] {text}", highlight=False, markup=False)

    def __call__(self, event) -> None:
        from edgeship.base.progress import describe

        # a step wired in both candidate branches runs as "evaluate" or "evaluate-2": one row
        step = re.sub(r"-\d+$", "", event.task) if event.task else event.task
        row = self.rows.setdefault(step, self._row()) \
            if step and event.kind in ("start", "finish", "skip", "progress") else None
        if event.kind == "start" and row is not None:
            row.update(status="running", t0=time.monotonic(), text="", fields={})
            if self.live is None:
                self._say(f"▶ {event.task}")
        elif event.kind == "finish" and row is not None:
            if event.status == "CACHED":
                row["t0"] = row["t0"] or time.monotonic()
                row["text"] = "reused from an earlier run (cache)"
            elif event.status == "SUCCESS":
                row["text"] = self._summary(row["fields"]) or row["text"]
            row.update(status=event.status, dt=time.monotonic() - (row["t0"] or time.monotonic()))
            if self.live is None:
                summary = f"  {row['text']}" if event.status == "SUCCESS" and row["text"] else ""
                self._say(f"{_GLYPH.get(event.status, '✘')} {event.task} {event.status} ({row['dt']:.0f} s){summary}")
        elif event.kind == "progress" and row is not None and event.data:
            row["text"] = describe(event.data)
            row["fields"].update(event.data)
            if self.live is None and row["text"]:
                # a plain log cannot redraw a line: milestones and new items/phases only
                key = (event.data.get("item"), event.data.get("phase"))
                if event.data.get("mark") or (event.data.get("epoch") is None
                                              and key != self._printed.get(step)):
                    self._printed[step] = key
                    self._say(f"  {event.task}: {row['text']}")
        elif event.kind == "log" and self.verbose:
            self.console.print(f"    {event.task}: {event.line}", highlight=False, markup=False)


def summary_table(report: dict[str, Any], decision: dict[str, Any]):
    """A rich Table: one row per variant with mAP, ΔmAP, size, latency and the gate's verdict."""
    from rich.table import Table

    cands = {c["name"]: c for c in decision.get("candidates", [])}
    variants = report.get("variants", {})
    fp32_size = (variants.get("fp32") or {}).get("size_bytes")
    if fp32_size is None:  # auto-quantize: fp32 was the search's reference, not a variant
        fp32_size = next((c.get("size_bytes") for c in (report.get("autoquant") or {}).get("candidates", [])
                          if c.get("name") == "fp32"), None)
    views = (report.get(evaluation.INTERVALS) or {}).get("views") or {}
    caption = (f"ΔmAP: the gate's, over the {views.get('photos')} val photos each in {views.get('per_image')} views "
               "(mirror, centre crop), resampled by photo; mAP columns: the photos alone") if views else None
    table = Table(title="variants (val split, converted models run in LiteRT)", caption=caption)
    for col, just in (("variant", "left"), ("mAP@[.5:.95]", "right"), ("ΔmAP views (pt)" if views else "ΔmAP (pt)", "right"),
                      ("mAP@.5", "right"), ("size (KB)", "right"), ("× fp32", "right"),
                      ("latency 1T (ms)", "right"), ("decision", "left")):
        table.add_column(col, justify=just)
    float_row = report.get("float_keras")
    if isinstance(float_row, dict) and float_row.get("map") is not None:
        table.add_row("float (Keras)", f"{float_row['map']:.4f}", "0.00",
                      f"{float_row.get('map50', float('nan')):.4f}", "", "", "", "reference")
    def lat(row):
        value = evaluation.latency_median(row)
        return float("inf") if value is None else value
    for name, row in sorted(variants.items(), key=lambda kv: lat(kv[1])):
        cand = cands.get(name, {})
        if name == decision.get("chosen"):
            verdict = "[bold green]CHOSEN" + (" (published)" if decision.get("publish") else " (not published)")
        elif cand.get("eligible"):
            verdict = "within budget"
        else:
            verdict = "[red]" + "; ".join(cand.get("why", [])) if cand else ""
        size = row.get("size_bytes")
        latency = lat(row)
        table.add_row(name, f"{row.get('map', float('nan')):.4f}",
                      f"{cand.get('delta_map_pts', float('nan')):.2f}",
                      f"{row.get('map50', float('nan')):.4f}",
                      f"{size / 1024:.0f}" if size else "—",
                      f"{size / fp32_size:.2f}" if size and fp32_size else "—",
                      f"{latency:.2f}" if latency != float("inf") else "—", verdict)
    for entry in report.get("set_aside") or []:  # quantize's parity misses: never evaluated
        why = str(entry.get("error") or entry.get("stage") or "")
        table.add_row(str(entry.get("name")), "—", "—", "—", "—", "—", "—",
                      "[yellow]set aside by quantize: " + why.split(": ", 1)[-1])
    return table


_GLYPH = {"SUCCESS": "✔", "CACHED": "↺"}  # anything else (FAILURE) is ✘

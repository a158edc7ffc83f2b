"""What the main job shows while the pipeline runs: the steps' EDGESHIP_PROGRESS lines
(edgeship.base.progress), their capture by pipelines.local and the live display in
edgeship.cli.main_job; the steps' log output goes to the log file only (and the terminal with -v)."""
import io
import json
import math

import pytest
from rich.console import Console

from edgeship.base import progress as P
from edgeship.cli.display import _Progress
from pipelines.local import StepEvent, _CaptureStream

# ---------------------------------------------------------------- the line format

def test_a_progress_line_round_trips_and_drops_missing_and_non_finite_values():
    line = P.format_line(epoch=3, epochs=40, loss=0.8412, val_loss=None, img_s=float("nan"))
    assert line.startswith(P.PREFIX) and "\n" not in line
    assert P.parse(line) == {"epoch": 3, "epochs": 40, "loss": 0.8412}


def test_numpy_figures_are_written_as_numbers():
    np = pytest.importorskip("numpy")
    fields = P.parse(P.format_line(loss=np.float32(0.5), map=np.float64(0.25), n=np.int64(3)))
    assert fields == {"loss": 0.5, "map": 0.25, "n": 3.0}


@pytest.mark.parametrize("line", ["", "plain text", "EDGESHIP_PROGRESS", "EDGESHIP_PROGRESS {not json",
                                  "EDGESHIP_PROGRESS [1, 2]"])
def test_anything_else_is_not_a_progress_line(line):
    assert P.parse(line) is None


def test_a_progress_line_glued_to_native_log_text_is_still_read():
    assert P.parse('W0000 00:00:00.1 1 x.cc:1] oops' + P.format_line(item="fp32")) == {"item": "fp32"}


def test_a_step_prints_only_when_its_runner_asked(monkeypatch):
    out = io.StringIO()
    monkeypatch.delenv(P.ENV, raising=False)
    P.emit(out, phase="loading data")
    assert out.getvalue() == ""
    monkeypatch.setenv(P.ENV, "1")
    P.emit(out, phase="loading data")
    assert P.parse(out.getvalue()) == {"phase": "loading data"} and out.getvalue().endswith("\n")


def test_the_reporter_limits_the_rate_except_for_milestones(monkeypatch, capsys):
    monkeypatch.setenv(P.ENV, "1")
    now = [100.0]
    report = P.Reporter(interval=1.0, clock=lambda: now[0])
    sent = [report(batch=1), report(batch=2)]
    now[0] += 0.5
    sent.append(report(batch=3, force=True, mark=True))
    now[0] += 1.0
    sent.append(report(batch=4))
    assert sent == [True, False, True, True]
    lines = [P.parse(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [f["batch"] for f in lines] == [1, 3, 4] and lines[1]["mark"] is True


def test_describe_reads_like_the_issue_asks():
    train = P.describe({"epoch": 12, "epochs": 40, "batch": 50, "batches": 93, "loss": 0.84,
                        "val_loss": 0.9123, "img_s": 151.2, "eta_s": 190})
    assert train == "epoch 12/40  step 50/93  loss 0.840  val 0.912  151 img/s  ETA 3m10s"
    assert P.describe({"item": "full_int8", "index": 4, "count": 7, "phase": "converting"}) == \
        "full_int8 (4/7)  converting"
    assert P.describe({"item": "qat_int8", "index": 3, "count": 8, "map": 0.3012}) == "qat_int8 (3/8)  mAP 0.301"
    assert P.describe({"phase": "exporting", "map": None, "loss": "x"}) == "exporting"
    assert P.describe({}) == ""


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (190, "3m10s"), (3725, "1h02m"),
                                           (-5, "0s"), (math.pi, "3s")])
def test_durations(seconds, text):
    assert P.duration(seconds) == text


# ---------------------------------------------------------------- capture (pipelines.local)

def capture(lines):
    events, log_file = [], io.StringIO()
    stream = _CaptureStream(log_file, events.append)
    for line in lines:
        stream.write(line + "\n")
    return stream, events, log_file.getvalue()


KFP_RUN = [
    "12:00:00.001 - INFO - Executing task \x1b[96m'train'\x1b[0m",
    "12:00:00.002 - INFO - Streamed logs:",
    "    [KFP Executor 2026-11-30 12:00:01,000 INFO]: Got executor_input:",
    "    {",
    '        "inputs": {',
    "            1,",
    "    }",
    "    2026-11-30 12:00:02.1: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.",
    "    W0000 00:00:1732900000.1 123 cpu_feature_guard.cc:1] something native",
    "    " + P.format_line(phase="loading data"),
    "    " + P.format_line(epoch=1, epochs=2, batch=10, batches=93, loss=1.5, eta_s=120),
    "    [KFP Executor 2026-11-30 12:00:09,000 INFO]: train epoch 1/2: loss 1.5",
    "12:00:10.000 - INFO - Task \x1b[96m'train'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
    "12:00:10.001 - INFO - Task 'train' outputs:",
    "    model: Model( name='model',",
]


def test_progress_lines_become_progress_events_and_the_rest_log_events():
    stream, events, logged = capture(KFP_RUN)
    kinds = [(e.kind, e.task) for e in events]
    assert kinds[0] == ("start", "train") and ("finish", "train") in kinds
    progress = [e.data for e in events if e.kind == "progress"]
    assert progress == [{"phase": "loading data"},
                        {"epoch": 1, "epochs": 2, "batch": 10, "batches": 93, "loss": 1.5, "eta_s": 120}]
    logs = [e.line for e in events if e.kind == "log"]
    assert any("oneDNN" in ln for ln in logs) and any("something native" in ln for ln in logs)
    assert any("train epoch 1/2" in ln for ln in logs)
    assert not any(ln.startswith(("{", "}", '"', "1,")) for ln in logs)  # the executor input JSON
    assert not any("model: Model(" in ln for ln in logs)  # kfp.local's output listing
    assert logged == "\n".join(KFP_RUN) + "\n"  # the log file has everything, progress lines included
    assert "train epoch 1/2" in stream.tails["train"][-1] and not any(P.PREFIX in t for t in stream.tails["train"])


# ---------------------------------------------------------------- the display (edgeship.cli.main_job)

def display(verbose=False, terminal=False, width=160):
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    return _Progress(console, ("train", "quantize"), verbose=verbose), out


def feed(progress, lines):
    for event in capture(lines)[1]:
        progress(event)


def test_a_plain_log_gets_steps_milestones_and_no_step_output():
    progress, out = display()
    with progress:
        feed(progress, KFP_RUN[:-3] + [
            "    " + P.format_line(epoch=1, epochs=2, batch=50, batches=93, loss=1.4),
            "    " + P.format_line(epoch=1, epochs=2, loss=1.3, val_loss=1.2, img_s=150, eta_s=9, mark=True),
        ] + KFP_RUN[-3:])
    text = out.getvalue()
    assert "▶ train" in text and "✔ train SUCCESS" in text
    assert "train: loading data" in text
    assert "train: epoch 1/2  loss 1.300  val 1.200  150 img/s  ETA 9s" in text
    assert "step 10/93" not in text and "step 50/93" not in text  # ticks are for the live line only
    assert "oneDNN" not in text and "KFP Executor" not in text and "native" not in text
    # a finished step keeps the figures of its last epoch
    assert progress.rows["train"]["text"] == "epoch 1/2  loss 1.300  val 1.200  150 img/s"
    assert "✔ train SUCCESS (0 s)  epoch 1/2  loss 1.300  val 1.200  150 img/s" in text


def test_a_plain_log_prints_each_new_variant_once():
    progress, out = display()
    with progress:
        progress(StepEvent("start", "quantize"))
        for _ in range(2):
            progress(StepEvent("progress", "quantize", data={"item": "fp32", "index": 1, "count": 2}))
        progress(StepEvent("progress", "quantize", data={"item": "full_int8", "index": 2, "count": 2}))
        progress(StepEvent("finish", "quantize", "SUCCESS"))
    lines = [ln for ln in out.getvalue().splitlines() if "quantize:" in ln]
    assert [ln.split("quantize: ")[1] for ln in lines] == ["fp32 (1/2)", "full_int8 (2/2)"]
    assert "✔ quantize SUCCESS (0 s)  2/2 done" in out.getvalue()


def test_verbose_shows_the_step_output_too():
    progress, out = display(verbose=True)
    with progress:
        feed(progress, KFP_RUN)
    text = out.getvalue()
    assert "train: 2026-11-30 12:00:02.1: I tensorflow/core/util/port.cc:153] oneDNN" in text
    assert "train epoch 1/2: loss 1.5" in text and '"inputs"' not in text


def test_the_live_table_shows_the_running_steps_progress_line():
    progress, _ = display(terminal=True)
    progress(StepEvent("start", "train"))
    progress(StepEvent("progress", "train", data=json.loads(json.dumps(
        {"epoch": 12, "epochs": 40, "loss": 0.84, "val_loss": 0.91, "img_s": 151, "eta_s": 190}))))
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(progress._table())
    row = next(ln for ln in out.getvalue().splitlines() if "train" in ln)
    assert "running" in row and "epoch 12/40  loss 0.840  val 0.910  151 img/s  ETA 3m10s" in row
    assert "waiting" in next(ln for ln in out.getvalue().splitlines() if "quantize" in ln)


# ---------------------------------------------------------------- end to end through kfp.local

def _progress_pipeline():
    from kfp import dsl

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def busy(fail: bool):
        from edgeship.base import progress

        print("some library chatter")
        progress.emit(item="fp32", index=1, count=2, phase="converting")
        if fail:
            raise ValueError("boom")

    @dsl.pipeline(name="progress-test")
    def pipeline(fail: bool = False):
        busy(fail=fail).set_caching_options(False)

    return pipeline


def test_steps_under_run_local_report_progress_and_a_failure_shows_the_steps_last_lines(tmp_path, monkeypatch):
    from pipelines.local import StepFailed, run_local

    monkeypatch.delenv(P.ENV, raising=False)
    pipeline = _progress_pipeline()
    events = []
    run_local({"fail": False}, pipeline_root=tmp_path, pipeline_func=pipeline, on_event=events.append)
    assert [e.data for e in events if e.kind == "progress"] == [
        {"item": "fp32", "index": 1, "count": 2, "phase": "converting"}]
    assert any(e.kind == "log" and e.line == "some library chatter" for e in events)
    assert P.ENV not in __import__("os").environ  # set for the steps only

    with pytest.raises(StepFailed) as info:
        run_local({"fail": True}, pipeline_root=tmp_path, pipeline_func=pipeline)
    assert info.value.step == "busy" and info.value.tail[-1] == "ValueError: boom"
    assert "some library chatter" in info.value.tail
    assert not any(line.lstrip().startswith(("{", '"')) for line in info.value.tail)  # no executor JSON


def test_the_jobs_own_logging_prints_through_the_console_warnings_only_unless_verbose():
    import logging

    from edgeship.cli.main_job import _console_logging

    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    for verbose in (False, True):
        out = io.StringIO()
        with _console_logging(Console(file=out, width=200), verbose):
            logging.getLogger("edgeship.delivery.client").info("waiting: no release [yet]")
            logging.getLogger("edgeship.delivery.client").warning("download attempt 1 failed")
        text = out.getvalue()
        assert "WARNING edgeship.delivery.client: download attempt 1 failed" in text
        assert ("waiting: no release [yet]" in text) is verbose
        assert (root.handlers[:], root.level) == before


NATIVE_PROBE = """
import os, sys
from pathlib import Path
from edgeship.cli.main_job import _native_stderr_to

with _native_stderr_to(Path(sys.argv[1])):
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
    print("python warning", file=sys.stderr)
os.write(2, b"after\\n")
"""


def test_native_writes_to_a_terminals_stderr_go_to_the_log_and_pythons_stay(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    log = tmp_path / "pipeline.log"
    master, slave = pty.openpty()
    done = subprocess.run([sys.executable, "-c", NATIVE_PROBE, str(log)], stderr=slave, timeout=60)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert done.returncode == 0
    assert log.read_text() == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert b"python warning" in seen and b"after" in seen and b"XNNPACK" not in seen


def test_the_pipelines_own_done_event_and_log_lines_make_no_step_row():
    progress, _ = display()
    with progress:
        progress(StepEvent("log", "", line="12:00:00.000 - WARNING - something"))
        progress(StepEvent("done", "edgeship", "SUCCESS"))
    assert list(progress.rows) == ["train", "quantize"]

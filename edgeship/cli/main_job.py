"""`edgeship run`, the main job: the whole pipeline on this machine against the local cloud.

1. check the parameters (before anything starts);
2. bring up the local stack (edgeship.localcloud.stack) and put its emulator variables in this
   process's environment, which every kfp.local step inherits;
3. start a listening client (edgeship.delivery.client) on the model's channel;
4. run the pipeline with kfp.local (pipelines.local.run_local), showing progress;
5. wait for the client to hold the verified new model (when the gate published);
6. print the summary table (variants, mAP, size, latency, decision), the gate's reasons, the
   report's path, the wall time and the peak memory of the whole process tree.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from edgeship.cli.display import _Progress, summary_table
from edgeship.contracts import dataset as dataset_contract
from edgeship.contracts import decision as decision_contract
from edgeship.contracts import evaluation

log = logging.getLogger(__name__)

STEPS = ("data", "train", "qat", "quantize", "autoquant", "evaluate", "select", "publish")


def pipeline_spec() -> dict[str, Any]:
    """The compiled spec of the pipeline as a dict (for parameter names and types)."""
    from google.protobuf import json_format

    from pipelines.edgeship_pipeline import edgeship_pipeline

    return json_format.MessageToDict(edgeship_pipeline.pipeline_spec)


def check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Typed, checked pipeline parameters for a local run. Raises ValueError/FileNotFoundError."""
    from pipelines import params as P

    values = P.coerce_parameters(pipeline_spec(), params, where="command line")
    P.check_data_uri(str(values.get("data_uri", "")), cloud=False)
    return values


def task_outputs(run_dir: Path, task: str) -> dict[str, Any]:
    """A finished task's parameter outputs and artifact URIs (kfp.local's executor_output.json)."""
    path = run_dir / task / "executor_output.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    out: dict[str, Any] = dict(saved.get("parameterValues", {}))
    for name, entry in saved.get("artifacts", {}).items():
        arts = entry.get("artifacts", [])
        if arts:
            out[name] = arts[0].get("uri")
    return out


def stage_default_dataset(local_dir: Path, bucket: str, image_size: int, console) -> str:
    """Generate the embedded dataset (once per image size) and upload it to the local bucket
    under its fingerprint (once); return its gs:// URI."""
    from components.data import core
    from edgeship.base import storage

    local = local_dir / f"edgeship-shapes-{image_size}"
    if (local / "dataset.json").is_file():
        info = dataset_contract.read_dataset_info(local)
    else:
        console.print(f"dataset: generating the embedded default into {local}…")
        info = core.generate_dataset(local, image_size=image_size, progress=console.is_terminal)
    uri = f"gs://{bucket}/datasets/{info.name}-{info.fingerprint.split(':')[-1][:12]}"
    if storage.exists(f"{uri}/dataset.json"):
        console.print(f"dataset: {uri} (already in the local bucket)")
    else:
        t0 = time.monotonic()
        n = len(storage.upload_dir(local, uri))
        console.print(f"dataset: uploaded {n} files to {uri} ({time.monotonic() - t0:.1f} s)")
    return uri


def _start_client(model_name: str, channel: str, root: Path):
    """Start the reference client listening on the channel; None if it cannot start."""
    from edgeship.contracts.manifest import VERSION_NAME_RE
    from edgeship.delivery import client as client_mod

    if not VERSION_NAME_RE.match(model_name):  # the manifest schema's name rule; also a folder here
        raise ValueError(f"model_name {model_name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return client_mod.start_listening(model_name=model_name, channel=channel,
                                      cache_dir=root / "client" / model_name)  # one cache per model


def main_job(params: dict[str, Any], *, root: Path, start_client: bool = True,
             client_timeout: float = 60.0, stream: TextIO = sys.stdout,
             stack_config=None, pipeline_func=None, cache: bool = True,
             stage_data: bool = True, verbose: bool | None = None) -> int:
    """Run the main job; returns the process exit code (0 also when the gate refused).

    The terminal shows the steps and their progress; everything the steps print (their logs,
    the converters', Core ML's and TensorFlow's messages) goes to the run's pipeline.log, and is
    shown too with ``verbose`` (default: when the root logger is at DEBUG, ``edgeship -v run``).

    ``stack_config`` (default: StackConfig()) and ``pipeline_func`` (default: the edgeship
    pipeline; a stand-in must take the same parameters) are seams for tests. With
    ``stage_data`` and no data URI given, the embedded dataset is generated and uploaded to the
    local bucket first, and the pipeline reads it from there, as it would on Vertex AI.
    """
    from rich.console import Console

    console = Console(file=stream, width=None if stream.isatty() else 150)
    if verbose is None:
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    with _console_logging(console, verbose), contextlib.ExitStack() as scope:
        return _main_job(params, console=console, verbose=verbose, root=root,
                         start_client=start_client, client_timeout=client_timeout,
                         stack_config=stack_config, pipeline_func=pipeline_func, cache=cache,
                         stage_data=stage_data, scope=scope)


@contextlib.contextmanager
def _console_logging(console, verbose: bool):
    """This process's own logging (the listening client's thread, the dataset staging) goes
    through ``console`` while the job runs, so it prints above the live table instead of
    breaking it; WARNING and up only, unless ``verbose`` (DEBUG)."""

    class ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                console.print(self.format(record), markup=False, highlight=False)
            except Exception:  # noqa: BLE001 - logging must not fail the job
                self.handleError(record)

    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root_logger = logging.getLogger()
    saved_handlers, saved_level = root_logger.handlers[:], root_logger.level
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        root_logger.handlers[:] = saved_handlers
        root_logger.setLevel(saved_level)


@contextlib.contextmanager
def _native_stderr_to(path: Path):
    """Send what native code in this process writes straight to file descriptor 2 (LiteRT's
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when the client verifies a model)
    to ``path``; Python's own sys.stderr (warnings, tracebacks) keeps the terminal. Only when fd 2
    is a terminal, where such a line would break the live table."""
    try:
        interactive = os.isatty(2)
    except OSError:
        interactive = False
    if not interactive:
        yield
        return
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    with open(path, "a", encoding="utf-8") as fh:
        os.dup2(fh.fileno(), 2)
    saved = sys.stderr
    sys.stderr = os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = saved
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)


def _main_job(params: dict[str, Any], *, console, verbose: bool, root: Path, start_client: bool,
              client_timeout: float, stack_config, pipeline_func, cache: bool, stage_data: bool,
              scope: contextlib.ExitStack) -> int:
    """The main job's steps in order; returns the process exit code."""
    t0 = time.monotonic()
    values = check_parameters(params)

    console.rule("[bold]edgeship run")
    run_root, stack_pids = _bring_up_stack(values, console=console, verbose=verbose, root=root,
                                           stack_config=stack_config, scope=scope)
    effective = _effective_parameters(values, console)
    if stage_data and not effective.get("data_uri"):
        values["data_uri"] = effective["data_uri"] = stage_default_dataset(
            root.resolve() / "data", effective["bucket"], int(effective["input_size"]), console)
    client = _listening_client(effective, console, root) if start_client else None

    result = _run_pipeline(values, console=console, verbose=verbose, run_root=run_root,
                           stack_pids=stack_pids, pipeline_func=pipeline_func, cache=cache,
                           client=client)
    if result is None:
        return 1

    outputs_select, decision, eval_dir = _print_decision(result, console)
    held = _report_publication(result, decision, outputs_select, effective, console=console,
                               client=client, client_timeout=client_timeout)
    if client is not None:
        client.stop()
    _print_run_summary(result, eval_dir, outputs_select, console, wall=time.monotonic() - t0)
    if decision.get("publish") and client is not None and not held:
        return 1
    return 0


def _bring_up_stack(values: dict[str, Any], *, console, verbose: bool, root: Path, stack_config,
                    scope: contextlib.ExitStack) -> tuple[Path, tuple[int, ...]]:
    """Start the local cloud stack, export its environment; return the run root and its pids."""
    from edgeship.localcloud import stack as local_stack

    console.print("local cloud stack: starting (Cloud Storage, Firestore, function, relay)…")
    config = stack_config or local_stack.StackConfig()
    local_stack.up(config, progress=lambda msg: console.print(f"  {msg}", highlight=False))
    os.environ.update(config.env())
    run_root = root.resolve() / "pipeline-root"
    run_root.mkdir(parents=True, exist_ok=True)
    if not verbose:  # (after the stack's servers started: they keep their own logs)
        # TensorFlow's and LiteRT's start-up lines in this process (TFRecords of the staged
        # dataset, the client's model check) go to the run's log, not through the live table
        scope.enter_context(_native_stderr_to(run_root / "pipeline.log"))
    # every step inherits it: TensorFlow's C++ warnings and errors still reach the step log
    # (pipeline.log), its INFO lines do not (TF 2.21 logs its oneDNN/cudart start-up lines before
    # absl is set up, whatever the level: they stay in pipeline.log, off the terminal)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    values.setdefault("bucket", config.buckets[0])
    stack_pids = tuple(s.pid for s in local_stack.status(config) if s.pid)
    console.print(f"local cloud stack: up ({', '.join(f'{k}={v}' for k, v in config.env().items())})")
    return run_root, stack_pids


def _effective_parameters(values: dict[str, Any], console) -> dict[str, Any]:
    """The pipeline's defaults overlaid with ``values``; printed."""
    spec_defaults = {k: (int(v["defaultValue"]) if v.get("parameterType") == "NUMBER_INTEGER"
                         else v.get("defaultValue"))
                     for k, v in pipeline_spec()["root"]["inputDefinitions"]["parameters"].items()}
    effective = {**spec_defaults, **values}
    console.print("parameters: " + ", ".join(f"{k}={v!r}" for k, v in sorted(effective.items())))
    return effective


def _listening_client(effective: dict[str, Any], console, root: Path):
    """Start the listening client on the model's channel and say what it holds."""
    client = _start_client(effective["model_name"], effective["channel"], root.resolve())
    console.print(f"client: listening on {effective['model_name']}/{effective['channel']} "
                  f"(holds: {client.current_version or 'nothing yet'})")
    return client


def _run_pipeline(values: dict[str, Any], *, console, verbose: bool, run_root: Path,
                  stack_pids: tuple[int, ...], pipeline_func, cache: bool, client):
    """Run the pipeline with the live progress table; None (client stopped) when it failed."""
    from rich.markup import escape

    from pipelines.local import run_local, source_fingerprint

    console.print(f"step logs: {run_root / 'pipeline.log'}"
                  + ("" if verbose else " (shown here too with edgeship -v run)"), highlight=False)
    progress = _Progress(console, STEPS, verbose=verbose)
    try:
        with progress:
            return run_local(values, pipeline_root=run_root, on_event=progress,
                             extra_pids=stack_pids, pipeline_func=pipeline_func,
                             enable_caching=cache,
                             cache_root=run_root / ".kfp_cache" / source_fingerprint())
    except RuntimeError as exc:
        tail = getattr(exc, "tail", None)
        if tail and not verbose:
            console.print(f"[bold]last lines of {getattr(exc, 'step', 'the step')}'s output:[/]")
            for line in tail:
                console.print(f"    {line}", highlight=False, markup=False)
        console.print(f"[bold red]pipeline failed:[/] {escape(str(exc))}", highlight=False)
        if client is not None:
            client.stop()
        return None


def _print_decision(result, console) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Print the summary table, the auto-quantize search and the gate's reasons."""
    outputs_select = task_outputs(result.run_dir, result.task("select") or "select")
    decision = decision_contract.load(outputs_select["decision"]).to_dict()
    eval_dir = Path(decision["inputs"]["evaluation"])  # select's input (a cached run's is older)
    report = evaluation.load(eval_dir).doc

    console.print(summary_table(report, decision))
    search = report.get("autoquant")
    if search:
        console.print(f"[bold]auto-quantize:[/] {search.get('message') or ''} — "
                      f"{len(search.get('candidates') or [])} candidates tried in "
                      f"{float(search.get('seconds') or 0):.0f} s; curve: {eval_dir / 'autoquant_tradeoff.png'}")
    console.print("[bold]gate:[/] " + "\n      ".join(decision.get("reasons", [])))
    return outputs_select, decision, eval_dir


def _report_publication(result, decision: dict[str, Any], outputs_select: dict[str, Any],
                        effective: dict[str, Any], *, console, client, client_timeout: float):
    """Say what was published and wait for the client to hold it; returns what it holds."""
    held = None
    if decision.get("publish"):
        published = task_outputs(result.run_dir, result.task("publish") or "publish")
        version = published.get("version") or published.get("Output")
        console.print(f"published {effective['model_name']} version {version} to channel "
                      f"{effective['channel']} (gs://{effective['bucket']}/models/{effective['model_name']}/{version}/)")
        if client is not None:
            held = client.wait_for(version, timeout=client_timeout)
            if held:
                console.print(f"[bold green]client holds the verified new model:[/] {held}")
            else:
                console.print(f"[bold red]client did not get version {version} within "
                              f"{client_timeout:.0f} s:[/] {client.last_error or 'no event'}")
    else:
        console.print("[bold yellow]NOT PUBLISHED[/] — see the reasons above "
                      f"({outputs_select.get('decision_md')})")
    return held


def _print_run_summary(result, eval_dir: Path, outputs_select: dict[str, Any], console, *,
                       wall: float) -> None:
    """Print the report's files, the gate decision, the log, the wall time and peak memory."""
    for name in ("report.html", "report.md", "tradeoff.png"):
        if (eval_dir / name).exists():
            console.print(f"report: {eval_dir / name}")
    console.print(f"gate decision: {outputs_select.get('decision_md')}")
    console.print(f"full log: {result.log_path}")
    console.print(f"wall time: {wall:.0f} s (pipeline {result.wall_s:.0f} s); peak memory "
                  f"(all processes, sampled): {result.peak_rss_bytes / 2**30:.2f} GiB")

"""Run the whole pipeline on this machine with kfp.local's SubprocessRunner.

Each step runs as a subprocess of this Python (the project's installed code, no container), with
this process's environment: set the local stack's emulator variables (STORAGE_EMULATOR_HOST,
FIRESTORE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT) in os.environ before calling run_local and every
step talks to the local cloud.

kfp.local quirks handled here (kfp 2.17):
- It replaces the root logger's handlers and prints every step's output (and its full executor
  input JSON) to sys.stdout. run_local captures that stream into ``pipeline.log`` and turns the
  task start/finish lines into events instead of flooding the terminal. Steps report their own
  progress (epochs, variants) with ``EDGESHIP_PROGRESS {json}`` lines (edgeship.base.progress;
  run_local sets ``EDGESHIP_PROGRESS=1`` for them), which become "progress" events; every other
  line of a step's output (its logging, the converters' and TensorFlow's own messages) is a
  "log" event and stays in ``pipeline.log``; the caller decides whether to show it.
- A pipeline parameter typed ``Optional[...] = None`` crashes its argument handling
  ("Unknown value type"), so every pipeline parameter has a concrete default (the accuracy
  budget is a string, "none" meaning not configured).
- It returns no handle on task outputs for a pipeline without outputs; outputs are read from
  the run folder, ``<pipeline_root>/<pipeline-name>-<timestamp>/<task>/<output>``.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeship.base import progress as step_progress

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_FINISH = re.compile(r"Task '([^']+)' finished with status (\w+)")
_SKIP = re.compile(r"[Ss]kipping task '([^']+)'|Task '([^']+)' (?:was )?skipped")
_PIPELINE_DONE = re.compile(r"Pipeline '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task (\S+) cache hit")
_JSON_SCRAP = re.compile(r"^[-\d.,\s\[\]]+$")  # numbers from the executor input JSON's arrays
_KFP_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - ")
_KFP_WARN = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - (WARNING|ERROR|CRITICAL) - ")


TAIL_LINES = 30  # lines of a failed step's output kept for the error message


@dataclass
class StepEvent:
    """An event of a local run: kind is "start", "finish", "skip", "done", "progress" (``data``:
    the step's progress fields, see edgeship.base.progress) or "log" (``line``: a line of a step's
    output or a kfp.local warning; all of them are in pipeline.log)."""

    kind: str
    task: str = ""
    status: str = ""
    line: str = ""
    data: dict[str, Any] | None = None


class StepFailed(RuntimeError):
    """A pipeline step failed; ``tail`` holds the last lines of its output."""

    def __init__(self, message: str, *, step: str, log_path: Path, tail: list[str]):
        super().__init__(message)
        self.step = step
        self.log_path = log_path
        self.tail = tail


class _CaptureStream(io.TextIOBase):
    """Stands in for sys.stdout during a kfp.local run: every line goes to the log file; task
    start/finish lines, progress lines and the steps' output lines become StepEvents."""

    def __init__(self, log_file, on_event: Callable[[StepEvent], None]):
        self._file = log_file
        self._on_event = on_event
        self._buffer = ""
        self._quiet = False
        self._in_event = False
        self.current = ""
        self.tails: dict[str, deque[str]] = {}  # task -> last lines of its output

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._file.write(text)
        if self._in_event:  # an event handler printed: keep it in the file, do not loop
            return len(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._in_event = True
            try:
                self._line(_ANSI.sub("", line))
            finally:
                self._in_event = False
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def _line(self, line: str) -> None:
        if m := _START.search(line):
            self.current = m.group(1)
            self._quiet = False
            self._on_event(StepEvent("start", m.group(1)))
        elif m := _FINISH.search(line):
            self._on_event(StepEvent("finish", m.group(1), m.group(2)))
        elif m := _CACHED.search(line):
            self._on_event(StepEvent("finish", m.group(1), "CACHED"))
        elif m := _SKIP.search(line):
            self._on_event(StepEvent("skip", m.group(1) or m.group(2)))
        elif m := _PIPELINE_DONE.search(line):
            self._on_event(StepEvent("done", m.group(1), m.group(2)))
        elif _KFP_LINE.match(line):
            # kfp.local's own lines; "Task 'x' outputs:" starts a listing of every output's URI
            self._quiet = " outputs:" in line
            if _KFP_WARN.match(line):
                self._on_event(StepEvent("log", self.current, line=line.strip()))
        elif line.startswith("    ") and not self._quiet:
            # a step's own output (kfp.local indents it)
            text = line.strip()
            fields = step_progress.parse(text)
            if fields is not None:
                self._on_event(StepEvent("progress", self.current, data=fields))
            # the executor input JSON stays in the log file only
            elif text and not text.startswith(("{", "}", '"', "],", "]")) and not _JSON_SCRAP.match(text):
                text = line[4:].rstrip()  # the step's own indentation (tracebacks) kept
                self.tails.setdefault(self.current, deque(maxlen=TAIL_LINES)).append(text)
                self._on_event(StepEvent("log", self.current, line=text))


def _tree_rss(root_pid: int, extra_pids: tuple[int, ...] = ()) -> int:
    """Sum of VmRSS (bytes) of root_pid, all its descendants and extra_pids (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                ppid, vmrss = 0, 0
                for line in fh:
                    if line.startswith("PPid:"):
                        ppid = int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        vmrss = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry.name)
        rss[pid] = vmrss
        children.setdefault(ppid, []).append(pid)
    total, stack, seen = 0, [root_pid, *extra_pids], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class MemorySampler:
    """Samples the total resident memory of this process tree (plus extra pids, e.g. the local
    stack's servers) every ``interval`` seconds; ``peak`` is the largest sum seen."""

    def __init__(self, extra_pids: tuple[int, ...] = (), interval: float = 0.5):
        self.extra_pids = extra_pids
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _tree_rss(os.getpid(), self.extra_pids))
            except OSError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        if Path("/proc").is_dir():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@dataclass
class LocalRun:
    """What a local run left behind."""

    run_dir: Path
    log_path: Path
    wall_s: float
    statuses: dict[str, str] = field(default_factory=dict)
    peak_rss_bytes: int = 0

    def output(self, task: str, name: str) -> Path:
        """Path of a task's output artifact/parameter file in the run folder."""
        return self.run_dir / task / name

    def task(self, step: str) -> str | None:
        """The name the step ran under: ``step`` itself or, for a step wired in more than one
        branch (evaluate, select, publish…), KFP's ``step-2``, ``step-3``…; None when no task of
        that step ran (a branch not taken). Ran = succeeded or was served from the cache."""
        pattern = re.compile(rf"{re.escape(step)}(-\d+)?")
        ran = [t for t, s in self.statuses.items() if pattern.fullmatch(t) and s in ("SUCCESS", "CACHED")]
        return ran[0] if ran else None


def task_dependencies(pipeline_spec: Any) -> dict[str, list[str]]:
    """Each task's upstream tasks, over the root DAG and every nested one (dsl.If/Else
    branches). A task inside a branch also depends on what its branch's condition task depends
    on, so a step inside a branch that starts also marks the outer steps it reads from."""
    dags = [pipeline_spec.root.dag] + [c.dag for c in pipeline_spec.components.values()
                                       if c.HasField("dag")]
    deps: dict[str, list[str]] = {}
    owner: dict[str, str] = {}  # component name → the task that runs it (a condition task)
    for dag in dags:
        for name, task in dag.tasks.items():
            deps.setdefault(name, []).extend(task.dependent_tasks)
            owner[task.component_ref.name] = name
    for comp_name, comp in pipeline_spec.components.items():
        if comp.HasField("dag") and comp_name in owner:
            for name in comp.dag.tasks:
                deps[name].append(owner[comp_name])
    return deps


def source_fingerprint(root: str | Path | None = None) -> str:
    """SHA-256 (16 hex) over the project's Python sources and pyproject.toml.

    kfp.local's cache key covers a component's own function body but not the project code it
    imports (components/*/core.py ...): keying the cache folder by this fingerprint makes any
    code change a cache miss.
    """
    import hashlib

    base = Path(root) if root else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = [base / "pyproject.toml"] + sorted(
        p for d in ("components", "edgeship", "pipelines") for p in (base / d).rglob("*.py"))
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run_local(parameters: dict[str, Any], *, pipeline_root: str | Path,
              on_event: Callable[[StepEvent], None] | None = None,
              extra_pids: tuple[int, ...] = (), pipeline_func: Callable | None = None,
              enable_caching: bool = False, cache_root: str | Path | None = None) -> LocalRun:
    """Run pipelines.edgeship_pipeline (or ``pipeline_func``) with kfp.local (SubprocessRunner,
    no venv per step). With ``enable_caching`` a step whose component, inputs and parameters are
    unchanged reuses its earlier outputs (kfp.local's file cache under ``cache_root``); steps that
    set caching off (select, publish) always run.

    Side effects: creates ``pipeline_root``, writes the run folder and ``pipeline.log`` there.
    Raises RuntimeError naming the failed step and the log file when a step fails.
    """
    from kfp import local

    if pipeline_func is None:
        from pipelines.edgeship_pipeline import edgeship_pipeline as pipeline_func

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "pipeline.log"
    statuses: dict[str, str] = {}
    handle = _status_tracker(task_dependencies(pipeline_func.pipeline_spec), statuses, on_event)

    before = {p.name for p in root.iterdir() if p.is_dir()}
    _init_kfp_local(local, root, enable_caching=enable_caching, cache_root=cache_root)
    start = time.monotonic()
    error, stream, sampler = _run_captured(pipeline_func, parameters, log_path=log_path,
                                           handle=handle, extra_pids=extra_pids)
    wall = time.monotonic() - start
    run_dir = _new_run_dir(root, before, pipeline_func.pipeline_spec.pipeline_info.name + "-")
    result = LocalRun(run_dir=run_dir, log_path=log_path, wall_s=wall, statuses=statuses,
                      peak_rss_bytes=sampler.peak)
    if error is not None:
        raise _step_failed(error, statuses, stream, log_path) from error
    return result


def _status_tracker(deps: dict[str, list[str]], statuses: dict[str, str],
                    on_event: Callable[[StepEvent], None] | None) -> Callable[[StepEvent], None]:
    """An event handler that records task statuses (cache hits included) and forwards events."""

    # kfp.local prints nothing for a task served from its cache: when a task starts, every task
    # it depends on that has no status yet was a cache hit.
    def mark_cached(name: str, seen: set[str] | None = None) -> None:
        seen = set() if seen is None else seen
        for dep in deps.get(name, []):
            if dep in seen:
                continue
            seen.add(dep)
            if dep not in statuses and not dep.startswith("condition-"):
                statuses[dep] = "CACHED"
                if on_event is not None:
                    on_event(StepEvent("finish", dep, "CACHED"))
            mark_cached(dep, seen)

    def handle(event: StepEvent) -> None:
        if event.kind == "start":
            mark_cached(event.task)
        if event.kind == "finish":
            statuses[event.task] = event.status
        elif event.kind == "skip":
            statuses[event.task] = "SKIPPED"
        if on_event is not None:
            on_event(event)

    return handle


def _init_kfp_local(local, root: Path, *, enable_caching: bool,
                    cache_root: str | Path | None) -> None:
    """Set up kfp.local's SubprocessRunner and silence its known, expected warnings."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True, enable_caching=enable_caching,
               cache_root=str(cache_root) if cache_root else None)
    # kfp.local warns for every step that its base_image is not a plain Python image; here that
    # is the point (the project's own code is installed in this environment), so say it once.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    # ...and that CPU, memory and GPU limits (pipelines/resources.py) do nothing here: known.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*",
                            category=UserWarning)


def _run_captured(pipeline_func: Callable, parameters: dict[str, Any], *, log_path: Path,
                  handle: Callable[[StepEvent], None], extra_pids: tuple[int, ...],
                  ) -> tuple[BaseException | None, _CaptureStream, MemorySampler]:
    """Run the pipeline with sys.stdout captured into the log and memory sampled."""
    error: BaseException | None = None
    saved_env = os.environ.get(step_progress.ENV)
    os.environ[step_progress.ENV] = "1"  # the steps (subprocesses) print progress lines
    with open(log_path, "a", encoding="utf-8") as log_file, MemorySampler(extra_pids) as sampler:
        stream = _CaptureStream(log_file, handle)
        saved = sys.stdout
        sys.stdout = stream
        try:
            pipeline_func(**parameters)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run_local with the log's path
            error = exc
        finally:
            sys.stdout = saved
            stream.flush()
            if saved_env is None:
                os.environ.pop(step_progress.ENV, None)
            else:
                os.environ[step_progress.ENV] = saved_env
    return error, stream, sampler


def _new_run_dir(root: Path, before: set[str], prefix: str) -> Path:
    """The run folder this run created (the newest new ``<prefix>…`` folder), else ``root``."""
    new = sorted((p for p in root.iterdir() if p.is_dir() and p.name not in before
                  and p.name.startswith(prefix)), key=lambda p: p.stat().st_mtime)
    return new[-1] if new else root


def _step_failed(error: BaseException, statuses: dict[str, str], stream: _CaptureStream,
                 log_path: Path) -> StepFailed:
    """The StepFailed naming the failed step, with the tail of its output."""
    failed = [t for t, s in statuses.items() if s not in ("SUCCESS", "SKIPPED", "CACHED")]
    step = failed[0] if failed else stream.current or "?"
    return StepFailed(f"pipeline step {step!r} failed: {error} (full log: {log_path})", step=step,
                      log_path=log_path, tail=list(stream.tails.get(step, ())))

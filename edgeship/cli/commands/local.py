"""`edgeship local up | down | status`: the local cloud stack (see edgeship.localcloud.stack)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "local", help="run the local cloud: fake GCS, Firestore emulator, function, event relay")
    sub = parser.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    for name, func, help_ in (
        ("up", _up, "start the stack (idempotent), wait until healthy, print the env to export"),
        ("down", _down, "stop every server of the stack"),
        ("status", _status, "show each server's port, pid and health"),
    ):
        p = sub.add_parser(name, help=help_)
        _add_config_args(p)
        p.set_defaults(func=func)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gcs-port", type=int, default=4443, help="storage API port (default 4443)")
    p.add_argument("--firestore-port", type=int, default=8086, help="Firestore gRPC port (8086)")
    p.add_argument("--function-port", type=int, default=8090, help="Cloud Function port (8090)")
    p.add_argument("--state-dir", type=Path, default=Path(".edgeship/local"),
                   help="pids, logs and relay state (default .edgeship/local)")
    p.add_argument("--function-source", type=Path, default=None,
                   help="function file (default functions/register_model/main.py)")
    p.add_argument("--function-target", default=None, help="function name (register_model)")
    p.add_argument("--gcs-backend", choices=("memory", "filesystem"), default="memory",
                   help="fake-gcs-server storage (memory: fresh each start; filesystem: kept "
                        "under STATE_DIR/gcs-data)")


def _config(args: argparse.Namespace):
    from edgeship.localcloud.stack import StackConfig

    extra = {}
    if args.function_source is not None:
        extra["function_source"] = args.function_source
    if args.function_target is not None:
        extra["function_target"] = args.function_target
    return StackConfig(gcs_port=args.gcs_port, firestore_port=args.firestore_port,
                       function_port=args.function_port, state_dir=args.state_dir,
                       gcs_backend=args.gcs_backend, **extra)


def _up(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgeship.localcloud import stack as local_stack

    console = Console(stderr=True)
    config = _config(args)
    try:
        with console.status("starting the local stack…"):
            result = local_stack.up(config, progress=lambda n: console.print(f"  {n} is healthy"))
    except local_stack.StackError as exc:
        console.print(f"edgeship local up: {exc}", style="red", markup=False, highlight=False)
        return 1
    if result["already_running"] and not result["started"]:
        console.print(f"local stack already running ({config.state_dir})")
    elif result["already_running"]:
        console.print(f"started {', '.join(result['started'])}; already running: "
                      f"{', '.join(result['already_running'])}")
    else:
        started = ", ".join(result["started"])
        console.print(f"local stack up: {started} (logs in {config.state_dir})")
    console.print(f"buckets: {', '.join('gs://' + b for b in config.buckets)}")
    console.print("export these to use it:")
    for key, value in config.env().items():
        print(f"export {key}={value}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from edgeship.localcloud import stack as local_stack

    stopped = local_stack.down(_config(args))
    print(f"stopped: {', '.join(stopped)}" if stopped else "local stack was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgeship.localcloud import stack as local_stack

    config = _config(args)
    rows = local_stack.status(config)
    table = Table(title=f"local stack ({config.state_dir})")
    for col in ("server", "port", "pid", "health", "log"):
        table.add_column(col)
    for s in rows:
        health = "healthy" if s.healthy else ("unhealthy: " + s.detail if s.running else "stopped")
        table.add_row(s.name, str(s.port), str(s.pid or "-"), health, str(s.log))
    Console().print(table)
    return 0 if all(s.healthy for s in rows) else 3

"""`edgeship publish`, `edgeship channel rollback|pause|resume|show`, `edgeship watch`.

publish uploads any model (PATH: a .tflite, optionally Core ML packages) or a pipeline variant
(--variants) to gs://BUCKET/models/MODEL/VERSION/ (create-only, manifest last);
channel writes the operator control document models/MODEL/channels/CHANNEL (who, when, why);
watch runs the reference client (edgeship.delivery.client) until interrupted. See docs/delivery.md.
Cloud clients and LiteRT are imported inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import sys

from components.publish.settings import PUBLISH
from edgeship.contracts.manifest import TASKS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "publish", help="publish a model (any .tflite, or a pipeline variant) as a new immutable version",
        description="Publish a new immutable version of a model to gs://BUCKET/models/MODEL/VERSION/ "
                    "(manifest last; the Cloud Function registers it, clients on the channel get it).\n\n"
                    "  any model:   edgeship publish model.tflite [model.mlpackage] --model NAME "
                    "--task classifier [--labels labels.txt] [--tags a,b] [--version-name v1.2]\n"
                    "  pipeline:    edgeship publish --variants DIR --variant full_int8 --model NAME "
                    "[--report DIR] ...\n\n"
                    "Every input is checked before anything is uploaded (docs/delivery.md).")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="a .tflite and optionally Core ML packages (.mlpackage folder or .mlpackage.zip); "
                        "not with --variants")
    p.add_argument("--variants", help="the pipeline's variants artifact dir (variants.json, labels.txt); "
                                      "not with PATH")
    p.add_argument("--variant", help="with --variants: the variant name in variants.json, e.g. full_int8")
    p.add_argument("--task", choices=TASKS,
                   help="with PATH: what the model does (required); its outputs are checked against it")
    p.add_argument("--labels", help="with PATH: labels file, one class per line (count checked against the model)")
    p.add_argument("--tags", action="append", default=[],
                   help="with PATH: tags (comma-separated, or the flag repeated)")
    p.add_argument("--display-name", help="with PATH: a human name for the model")
    p.add_argument("--version-name", help="a name for this version (e.g. v1.2.0), unique per model; the "
                                          "version id (publish time) still orders versions")
    p.add_argument("--report", help="evaluation artifact dir (report.json)")
    p.add_argument("--dataset", help="dataset artifact dir (dataset.json: fingerprint)")
    p.add_argument("--decision", help="the gate's decision.json (published beside the model)")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--channel", default=PUBLISH.channel, help="release channel")
    p.add_argument("--bucket", default=PUBLISH.bucket, help="model bucket")
    p.add_argument("--min-app-version", default=PUBLISH.min_app_version, help="lowest app version that can run it")
    p.add_argument("--run-id", default="", help="pipeline run id recorded in the manifest")
    p.add_argument("--no-coreml", action="store_true", help="do not publish Core ML packages")
    p.set_defaults(func=_publish)

    c = subparsers.add_parser("channel", help="operate a release channel: rollback, pause, resume, show")
    csub = c.add_subparsers(dest="action", metavar="ACTION")
    for action, text in (("rollback", "serve an earlier version (pinned until resume)"),
                         ("pause", "kill switch: clients keep what they hold"),
                         ("resume", "clear pause, pin and unpublish: follow the newest release"),
                         ("show", "what the channel serves, its control state and releases")):
        a = csub.add_parser(action, help=text)
        a.add_argument("--model", required=True)
        a.add_argument("--channel", default=PUBLISH.channel)
        if action == "rollback":
            a.add_argument("--to", help="version to serve (default: the release before the current one)")
        if action != "show":
            a.add_argument("--reason", required=True, help="why (recorded with who and when)")
        a.set_defaults(func=_channel)
    c.set_defaults(func=lambda args: (c.print_help(), 2)[1])

    w = subparsers.add_parser("watch", help="the reference client: follow a channel, verify and swap models")
    w.add_argument("--model", required=True)
    w.add_argument("--channel", default=PUBLISH.channel)
    w.add_argument("--dir", required=True, help="local model cache (DIR/current -> the served version)")
    w.add_argument("--app-version", help="this app's version; releases needing a newer app are skipped")
    w.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds (0 = run until Ctrl-C)")
    w.add_argument("--until-version", help="exit 0 once this version is held (exit 1 at --timeout)")
    w.add_argument("--no-cellular", action="store_true", help="do not download on a cellular network")
    w.add_argument("--no-expensive", action="store_true", help="do not download on a metered network")
    w.add_argument("--no-constrained", action="store_true", help="do not download on a low-data network")
    w.add_argument("--min-free-mb", type=float, default=0.0, help="keep this much disk free after a download")
    w.add_argument("--no-progress", action="store_true", help="no download progress bar")

    c = subparsers.add_parser("cache", help="list or delete the models a client installed",
                              description="The models a client (edgeship watch --dir DIR) installed: list "
                                          "them, or delete one that is not the current model.")
    cache_sub = c.add_subparsers(dest="cache_command", metavar="ACTION")
    cl = cache_sub.add_parser("list", help="installed versions, newest first (* = current)")
    cl.add_argument("--dir", required=True, help="the client's model cache")
    cl.set_defaults(func=_cache_list)
    cd = cache_sub.add_parser("delete", help="delete an installed version (not the current one)")
    cd.add_argument("--dir", required=True, help="the client's model cache")
    cd.add_argument("version")
    cd.set_defaults(func=_cache_delete)
    c.set_defaults(func=lambda a: (c.print_help(), 2)[1])
    w.set_defaults(func=_watch)


def _publish(args: argparse.Namespace) -> int:
    if args.paths and args.variants:
        raise ValueError("give either PATH (any model) or --variants (a pipeline variant), not both")
    if args.paths:
        return _publish_paths(args)
    if not args.variants or not args.variant:
        raise ValueError("give the model to publish: PATH (a .tflite) with --task, or --variants DIR "
                         "--variant NAME")
    stray = [flag for flag, value in (("--task", args.task), ("--labels", args.labels), ("--tags", args.tags),
                                      ("--display-name", args.display_name)) if value]
    if stray:
        raise ValueError(f"{', '.join(stray)}: only with PATH (a variant's task and labels come from its artifact)")
    from components.publish import core

    result = core.publish(args.variants, args.variant, bucket=args.bucket, model=args.model,
                          channel=args.channel, report_dir=args.report, dataset_dir=args.dataset,
                          decision_path=args.decision, min_app_version=args.min_app_version,
                          pipeline_run_id=args.run_id, include_coreml=not args.no_coreml,
                          version_name=args.version_name)
    _print_result(result)
    return 0


def _publish_paths(args: argparse.Namespace) -> int:
    stray = [flag for flag, value in (("--variant", args.variant), ("--report", args.report),
                                      ("--dataset", args.dataset), ("--decision", args.decision)) if value]
    if stray:
        raise ValueError(f"{', '.join(stray)}: only with --variants")
    if not args.task:
        raise ValueError(f"--task is required with PATH: one of {', '.join(TASKS)}")
    from components.publish import any_model

    result = any_model.publish_model(
        args.paths, bucket=args.bucket, model=args.model, task=args.task, channel=args.channel,
        labels_path=args.labels, tags=split_tags(args.tags), display_name=args.display_name,
        version_name=args.version_name, min_app_version=args.min_app_version)
    _print_result(result)
    return 0


def split_tags(values: list[str]) -> list[str]:
    """--tags a,b --tags c -> [a, b, c] (blank items dropped)."""
    return [t.strip() for value in values or [] for t in value.split(",") if t.strip()]


def _print_result(result) -> None:
    m = result.manifest
    print(json.dumps({"version": result.version, "uri": result.uri, "task": m.get("task", "detector"),
                      "version_name": m.get("version_name"), "parent_version": m.get("parent_version"),
                      "files": [f["path"] for f in m["files"]]}, indent=2))


def _channel(args: argparse.Namespace) -> int:
    from edgeship.delivery import registry

    if args.action == "show":
        print(json.dumps(registry.show_channel(args.model, args.channel), indent=2, default=str))
        return 0
    state = registry.channel_action(args.action, args.model, args.channel, reason=args.reason,
                                to=getattr(args, "to", None))
    print(json.dumps(state, indent=2, default=str))
    return 0


def _watch(args: argparse.Namespace) -> int:
    import time

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from edgeship.delivery.cache import DownloadConditions
    from edgeship.delivery.client import ModelClient

    conditions = DownloadConditions(allow_cellular=not args.no_cellular, allow_expensive=not args.no_expensive,
                                    allow_constrained=not args.no_constrained,
                                    min_free_bytes=int(args.min_free_mb * 1024 * 1024))
    bar = None if args.no_progress else Progress("{task.description}", BarColumn(), DownloadColumn(),
                                                 TransferSpeedColumn(), transient=True)
    tasks: dict[str, int] = {}

    def progress(version: str, done: int, total: int) -> None:
        if version not in tasks:
            tasks[version] = bar.add_task(f"downloading {version}", total=total)
        bar.update(tasks[version], completed=done)

    client = ModelClient(args.model, args.channel, args.dir, app_version=args.app_version,
                         conditions=conditions, progress=progress if bar else None)
    if bar:
        bar.start()
    client.start()
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for entry in client.history[seen:]:
                print(f"{time.strftime('%H:%M:%S')} {entry['event']:<10} {entry['version'] or '':<30} "
                      f"{entry['reason']}", flush=True)
            seen = len(client.history)
            if args.until_version and client.current_version == args.until_version:
                print(f"holding {client.current}", flush=True)
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        client.stop()
        if bar:
            bar.stop()
    if args.until_version:
        print(f"did not get {args.until_version}: {client.last_error or 'no release yet'}", file=sys.stderr)
        return 1
    return 0


def _cache_list(args: argparse.Namespace) -> int:
    import time

    from edgeship.delivery import cache

    models = cache.list_local(args.dir)
    if not models:
        print(f"no models installed in {args.dir}")
    for m in models:
        print(f"{'*' if m.current else ' '} {m.version}  {m.size:>10,} B  "
              f"installed {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.installed_at))}")
    return 0


def _cache_delete(args: argparse.Namespace) -> int:
    from edgeship.delivery import cache

    print(f"deleted {cache.delete_local(args.dir, args.version)}")
    return 0


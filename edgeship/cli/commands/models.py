"""`edgeship models list | versions | unpublish` and `edgeship import-firebase`.

models list reads what is hosted (the bucket's model folders, the function's version records, each
channel's state); versions lists one model's versions newest first (version name, task, size, what
each channel serves); unpublish is a recorded channel action (who, when, why): the channel serves
nothing and clients install nothing from it, the files stay immutable, `edgeship channel resume`
publishes it again. import-firebase publishes a Firebase ML export (docs/firebase-migration.md).
Cloud clients are imported inside the handlers.
"""
from __future__ import annotations

import argparse
import json

from components.publish.settings import PUBLISH
from edgeship.contracts.manifest import TASKS


def register(subparsers) -> None:
    m = subparsers.add_parser("models", help="see and retire hosted models: list, versions, unpublish",
                              description="What is hosted in the model bucket and registered in Firestore.")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    ml = msub.add_parser("list", help="every hosted model: task, tags, versions, what each channel serves")
    ml.add_argument("--bucket", default=PUBLISH.bucket, help="model bucket")
    ml.set_defaults(func=_list)
    mv = msub.add_parser("versions", help="a model's versions, newest first, and what each channel serves")
    mv.add_argument("--model", required=True)
    mv.add_argument("--channel", help="only this channel's versions")
    mv.add_argument("--limit", type=int, default=100, help="at most this many versions")
    mv.set_defaults(func=_versions)
    mu = msub.add_parser("unpublish", help="stop serving a model on a channel (recorded; files stay)",
                         description="The channel serves nothing: clients keep what they hold and install "
                                     "nothing from it; clients with an empty cache get nothing. Recorded with "
                                     "who, when and why. `edgeship channel resume` publishes it again.")
    mu.add_argument("--model", required=True)
    mu.add_argument("--channel", default=PUBLISH.channel)
    mu.add_argument("--reason", required=True, help="why (recorded with who and when)")
    mu.set_defaults(func=_unpublish)
    m.set_defaults(func=lambda args: (m.print_help(), 2)[1])

    f = subparsers.add_parser(
        "import-firebase", help="publish the models of a Firebase ML export (names, tags, publish state)",
        description="Publish every model of a Firebase ML export to a channel, keeping display names, "
                    "tags and publish state (an unpublished model is imported unpublished). EXPORT is the "
                    "JSON list of firebase_admin.ml Model.as_dict(); FILES the folder of their .tflite "
                    "files. Every model is checked before anything is uploaded. See "
                    "docs/firebase-migration.md.")
    f.add_argument("export", metavar="EXPORT", help="models JSON ({\"models\": [...]} or a list)")
    f.add_argument("--files", required=True, help="folder holding the models' .tflite files")
    f.add_argument("--channel", default=PUBLISH.channel, help="release channel")
    f.add_argument("--bucket", default=PUBLISH.bucket, help="model bucket")
    f.add_argument("--task", choices=TASKS, default="other",
                   help="task of models whose export entry has no \"task\"")
    f.add_argument("--min-app-version", default=PUBLISH.min_app_version, help="lowest app version that can run them")
    f.add_argument("--check", action="store_true", help="check the export and files only; upload nothing")
    f.set_defaults(func=_import_firebase)


def _list(args: argparse.Namespace) -> int:
    from edgeship.delivery import catalog

    print(json.dumps(catalog.list_models(args.bucket), indent=2, default=str))
    return 0


def _versions(args: argparse.Namespace) -> int:
    from edgeship.delivery import catalog

    print(json.dumps(catalog.list_versions(args.model, channel=args.channel, limit=args.limit),
                     indent=2, default=str))
    return 0


def _unpublish(args: argparse.Namespace) -> int:
    from edgeship.delivery import registry

    state = registry.channel_action("unpublish", args.model, args.channel, reason=args.reason)
    print(json.dumps(state, indent=2, default=str))
    return 0


def _import_firebase(args: argparse.Namespace) -> int:
    from components.publish import firebase_import

    summary = firebase_import.import_firebase(args.export, args.files, bucket=args.bucket, channel=args.channel,
                                              task=args.task, min_app_version=args.min_app_version,
                                              check_only=args.check)
    print(json.dumps(summary, indent=2, default=str))
    return 0

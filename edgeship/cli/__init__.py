"""The `edgeship` command line: one entry point, one subcommand module per area.

``edgeship --help`` shows USER_DESCRIPTION; every flag's default is shown in its help.

Each module in COMMAND_MODULES exposes ``register(subparsers)``, which adds its subcommands and
sets ``func`` on each parser. Registration must stay cheap: command modules import TensorFlow
and cloud clients inside their handlers, never at module level.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = (
    "edgeship.cli.commands.local",      # local up | down | status
    "edgeship.cli.commands.data",       # data generate | inspect
    "edgeship.cli.commands.train",      # train | qat
    "edgeship.cli.commands.quantize",   # quantize
    "edgeship.cli.commands.evaluate",   # evaluate
    "edgeship.cli.commands.autoquant",  # autoquant
    "edgeship.cli.commands.publish",    # publish | channel | watch | cache
    "edgeship.cli.commands.models",     # models list | versions | unpublish | import-firebase
    "edgeship.cli.commands.pipeline",   # run | pipeline compile | submit | schedule
)


USER_DESCRIPTION = """\
Train an on-device object detector on your photos, fine-tune it with quantization-aware training,
convert it to every TFLite scheme and Core ML, evaluate each on the converted model itself (COCO
mAP, size, latency), pick the one within your accuracy budget, and publish it to Cloud Storage,
where a Cloud Function registers it in Firestore for your apps to download.

Start with `edgeship run` (the whole pipeline against the local cloud stack), or run the steps one
by one: data, train, qat, quantize, evaluate, autoquant, publish."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has a meaningful one and its help does not say it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or default == []
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every (sub)parser shows defaults in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


class UserError(Exception):
    """An error caused by input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from edgeship import __version__

    parser = _Parser(prog="edgeship", description=USER_DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # area not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"edgeship {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

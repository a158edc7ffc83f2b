"""The `edgeship` command line: one entry point, one subcommand module per area.

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
    "edgeship.cli.commands.publish",    # publish | channel | watch
    "edgeship.cli.commands.pipeline",   # run | pipeline compile | submit | schedule
)


class UserError(Exception):
    """An error caused by input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeship", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
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

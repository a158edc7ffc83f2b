"""CLI subcommand modules; see edgeship.cli.COMMAND_MODULES."""

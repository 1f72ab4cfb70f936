"""One module per `sweep` subcommand (see sweep/cli.py)."""

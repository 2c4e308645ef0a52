"""The ``fanout`` command: argument parsing and command handlers only."""

from fanout.cli.main import main

__all__ = ["main"]

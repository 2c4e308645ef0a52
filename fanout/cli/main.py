"""The ``fanout`` command line.

Exit codes scripts can rely on: 0 success, 1 runtime failure, 2 bad usage or configuration,
141 the reader of the output went away (``fanout … | head``: quiet, as Unix tools end on
SIGPIPE).
Every command but ``check-config`` first checks that a Kafka broker answers, and says in one
line what is wrong if none does (exit 1). Secrets are masked in everything printed or logged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from fanout.cli import ops as cli_ops
from fanout.cli.repair import add_repair
from fanout.cli.support import fail
from fanout.cli.verify import add_verify
from fanout.errors import ConfigError
from fanout.redact import masked, secret_values
from fanout.runtime.kafka import KafkaUnreachable
from fanout.runtime.logs import configure_logging
from fanout.settings import SINK_NAMES, Settings, load_settings, require_subscription

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_READER_GONE = 128 + 13  # what a shell reports for a tool ended by SIGPIPE
Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """Whoever read our output stopped reading (``| head -1``): say nothing more. Python ignores
    SIGPIPE (a write raises instead), and restoring it would let a client that hangs up on the
    health server kill a worker, so the error is caught here. stdout and stderr go to /dev/null
    so the interpreter's final flush of what is still buffered does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        # a stream without a descriptor (replaced, closed) is left as it is
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return EXIT_READER_GONE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging, secret_values(settings))
        command: Command = args.command
        return command(args, settings)
    except ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KafkaUnreachable as exc:
        return fail(str(exc), EXIT_FAILURE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout",
        description="Fan Debezium change events from Kafka out to Elasticsearch, ClickHouse "
        "and PostgreSQL, each sink its own consumer group.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML settings file (default: $FANOUT_CONFIG); FANOUT_* env vars override it",
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_check_config(commands)
    cli_ops.add_commands(commands)  # backfill, dlq, lag, offsets
    add_verify(commands)
    add_repair(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="consume and deliver until SIGTERM/SIGINT",
        description="Consume the configured topics and keep the sinks in step. Without --sink, "
        "every enabled sink runs in this process; in production run one sink per process.",
    )
    run.add_argument("--sink", choices=SINK_NAMES, help="run only this sink")
    run.set_defaults(command=_run)


def _add_check_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check-config",
        help="validate the settings and print them (secrets masked)",
        description="Load the YAML file and FANOUT_* env vars, validate them, print the result "
        "as JSON with secrets masked. Exit 2 naming the bad key if they are invalid.",
    )
    check.set_defaults(command=_check_config)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.runtime.app import App, run_until_signalled
    from fanout.runtime.kafka import probe

    names = [args.sink] if args.sink else settings.sinks.enabled()
    if not names:
        raise ConfigError("sinks: no sink is enabled; set sinks.<name>.enabled or pass --sink")
    require_subscription(settings)
    probe(settings.kafka)
    return run_until_signalled(App(settings, names))


def _check_config(_args: argparse.Namespace, settings: Settings) -> int:
    require_subscription(settings)
    dumped = settings.model_dump(mode="json", by_alias=True)
    print(json.dumps(masked(dumped, secrets=secret_values(settings)), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

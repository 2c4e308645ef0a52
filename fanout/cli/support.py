"""Pieces shared by the operator commands' argument parsers and handlers (``fanout.cli.ops``)."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeAlias

from confluent_kafka import KafkaException

from fanout.errors import ConfigError, FanoutError
from fanout.ops.offsets import RefusedError, parse_time
from fanout.redact import mask_text
from fanout.runtime.kafka import probe
from fanout.settings import SINK_NAMES, Settings

# 0-2 as in fanout.cli (not imported from there: fanout.cli imports the operator commands).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_REFUSED, EXIT_INCOMPLETE = 0, 1, 2, 3, 4
Command = Callable[[argparse.Namespace, Settings], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

TIME_HELP = "ISO 8601 (2025-01-31T02:00:00Z; no zone = UTC) or a duration ago (90s, 15m, 2h, 7d)"


def guarded(command: Command) -> Command:
    """Turns the failures an operator can act on into a message and an exit code. Checks first
    that a Kafka broker answers (``fanout.runtime.kafka.KafkaUnreachable``: exit 1, one line)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, settings: Settings) -> int:
        probe(settings.kafka)
        try:
            return command(args, settings)
        except ConfigError:
            raise  # fanout.cli.main: exit 2
        except RefusedError as exc:
            return fail(f"refused: {exc}", EXIT_REFUSED)
        except KafkaException as exc:
            return fail(f"Kafka: {exc.args[0]}", EXIT_FAILURE)
        except (FanoutError, TimeoutError) as exc:
            return fail(f"{type(exc).__name__}: {exc}", EXIT_FAILURE)

    return run


def fail(message: str, code: int) -> int:
    print(f"fanout: {mask_text(message)}", file=sys.stderr)
    return code


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def time_arg(text: str) -> str:
    try:
        parse_time(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def start_arg(text: str) -> str:
    return text if text == "earliest" else time_arg(text)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        print(f"fanout: {signal.Signals(signum).name}: stopping", file=sys.stderr)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def sink_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--sink", choices=SINK_NAMES, required=required, help="the sink whose group/DLQ to use"
    )


def json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON document on stdout"
    )

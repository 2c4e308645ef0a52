"""Operator commands of the ``fanout`` CLI: ``backfill``, ``dlq ls|show|replay``, ``lag``,
``offsets reset``. Registered by ``fanout.cli.build_parser`` through :func:`add_commands`.

Exit codes (the same for every command; docs/OPERATIONS.md has the table):
0 done; 1 failure (Kafka or the sink unreachable, a crash); 2 bad usage or configuration;
3 refused as unsafe right now (the consumer group has active members); 4 finished but not
everything got done (a backfill interrupted before its bound, replayed entries that failed
again). With ``--json`` the one JSON document on stdout is the result; progress and logs go to
stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import time
from collections.abc import Callable
from itertools import islice
from types import FrameType
from typing import TypeAlias

from confluent_kafka import KafkaException

from fanout import dlq_tools
from fanout.backfill import Backfill, BackfillRequest
from fanout.dlq_replay import Replayer, ReplaySummary
from fanout.dlq_tools import Filters, Selected, parse_ref, render_table
from fanout.errors import ConfigError, RetryableError
from fanout.kafka import group_id
from fanout.lag import measure, render_text, sinks_to_report
from fanout.offsets import (
    KafkaOffsets,
    RefusedError,
    ResetPlan,
    apply_reset,
    iso_ms,
    parse_time,
    plan_reset,
    refuse_if_active,
)
from fanout.settings import SINK_NAMES, Settings, require_subscription

# The same values as fanout.cli (not imported from there: fanout.cli imports this module).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_REFUSED, EXIT_INCOMPLETE = 0, 1, 2, 3, 4
Command = Callable[[argparse.Namespace, Settings], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

TIME_HELP = "ISO 8601 (2025-01-31T02:00:00Z; no zone = UTC) or a duration ago (90s, 15m, 2h, 7d)"


def add_commands(commands: Subparsers) -> None:
    _add_backfill(commands)
    _add_dlq(commands)
    _add_lag(commands)
    _add_offsets(commands)


def _guarded(command: Command) -> Command:
    """Turns the failures an operator can act on into a message and an exit code."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return command(args, settings)
        except RefusedError as exc:
            return _fail(f"refused: {exc}", EXIT_REFUSED)
        except KafkaException as exc:
            return _fail(f"Kafka: {exc.args[0]}", EXIT_FAILURE)
        except (RetryableError, TimeoutError) as exc:
            return _fail(str(exc), EXIT_FAILURE)

    return run


def _fail(message: str, code: int) -> int:
    print(f"fanout: {message}", file=sys.stderr)
    return code


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _time_arg(text: str) -> str:
    try:
        parse_time(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _start_arg(text: str) -> str:
    return text if text == "earliest" else _time_arg(text)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        print(f"fanout: {signal.Signals(signum).name}: stopping", file=sys.stderr)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _sink_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--sink", choices=SINK_NAMES, required=required, help="the sink whose group/DLQ to use"
    )


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON document on stdout"
    )


# -- backfill ----------------------------------------------------------------------------------


def _add_backfill(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "backfill",
        help="deliver a sink's topics again from the start (or a time), then exit",
        description="Re-deliver the configured topics to one sink through its normal write path "
        "(version-guarded, safe beside the live consumer), in the consumer group "
        "<group_prefix>-<sink>-backfill-<id>, up to the end offsets captured when this "
        "backfill first started. Exits 0 once every partition reached its end. Killed or "
        "interrupted, it continues where it stopped when run again with the same id; a "
        "finished backfill deletes its group. Progress goes to stderr: a bar on a terminal, "
        "a line every 10 s otherwise.",
    )
    _sink_arg(parser)
    parser.add_argument(
        "--from",
        dest="start",
        default="earliest",
        type=_start_arg,
        metavar="earliest|TIME",
        help=f"where to start: earliest (default) or the first record at/after a time: {TIME_HELP}",
    )
    parser.add_argument(
        "--tables",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="only these source tables (globs on schema.table, e.g. 'inventory.*'), on top of "
        "the sink's routing",
    )
    parser.add_argument(
        "--id",
        dest="backfill_id",
        metavar="ID",
        help="backfill id ([A-Za-z0-9._-]); default: a fingerprint of --sink/--from/--tables, "
        "so the same command resumes the same backfill",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        metavar="N",
        help="records per batch for this run (default: sinks.<sink>.batch.max_events)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines"),
        default="auto",
        help="bar: redrawn line; lines: a plain line every 10 s; auto: bar on a terminal",
    )
    _json_arg(parser)
    parser.set_defaults(command=_guarded(_backfill))


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    require_subscription(settings)
    request = BackfillRequest(
        sink=args.sink,
        start=args.start,
        tables=tuple(args.tables),
        backfill_id=args.backfill_id,
        batch_size=args.batch_size,
    )
    interactive = None if args.progress == "auto" else args.progress == "bar"
    backfill = Backfill(settings, request, sys.stderr, interactive)
    _on_signals(backfill.stop)
    result = backfill.run()
    if args.json:
        _print_json(result.as_json())
    elif not result.complete:
        print(f"backfill {result.backfill_id} interrupted; run the same command to continue")
    if result.complete:
        return EXIT_OK
    return EXIT_INCOMPLETE


# -- dlq ---------------------------------------------------------------------------------------


def _add_dlq(commands: Subparsers) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, show and replay a sink's dead-letter queue",
        description="The dead-letter queue <dlq_prefix>.<sink> holds records the sink could "
        "not take, with the reason in headers. Entries are named <partition>:<offset>.",
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    ls = actions.add_parser(
        "ls",
        help="list entries",
        description="List DLQ entries (oldest first) with their stage, error, source table, "
        "origin and whether they were replayed. Reads only; commits nothing.",
    )
    _sink_arg(ls)
    _filter_args(ls)
    ls.add_argument("--limit", type=_positive, metavar="N", help="list at most N entries")
    _json_arg(ls)
    ls.set_defaults(command=_guarded(_dlq_ls))

    show = actions.add_parser(
        "show",
        help="print one entry in full",
        description="Print one entry: all headers, the key and the value (pretty-printed JSON).",
    )
    _sink_arg(show)
    show.add_argument("entry", type=_ref_arg, metavar="PARTITION:OFFSET", help="e.g. 0:42")
    _json_arg(show)
    show.set_defaults(command=_guarded(_dlq_show))

    replay = actions.add_parser(
        "replay",
        help="send entries through the sink again (after fixing the cause)",
        description="Decode, route and write the selected entries through the sink (with "
        "retries), as the live consumer would. Entries that fail again go back to the DLQ "
        "as new entries with fanout.attempts raised. Every handled entry is recorded in "
        "<dlq_prefix>.<sink>.replayed, so running replay again does not replay it twice. "
        "Without ENTRY arguments or filters, every entry not yet replayed is taken.",
    )
    _sink_arg(replay)
    replay.add_argument(
        "entries", nargs="*", type=_ref_arg, metavar="PARTITION:OFFSET", help="only these"
    )
    _filter_args(replay, pending=False)
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="decode and route only; write nothing to the sink, the DLQ or the ledger",
    )
    replay.add_argument(
        "--give-up-after",
        type=_positive,
        default=300,
        metavar="SECONDS",
        help="stop (exit 1) if the sink stays unreachable this long (default 300)",
    )
    _json_arg(replay)
    replay.set_defaults(command=_guarded(_dlq_replay))


def _ref_arg(text: str) -> tuple[int, int]:
    try:
        return parse_ref(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _filter_args(parser: argparse.ArgumentParser, pending: bool = True) -> None:
    parser.add_argument(
        "--error-class",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="only entries whose error class is one of these (e.g. MappingError DecodeError)",
    )
    parser.add_argument(
        "--stage",
        nargs="+",
        default=[],
        choices=("decode", "route", "write"),
        help="only entries that failed at one of these stages",
    )
    parser.add_argument(
        "--table",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="only entries of these source tables (globs on schema.table, from the decoded value)",
    )
    parser.add_argument(
        "--since",
        type=_time_arg,
        metavar="TIME",
        help=f"only entries that failed at/after TIME: {TIME_HELP}",
    )
    parser.add_argument(
        "--until", type=_time_arg, metavar="TIME", help="only entries that failed before TIME"
    )
    if pending:
        parser.add_argument("--pending", action="store_true", help="only entries not replayed yet")


def _filters(args: argparse.Namespace, pending_only: bool) -> Filters:
    return Filters(
        error_classes=tuple(args.error_class),
        stages=tuple(args.stage),
        tables=tuple(args.table),
        since_ms=None if args.since is None else parse_time(args.since),
        until_ms=None if args.until is None else parse_time(args.until),
        entries=frozenset(getattr(args, "entries", None) or ()),
        pending_only=pending_only,
    )


def _selection(args: argparse.Namespace, settings: Settings, pending_only: bool) -> list[Selected]:
    offsets = KafkaOffsets(settings.kafka)
    ledger = dlq_tools.read_ledger(settings.kafka, args.sink, offsets)
    entries = dlq_tools.read_entries(settings.kafka, args.sink, offsets)
    resolver = dlq_tools.TableResolver(settings.kafka)
    selected = dlq_tools.select(entries, _filters(args, pending_only), resolver, ledger)
    limit = getattr(args, "limit", None)
    return list(islice(selected, limit) if limit else selected)


def _dlq_ls(args: argparse.Namespace, settings: Settings) -> int:
    rows = _selection(args, settings, pending_only=args.pending)
    if args.json:
        _print_json([row.entry.summary(row.table, row.replayed) for row in rows])
    elif rows:
        print(render_table(rows))
    else:
        print("no entries", file=sys.stderr)
    return EXIT_OK


def _dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    offsets = KafkaOffsets(settings.kafka)
    entry = dlq_tools.read_entry(settings.kafka, args.sink, args.entry, offsets)
    if entry is None:
        return _fail(f"no DLQ entry {args.entry[0]}:{args.entry[1]} for {args.sink}", EXIT_FAILURE)
    ledger = dlq_tools.read_ledger(settings.kafka, args.sink, offsets)
    row = Selected(
        entry,
        dlq_tools.TableResolver(settings.kafka).table_of(entry),
        dlq_tools.is_replayed(entry, ledger),
    )
    if args.json:
        _print_json(entry.detail(row.table, row.replayed))
    else:
        print(dlq_tools.render_detail(row))
    return EXIT_OK


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    everything = _selection(args, settings, pending_only=False)
    pending = [row.entry for row in everything if not row.replayed]
    replayer = Replayer(settings, args.sink, args.dry_run, float(args.give_up_after))
    _on_signals(replayer.stop)
    summary = replayer.run(pending)
    summary.already_replayed = len(everything) - len(pending)
    if args.json:
        _print_json(summary.as_json())
    else:
        _print_replay(summary)
    return EXIT_INCOMPLETE if summary.count("failed") else EXIT_OK


def _print_replay(summary: ReplaySummary) -> None:
    for outcome in summary.outcomes:
        reason = ""
        if outcome.error_class:
            reason = f"  {outcome.stage}: {outcome.error_class}: {outcome.error}"
        print(f"{outcome.entry}  {outcome.outcome}{reason}")
    totals = summary.as_json()
    print(
        f"{'dry run: ' if summary.dry_run else ''}{totals['selected']} selected, "
        f"{totals['written']} written, {totals['failed']} failed again, "
        f"{totals['skipped']} skipped, {totals['already_replayed']} already replayed"
    )


# -- lag ---------------------------------------------------------------------------------------


def _add_lag(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "lag",
        help="how far each sink's consumer group is behind",
        description="Per sink group and partition: committed offset, end offset, lag, the time "
        "of the oldest unprocessed event, and the member consuming it. The numbers are those "
        "of kafka-consumer-groups --describe. Without --sink: every enabled sink.",
    )
    _sink_arg(parser, required=False)
    parser.add_argument(
        "--backfills", action="store_true", help="also report the sinks' running backfill groups"
    )
    _json_arg(parser)
    parser.set_defaults(command=_guarded(_lag))


def _lag(args: argparse.Namespace, settings: Settings) -> int:
    require_subscription(settings)
    offsets = KafkaOffsets(settings.kafka)
    sinks = sinks_to_report(settings, args.sink, offsets)
    report = measure(settings, offsets, sinks, with_backfills=args.backfills)
    if args.json:
        now = int(time.time() * 1000)
        _print_json({"measured_at": iso_ms(now), "groups": [g.as_json() for g in report]})
    else:
        print(render_text(report))
    return EXIT_OK


# -- offsets -----------------------------------------------------------------------------------


def _add_offsets(commands: Subparsers) -> None:
    offsets = commands.add_parser(
        "offsets",
        help="manage a sink's consumer-group offsets",
        description="Offsets of a sink's consumer group <group_prefix>-<sink>.",
    )
    actions = offsets.add_subparsers(dest="offsets_action", required=True, metavar="ACTION")
    reset = actions.add_parser(
        "reset",
        help="move a stopped sink's group to earliest, latest or a time",
        description="Set the committed offsets of the sink's group on every partition of the "
        "configured topics. Refused (exit 3) while the group has active members: stop the "
        "sink's consumers first. Prints the plan; applies it only with --yes (or after a "
        "confirmation on a terminal).",
    )
    _sink_arg(reset)
    reset.add_argument(
        "--to",
        required=True,
        type=_reset_target,
        metavar="earliest|latest|TIME",
        help=f"earliest, latest, or the first record at/after a time: {TIME_HELP}",
    )
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument("--yes", action="store_true", help="apply without asking")
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _json_arg(reset)
    reset.set_defaults(command=_guarded(_offsets_reset))


def _reset_target(text: str) -> str:
    return text if text in ("earliest", "latest") else _time_arg(text)


def _offsets_reset(args: argparse.Namespace, settings: Settings) -> int:
    require_subscription(settings)
    offsets = KafkaOffsets(settings.kafka)
    group = group_id(settings.kafka, args.sink)
    topics = offsets.topics(settings.kafka.subscription())
    refuse_if_active(offsets, group)
    plan = plan_reset(offsets, group, topics, args.to)
    applied = not args.dry_run and _confirmed(args, plan)
    if applied:
        apply_reset(offsets, plan)
    if args.json:
        _print_json({**plan.as_json(), "applied": applied})
    else:
        _print_plan(plan, applied)
    if args.dry_run or applied:
        return EXIT_OK
    return _fail("nothing changed: pass --yes to apply or --dry-run to only look", EXIT_USAGE)


def _confirmed(args: argparse.Namespace, plan: ResetPlan) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty() or args.json:
        return False
    _print_plan(plan, applied=False)
    answer = input(f"reset group {plan.group} to {plan.to}? type 'yes' to apply: ")
    return answer.strip().lower() == "yes"


def _print_plan(plan: ResetPlan, applied: bool) -> None:
    print(f"group {plan.group} -> {plan.to} ({'applied' if applied else 'not applied'})")
    print("TOPIC  PARTITION  CURRENT  NEW")
    for row in plan.rows:
        current = "-" if row.current is None else str(row.current)
        print(f"{row.topic}  {row.partition}  {current}  {row.target}")

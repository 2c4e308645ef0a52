"""Operator commands of the ``fanout`` CLI: ``backfill``, ``dlq ls|show|replay``, ``lag``,
``offsets reset``. Registered by ``fanout.cli.main.build_parser`` through :func:`add_commands`.

Exit codes (the same for every command; docs/OPERATIONS.md has the table):
0 done; 1 failure (Kafka or the sink unreachable, a crash); 2 bad usage or configuration;
3 refused as unsafe right now (the consumer group has active members); 4 finished but not
everything got done (a backfill interrupted before its bound, replayed entries that failed
again). With ``--json`` the one JSON document on stdout is the result; progress and logs go to
stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

from fanout.cli.dlq import add_dlq
from fanout.cli.support import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    TIME_HELP,
    Subparsers,
    fail,
    guarded,
    json_arg,
    on_signals,
    positive,
    print_json,
    sink_arg,
    start_arg,
    time_arg,
)
from fanout.ops.backfill import Backfill, BackfillRequest
from fanout.ops.lag import measure, render_text, sinks_to_report
from fanout.ops.offsets import (
    KafkaOffsets,
    ResetPlan,
    apply_reset,
    iso_ms,
    plan_reset,
    refuse_if_active,
)
from fanout.runtime.kafka import group_id
from fanout.settings import Settings, require_subscription


def add_commands(commands: Subparsers) -> None:
    _add_backfill(commands)
    add_dlq(commands)
    _add_lag(commands)
    _add_offsets(commands)


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
    sink_arg(parser)
    parser.add_argument(
        "--from",
        dest="start",
        default="earliest",
        type=start_arg,
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
        type=positive,
        metavar="N",
        help="records per batch for this run (default: sinks.<sink>.batch.max_events)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines"),
        default="auto",
        help="bar: redrawn line; lines: a plain line every 10 s; auto: bar on a terminal",
    )
    json_arg(parser)
    parser.set_defaults(command=guarded(_backfill))


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
    on_signals(backfill.stop)
    result = backfill.run()
    if args.json:
        print_json(result.as_json())
    elif not result.complete:
        print(f"backfill {result.backfill_id} interrupted; run the same command to continue")
    if result.complete:
        return EXIT_OK
    return EXIT_INCOMPLETE


# -- lag ---------------------------------------------------------------------------------------


def _add_lag(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "lag",
        help="how far each sink's consumer group is behind",
        description="Per sink group and partition: committed offset, end offset, lag, the time "
        "of the oldest unprocessed event, and the member consuming it. The numbers are those "
        "of kafka-consumer-groups --describe. Without --sink: every enabled sink.",
    )
    sink_arg(parser, required=False)
    parser.add_argument(
        "--backfills", action="store_true", help="also report the sinks' running backfill groups"
    )
    json_arg(parser)
    parser.set_defaults(command=guarded(_lag))


def _lag(args: argparse.Namespace, settings: Settings) -> int:
    require_subscription(settings)
    offsets = KafkaOffsets(settings.kafka)
    sinks = sinks_to_report(settings, args.sink, offsets)
    report = measure(settings, offsets, sinks, with_backfills=args.backfills)
    if args.json:
        now = int(time.time() * 1000)
        print_json({"measured_at": iso_ms(now), "groups": [g.as_json() for g in report]})
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
    sink_arg(reset)
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
    json_arg(reset)
    reset.set_defaults(command=guarded(_offsets_reset))


def _reset_target(text: str) -> str:
    return text if text in ("earliest", "latest") else time_arg(text)


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
        print_json({**plan.as_json(), "applied": applied})
    else:
        _print_plan(plan, applied)
    if args.dry_run or applied:
        return EXIT_OK
    return fail("nothing changed: pass --yes to apply or --dry-run to only look", EXIT_USAGE)


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

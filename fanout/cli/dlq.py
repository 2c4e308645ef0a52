"""``fanout dlq ls|show|replay``: the argument parsers and handlers (see ``fanout.cli.ops``)."""

from __future__ import annotations

import argparse
import sys
from itertools import islice

from fanout.cli.support import (
    EXIT_FAILURE,
    EXIT_INCOMPLETE,
    EXIT_OK,
    TIME_HELP,
    Subparsers,
    fail,
    guarded,
    json_arg,
    on_signals,
    positive,
    print_json,
    sink_arg,
    time_arg,
)
from fanout.ops import dlq as dlq_tools
from fanout.ops.dlq import Filters, Selected, parse_ref, render_table
from fanout.ops.offsets import KafkaOffsets, parse_time
from fanout.ops.replay import Replayer, ReplaySummary
from fanout.settings import Settings


def add_dlq(commands: Subparsers) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, show and replay a sink's dead-letter queue",
        description="The dead-letter queue <dlq_prefix>.<sink> holds records the sink could "
        "not take, with the reason in headers. Entries are named <partition>:<offset>.",
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    _add_ls(actions)
    _add_show(actions)
    _add_replay(actions)


def _add_ls(actions: Subparsers) -> None:
    ls = actions.add_parser(
        "ls",
        help="list entries",
        description="List DLQ entries (oldest first) with their stage, error, source table, "
        "origin and whether they were replayed. Reads only; commits nothing.",
    )
    sink_arg(ls)
    _filter_args(ls)
    ls.add_argument("--limit", type=positive, metavar="N", help="list at most N entries")
    json_arg(ls)
    ls.set_defaults(command=guarded(_dlq_ls))


def _add_show(actions: Subparsers) -> None:
    show = actions.add_parser(
        "show",
        help="print one entry in full",
        description="Print one entry: all headers, the key and the value (pretty-printed JSON).",
    )
    sink_arg(show)
    show.add_argument("entry", type=_ref_arg, metavar="PARTITION:OFFSET", help="e.g. 0:42")
    json_arg(show)
    show.set_defaults(command=guarded(_dlq_show))


def _add_replay(actions: Subparsers) -> None:
    replay = actions.add_parser(
        "replay",
        help="send entries through the sink again (after fixing the cause)",
        description="Decode, route and write the selected entries through the sink (with "
        "retries), as the live consumer would. Entries that fail again go back to the DLQ "
        "as new entries with fanout.attempts raised. Every handled entry is recorded in "
        "<dlq_prefix>.<sink>.replayed, so running replay again does not replay it twice. "
        "Entries stored truncated are replayed from the whole record, read back from their "
        "origin; where it is gone (retention, compaction) they are reported unavailable and "
        "left pending. Without ENTRY arguments or filters, every entry not yet replayed is taken.",
    )
    sink_arg(replay)
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
        type=positive,
        default=300,
        metavar="SECONDS",
        help="stop (exit 1) if the sink stays unreachable this long (default 300)",
    )
    json_arg(replay)
    replay.set_defaults(command=guarded(_dlq_replay))


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
        type=time_arg,
        metavar="TIME",
        help=f"only entries that failed at/after TIME: {TIME_HELP}",
    )
    parser.add_argument(
        "--until", type=time_arg, metavar="TIME", help="only entries that failed before TIME"
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
        print_json([row.entry.summary(row.table, row.replayed) for row in rows])
    elif rows:
        print(render_table(rows))
    else:
        print("no entries", file=sys.stderr)
    return EXIT_OK


def _dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    offsets = KafkaOffsets(settings.kafka)
    entry = dlq_tools.read_entry(settings.kafka, args.sink, args.entry, offsets)
    if entry is None:
        return fail(f"no DLQ entry {args.entry[0]}:{args.entry[1]} for {args.sink}", EXIT_FAILURE)
    ledger = dlq_tools.read_ledger(settings.kafka, args.sink, offsets)
    row = Selected(
        entry,
        dlq_tools.TableResolver(settings.kafka).table_if_known(entry),
        dlq_tools.is_replayed(entry, ledger),
    )
    avro = dlq_tools.AvroView(settings.kafka)  # an Avro original shown decoded
    if args.json:
        print_json(entry.detail(row.table, row.replayed, avro))
    else:
        print(dlq_tools.render_detail(row, avro))
    return EXIT_OK


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    everything = _selection(args, settings, pending_only=False)
    pending = [row.entry for row in everything if not row.replayed]
    replayer = Replayer(settings, args.sink, args.dry_run, float(args.give_up_after))
    on_signals(replayer.stop)
    summary = replayer.run(pending)
    summary.already_replayed = len(everything) - len(pending)
    if args.json:
        print_json(summary.as_json())
    else:
        _print_replay(summary)
    incomplete = summary.count("failed") or summary.count("unavailable") or summary.interrupted
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


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
        + (
            f", {totals['unavailable']} unavailable (stored truncated, the whole record gone"
            " from its origin: not replayed, still pending)"
            if totals["unavailable"]
            else ""
        )
        + (" (interrupted: run it again for the rest)" if summary.interrupted else "")
    )

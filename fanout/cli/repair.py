"""``fanout repair``: re-emit the keys a sink holds differently from the source.

Exit codes: 0 the sink is equal to the source (repaired, or nothing to do; with ``--dry-run``
the plan was printed), 1 still different when the time ran out (or a store unreachable),
2 bad usage or configuration (no ``source.signal_table``)."""

from __future__ import annotations

import argparse
import sys

from fanout.cli.support import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    guarded,
    json_arg,
    positive,
    print_json,
)
from fanout.settings import SINK_NAMES, Settings


def add_repair(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "repair",
        help="re-emit the keys a sink holds differently from the source (Debezium signal)",
        description="Verify the sink against the source, then ask the connector for an "
        "incremental snapshot of exactly the keys that are missing or different (an "
        "execute-snapshot signal with additional-conditions in source.signal_table), delete "
        "in the sink the keys the source does not have, and compare those keys again until "
        "they are equal (exit 0) or --timeout passes (exit 1).",
    )
    parser.add_argument("--sink", choices=SINK_NAMES, required=True, help="the sink to repair")
    parser.add_argument(
        "--tables", nargs="+", default=[], metavar="TABLE", help="schema.table names or globs"
    )
    parser.add_argument(
        "--max-keys",
        type=positive,
        default=1000,
        metavar="N",
        help="keys repaired per table in one run (default 1000; run again for more)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for the repaired keys to arrive (default 300)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the signals and deletes, change nothing"
    )
    json_arg(parser)
    parser.set_defaults(command=guarded(_repair))


def _repair(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here, not at the top: `fanout run` must not load every store's client.
    from fanout.ops.repair import apply_repair, plan_repair, signal_table, wait_repaired
    from fanout.ops.verify.run import Verification, VerifyRequest

    request = VerifyRequest(args.sink, tuple(args.tables), max_keys=args.max_keys)
    with Verification(settings, request) as verification:
        signal_table(verification)  # a missing setting fails before the long part
        found = verification.run(sys.stderr)
        before = found.as_json()  # the report is updated in place by the re-checks
        before_text = found.render_text()
        plan = plan_repair(verification)
        after = None
        if not args.dry_run and not plan.empty:
            apply_repair(verification, plan)
            after = wait_repaired(verification, args.timeout)
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "before": before,
                "plan": plan.as_json(),
                "after": None if after is None else after.as_json(),
            }
        )
    else:
        print(before_text)
        print(plan.render_text())
        if after is not None:
            print(after.render_text())
    repaired = found.equal if after is None else after.equal
    return EXIT_OK if repaired or args.dry_run else EXIT_FAILURE

"""``fanout verify``: compare the source with a sink (or the sinks with each other).

Exit codes: 0 equal, 1 different (or a store unreachable), 2 bad usage or configuration. The
summary table (or with ``--json`` one JSON document) goes to stdout; progress to stderr on a
terminal."""

from __future__ import annotations

import argparse
import sys
import time

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

EXIT_DIFFERENT = EXIT_FAILURE


def add_verify(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "verify",
        help="compare the source PostgreSQL with a sink's targets, key by key",
        description="Compare every table the sink takes (its topics and routing; --tables to "
        "narrow) between the source (settings section source:) and the sink: row counts, "
        "then hashes over key ranges, narrowed to the keys that are missing, extra or "
        "different (and which columns). Safe while the stream runs: differences are compared "
        "again once the sink's group has caught up. Exit 0 equal, 1 different, 2 bad "
        "configuration.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--sink", choices=SINK_NAMES, help="the sink to compare with the source")
    which.add_argument(
        "--across",
        action="store_true",
        help="compare the enabled sinks with each other (no source needed): counts and per-key "
        "hashes of their live rows",
    )
    parser.add_argument(
        "--tables", nargs="+", default=[], metavar="TABLE", help="schema.table names or globs"
    )
    parser.add_argument(
        "--page-size", type=positive, default=2000, metavar="N", help="rows per page (default 2000)"
    )
    parser.add_argument(
        "--max-keys",
        type=positive,
        default=1000,
        metavar="N",
        help="differing keys listed per table (default 1000)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for the sink to catch up before re-checking differences "
        "(default 120)",
    )
    parser.add_argument(
        "--pushgateway",
        metavar="URL",
        help="also push the result as fanout_verify_* metrics to this Prometheus Pushgateway "
        "(job fanout-verify, grouped by sink)",
    )
    json_arg(parser)
    parser.set_defaults(command=guarded(_verify))


# The verify modules are imported when the command runs: they pull in every store's client
# (Elasticsearch's brings numpy and pyarrow), which `fanout run` must not pay for at start-up.
def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.ops.verify.metrics import push
    from fanout.ops.verify.run import VerifyRequest, verify

    if args.across:
        return _across(args, settings)
    request = VerifyRequest(
        args.sink, tuple(args.tables), args.page_size, args.max_keys, args.settle_timeout
    )
    started = time.monotonic()
    report = verify(settings, request, sys.stderr)
    if args.pushgateway:
        push(args.pushgateway, report, time.monotonic() - started)
    if args.json:
        print_json(report.as_json())
    else:
        print(report.render_text())
    return EXIT_OK if report.equal else EXIT_DIFFERENT


def _across(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.ops.verify.across import verify_across

    reports = verify_across(
        settings, tuple(args.tables), args.page_size, args.max_keys, args.settle_timeout
    )
    equal = all(report.equal for report in reports)
    if args.json:
        print_json({"equal": equal, "pairs": [report.as_json() for report in reports]})
    else:
        print("\n\n".join(report.render_text() for report in reports))
    return EXIT_OK if equal else EXIT_DIFFERENT

"""``python -m bench run``: the whole benchmark on the local stack, results in bench/results/.

``python -m bench profile --sink NAME``: py-spy profile of one sink draining a fresh stream.
"""

from __future__ import annotations

import argparse
import sys

from bench import runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="generate, produce once, measure, write results")
    run.add_argument("--events", type=int, default=1_000_000, help="change events to produce")
    run.add_argument("--keys", type=int, default=100_000, help="distinct keys over all tables")
    run.add_argument("--runs", type=int, default=3, help="runs of each configuration (>= 3)")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument(
        "--only",
        default=",".join(runner.CONFIGS),
        help=f"comma-separated subset of {','.join(runner.CONFIGS)}: raw consume, direct loads, "
        "each sink alone, all3 = all three sinks at once in three processes (production), "
        "all = all three in one process, snapshot = each sink alone on the final rows as a "
        "Debezium snapshot (op r), connect = Kafka Connect peer, latency = steady rate",
    )
    run.add_argument(
        "--variant",
        action="append",
        metavar=runner.VARIANT_SYNTAX,
        help="also measure the fanout configurations (sinks, all3, all, snapshot, latency) with "
        "these worker settings, interleaved with the defaults in every round; PATH is dotted "
        "(sinks.*.batch.max_wait_ms, kafka.prefetch_max_kbytes, kafka.fetch_max_bytes), "
        "VALUE is JSON; @TREE starts the variant's workers from another checkout's fanout and "
        "sinks (e.g. 'before:@/work/baseline'; ratios 'postgres / postgres [before]' are "
        "after/before); the item stream.placeholders=SHARE drains the same changes from "
        "another topic where SHARE of the updates carry Debezium's unavailable-value "
        "placeholder in their unchanged text/json/array columns (e.g. 'toast10:"
        "stream.placeholders=0.1'); repeatable",
    )
    run.add_argument("--latency-rate", type=int, default=2000, help="events/s of the steady run")
    run.add_argument("--latency-seconds", type=int, default=60)
    run.add_argument("--out", default=None, help="results name (default: the date)")
    profile = commands.add_parser("profile", help="py-spy record one sink while it drains")
    profile.add_argument(
        "--sink", required=True, choices=("postgres", "elasticsearch", "clickhouse")
    )
    profile.add_argument("--events", type=int, default=100_000)
    profile.add_argument("--keys", type=int, default=100_000)
    profile.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.command == "run":
        return runner.run(args, " ".join(["python -m bench", *(argv or sys.argv[1:])]))
    return runner.profile(args)


if __name__ == "__main__":
    sys.exit(main())

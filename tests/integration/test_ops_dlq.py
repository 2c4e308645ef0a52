"""`fanout dlq ls|show|replay` end to end: records dead-lettered by a real worker, replayed
through the real PostgreSQL sink after the cause is fixed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.ops_support import fanout, write_config
from tests.integration.runtime_support import Pipeline, all_tables_state, diff, new_pipeline, oracle
from tests.support.debezium import CUSTOMERS, Message, generate_stream, produce_stream
from tests.support.pipeline import WorkerProcess, create_topic, produce, read_topic, wait_caught_up

BROKEN_ROUTING = {"tables": {CUSTOMERS.name: {"drop": ["id"]}}}  # drops the key: MappingError


@dataclass
class DeadLettered:
    line: Pipeline
    messages: list[Message]
    customers: int  # customer events in the DLQ
    fixed: Path  # config with the cause fixed
    broken: Path  # config still dropping the key

    @property
    def total(self) -> int:
        return self.customers + 1  # + the undecodable record


@pytest.fixture
def dead(
    pg_conninfo: dict[str, Any], kafka_bootstrap: str, tmp_path: Path
) -> Iterator[DeadLettered]:
    """A sink whose routing dropped the customers' key column: every customer event and one
    undecodable record are in its DLQ, everything else is written."""
    line = new_pipeline(pg_conninfo, tmp_path)
    create_topic(line.topic, partitions=3)
    messages = list(generate_stream(900, n_keys=60, seed=21))
    produce_stream(line.topic, messages)
    produce(line.topic, [(b'{"id": 1}', b"{not json")])
    broken = line.config()
    broken["sinks"]["postgres"]["routing"] = BROKEN_ROUTING
    worker = WorkerProcess("postgres", broken, tmp_path).start()
    try:
        wait_caught_up(line.group, [line.topic])
    finally:
        assert worker.stop() == 0
    customers = sum(1 for m in messages if m.value is not None and m.event.spec is CUSTOMERS)
    read_topic(line.dlq_topic, expect=customers + 1)
    yield DeadLettered(
        line,
        messages,
        customers,
        write_config(tmp_path, line.config()),
        write_config(tmp_path, broken),
    )


def ls(config: Path, *filters: str) -> list[dict[str, Any]]:
    result = fanout(config, "dlq", "ls", "--sink", "postgres", "--json", *filters)
    assert result.code == 0, result
    entries: list[dict[str, Any]] = result.json()
    return entries


def test_ls_lists_entries_with_their_headers_and_filters_them(dead: DeadLettered) -> None:
    entries = ls(dead.fixed)
    assert len(entries) == dead.total
    undecodable = [e for e in entries if e["stage"] == "decode"]
    assert len(undecodable) == 1 and undecodable[0]["error_class"] == "DecodeError"
    assert undecodable[0]["table"] is None
    routed = [e for e in entries if e["stage"] == "route"]
    assert {e["table"] for e in routed} == {CUSTOMERS.name}
    assert {e["error_class"] for e in routed} == {"MappingError"}
    for entry in entries:
        assert entry["origin"]["topic"] == dead.line.topic
        assert entry["attempts"] == 1 and entry["replayed"] is False
        assert entry["failed_at"].endswith("Z") and entry["entry"] == f"0:{entry['offset']}"

    assert len(ls(dead.fixed, "--error-class", "DecodeError")) == 1
    assert len(ls(dead.fixed, "--table", "inventory.cust*")) == dead.customers
    assert len(ls(dead.fixed, "--stage", "decode", "route", "--limit", "5")) == 5
    assert ls(dead.fixed, "--since", "2999-01-01T00:00:00Z") == []
    assert len(ls(dead.fixed, "--until", "2999-01-01")) == dead.total
    assert len(ls(dead.fixed, "--since", "1h")) == dead.total

    text = fanout(dead.fixed, "dlq", "ls", "--sink", "postgres", "--error-class", "DecodeError")
    assert text.code == 0, text
    header, row = text.stdout.splitlines()
    assert header.split()[:2] == ["ENTRY", "FAILED"]
    assert "DecodeError" in row and f"{dead.line.topic}[" in row


def test_show_prints_one_entry_in_full(dead: DeadLettered) -> None:
    (undecodable,) = ls(dead.fixed, "--stage", "decode")
    result = fanout(dead.fixed, "dlq", "show", "--sink", "postgres", undecodable["entry"], "--json")
    assert result.code == 0, result
    shown = result.json()
    assert shown["key"] == {"id": 1} and shown["value"] == "{not json"
    assert shown["headers"]["fanout.error.stage"] == "decode"
    assert shown["headers"]["fanout.sink"] == "postgres"

    customer = ls(dead.fixed, "--table", CUSTOMERS.name, "--limit", "1")[0]
    text = fanout(dead.fixed, "dlq", "show", "--sink", "postgres", customer["entry"])
    assert text.code == 0, text
    assert "fanout.error.class: MappingError" in text.stdout
    assert '"payload": {' in text.stdout  # the value, pretty-printed

    missing = fanout(dead.fixed, "dlq", "show", "--sink", "postgres", "0:999999")
    assert missing.code == 1 and "no DLQ entry 0:999999" in missing.stderr


def replay(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = fanout(config, "dlq", "replay", "--sink", "postgres", "--json", *args)
    assert result.code in (0, 4), result
    summary: dict[str, Any] = result.json()
    return result.code, summary


def test_replay_after_the_fix_writes_the_records_and_a_second_replay_is_a_no_op(
    dead: DeadLettered, pg: psycopg.Connection[Any]
) -> None:
    code, dry = replay(dead.fixed, "--dry-run", "--table", CUSTOMERS.name)
    assert (code, dry["dry_run"], dry["written"]) == (0, True, dead.customers)
    assert all_tables_state(pg, dead.line.schema)[CUSTOMERS.name] == {}  # nothing written
    assert len(ls(dead.fixed, "--pending")) == dead.total  # nothing recorded

    code, first = replay(dead.fixed, "--table", CUSTOMERS.name)
    assert (code, first["selected"], first["written"]) == (0, dead.customers, dead.customers)
    actual, expected = all_tables_state(pg, dead.line.schema), oracle(dead.messages)
    assert actual == expected, diff(actual, expected)

    code, second = replay(dead.fixed, "--table", CUSTOMERS.name)
    assert (code, second["selected"], second["already_replayed"]) == (0, 0, dead.customers)
    code, unfiltered = replay(dead.fixed)  # without filters: only the one never replayed
    assert (code, unfiltered["selected"], unfiltered["failed"]) == (4, 1, 1)
    assert len(ls(dead.fixed, "--pending")) == 1  # the undecodable record, back as a new entry
    assert all_tables_state(pg, dead.line.schema) == expected


def test_entries_that_fail_again_return_with_their_attempts_raised(
    dead: DeadLettered, pg: psycopg.Connection[Any]
) -> None:
    code, again = replay(dead.broken, "--table", CUSTOMERS.name)
    assert (code, again["failed"], again["written"]) == (4, dead.customers, 0)
    entries = ls(dead.broken, "--table", CUSTOMERS.name)
    assert len(entries) == 2 * dead.customers
    old, new = entries[: dead.customers], entries[dead.customers :]
    assert all(e["replayed"] and e["attempts"] == 1 for e in old)
    assert all(not e["replayed"] and e["attempts"] == 2 for e in new)
    assert [e["origin"] for e in new] == [e["origin"] for e in old]  # the same source records

    code, third = replay(dead.broken, "--table", CUSTOMERS.name)  # only the new entries
    assert (code, third["selected"], third["failed"]) == (4, dead.customers, dead.customers)
    assert {e["attempts"] for e in ls(dead.broken, "--pending", "--table", "*")} == {3}

    code, fixed = replay(dead.fixed, "--table", CUSTOMERS.name)
    assert (code, fixed["written"]) == (0, dead.customers)
    actual, expected = all_tables_state(pg, dead.line.schema), oracle(dead.messages)
    assert actual == expected, diff(actual, expected)

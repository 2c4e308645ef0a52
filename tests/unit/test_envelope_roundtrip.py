"""The generator's messages, decoded, give back the generator's logical events — every format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanout.debezium.envelope import Decoder
from fanout.events import ChangeEvent, Json, Op
from tests.support.debezium import (
    ALL_TABLES,
    Message,
    MessageFormat,
    expected_state,
    generate_stream,
)

FORMATS = {
    "postgres": MessageFormat(),
    "postgres-schemaless": MessageFormat(schemas=False),
    "postgres-source-types": MessageFormat(source_types=True),
    "mysql": MessageFormat(connector="mysql"),
    "mysql-schemaless": MessageFormat(connector="mysql", schemas=False),
    "flat-tombstones": MessageFormat(flatten=True),
    "flat-schemaless": MessageFormat(flatten=True, schemas=False),
    "flat-rewrite-lsn": MessageFormat(
        flatten=True, delete_handling="rewrite", add_fields=("op", "schema", "table", "lsn")
    ),
    "flat-rewrite-with-tombstone": MessageFormat(
        flatten=True, delete_handling="rewrite-with-tombstone"
    ),
    "flat-mysql": MessageFormat(
        flatten=True, connector="mysql", add_fields=("db", "table", "source.ts_ms")
    ),
}


def decode_all(messages: list[Message]) -> list[ChangeEvent | None]:
    decoder = Decoder()
    return [
        decoder.decode(message.origin(topic=f"dbserver1.{message.event.table}", offset=offset))
        for offset, message in enumerate(messages)
    ]


def apply(events: list[ChangeEvent | None]) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Newest version per key wins, as a sink would apply them; a JSON column's text parsed, as
    the oracle holds it (that the text is the source's own: ``test_json_columns``)."""
    state: dict[str, dict[tuple[Any, ...], tuple[int, dict[str, Any] | None]]] = {}
    for event in events:
        if event is None:
            continue
        rows = state.setdefault(event.table, {})
        key = tuple(event.key.values())
        if event.op is Op.TRUNCATE:
            rows.clear()
        elif key not in rows or rows[key][0] <= event.version:
            rows[key] = (event.version, parsed_json(event.row))
    return {
        table: {key: row for key, (_, row) in rows.items() if row is not None}
        for table, rows in state.items()
    }


def parsed_json(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {name: json.loads(v.text) if type(v) is Json else v for name, v in row.items()}


@pytest.mark.parametrize("name", FORMATS)
def test_each_message_decodes_to_its_logical_event(name: str) -> None:
    fmt = FORMATS[name]
    messages = list(
        generate_stream(300, n_keys=20, tables=ALL_TABLES, seed=11, mix=(2, 5, 2), fmt=fmt)
    )
    for message, event in zip(messages, decode_all(messages), strict=True):
        if message.is_tombstone and fmt.deletes_in_band:
            assert event is None
            continue
        assert event is not None
        logical = message.event
        assert (event.op, event.table, event.version) == (
            logical.op,
            logical.table,
            message.version,
        )
        assert event.key == logical.key
        if fmt.schemas and event.row is not None:
            assert event.columns == logical.spec.expected_columns(fmt.source_types)


@pytest.mark.parametrize("name", FORMATS)
def test_decoded_stream_converges_to_the_oracle(name: str) -> None:
    fmt = FORMATS[name]
    messages = list(generate_stream(1_500, n_keys=30, tables=ALL_TABLES, seed=12, fmt=fmt))
    assert apply(decode_all(messages)) == expected_state(messages, schemas=fmt.schemas)


def test_truncates_round_trip() -> None:
    messages = list(generate_stream(2_000, n_keys=30, seed=13, truncate_rate=0.01))
    events = decode_all(messages)
    assert any(event is not None and event.op is Op.TRUNCATE for event in events)
    assert apply(events) == expected_state(messages)

"""The message generator and the oracle the integration tests, the demo and the bench rely on."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from fanout.events import Op
from tests.support._debezium_columns import encode_decimal, java_big_endian
from tests.support._debezium_source import binlog_version
from tests.support.debezium import (
    CUSTOMERS,
    ORDER_LINES,
    PRODUCTS,
    LogicalEvent,
    MessageFactory,
    MessageFormat,
    SourcePosition,
    expected_state,
    generate_events,
    generate_stream,
)


def payload(raw: bytes | None) -> Any:
    assert raw is not None
    return json.loads(raw)["payload"]


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = [(m.key, m.value) for m in generate_stream(300, n_keys=50, seed=7)]
    again = [(m.key, m.value) for m in generate_stream(300, n_keys=50, seed=7)]
    other = [(m.key, m.value) for m in generate_stream(300, n_keys=50, seed=8)]
    assert first == again
    assert first != other


def test_mix_is_roughly_the_requested_share() -> None:
    kinds = Counter(event.kind for event in generate_events(20_000, n_keys=100_000, seed=1))
    total = sum(kinds.values())
    assert abs(kinds["insert"] / total - 0.2) < 0.03
    assert abs(kinds["update"] / total - 0.7) < 0.03
    assert abs(kinds["delete"] / total - 0.1) < 0.03


def test_updates_and_deletes_touch_live_keys_and_deleted_keys_come_back() -> None:
    live: dict[str, set[tuple[Any, ...]]] = {}
    reinserted = 0
    deleted: set[tuple[str, tuple[Any, ...]]] = set()
    for event in generate_events(5_000, n_keys=40, seed=3, mix=(0.3, 0.4, 0.3)):
        keys = live.setdefault(event.table, set())
        key = event.spec.key_tuple(event.key)
        if event.kind == "insert":
            assert key not in keys
            reinserted += (event.table, key) in deleted
            keys.add(key)
        else:
            assert key in keys, f"{event.kind} of a key that is not live"
            if event.kind == "delete":
                keys.remove(key)
                deleted.add((event.table, key))
    assert reinserted > 50


def test_positions_strictly_increase() -> None:
    positions = [event.position for event in generate_events(5_000, seed=2)]
    for before, after in itertools.pairwise(positions):
        assert after.lsn > before.lsn
        assert after.ts_ms > before.ts_ms
        assert after.binlog_version > before.binlog_version


def test_composite_keys_spread_over_both_columns() -> None:
    keys = [ORDER_LINES.key_for(index) for index in range(12)]
    assert keys[0] == {"order_id": 1, "line_no": 1}
    assert keys[6] == {"order_id": 2, "line_no": 2}
    assert len({tuple(key.values()) for key in keys}) == 12


def test_oracle_on_a_hand_written_stream() -> None:
    position = SourcePosition.start()

    def event(kind: Any, key: int, name: str | None = None) -> LogicalEvent:
        nonlocal position
        position = SourcePosition(position.lsn + 1, position.ts_ms + 1, 1, 1, 0, 1)
        row = None if name is None else {"id": key, "first_name": name}
        return LogicalEvent(
            CUSTOMERS, kind, {} if kind == "truncate" else {"id": key}, row, position
        )

    stream = [
        event("insert", 1, "ann"),
        event("insert", 2, "bob"),
        event("update", 1, "anne"),
        event("delete", 2),
        event("insert", 3, "cid"),
    ]
    state = expected_state(stream)
    assert state == {
        "inventory.customers": {
            (1,): {"id": 1, "first_name": "anne"},
            (3,): {"id": 3, "first_name": "cid"},
        }
    }
    assert expected_state([*stream, event("truncate", 0), event("insert", 4, "dee")]) == {
        "inventory.customers": {(4,): {"id": 4, "first_name": "dee"}}
    }


def test_oracle_without_schemas_holds_the_json_encodings() -> None:
    messages = list(generate_stream(200, n_keys=20, tables=[PRODUCTS], seed=4))
    typed = expected_state(messages)["inventory.products"]
    encoded = expected_state(messages, schemas=False)["inventory.products"]
    assert typed.keys() == encoded.keys()
    row = next(row for row in typed.values() if row["price"] is not None)
    same_key = encoded[(row["id"],)]
    assert isinstance(row["price"], Decimal)
    assert same_key["price"] == encode_decimal(row["price"], 2)


def test_decimals_are_java_big_integer_bytes() -> None:
    assert java_big_endian(0) == b"\x00"
    assert java_big_endian(127) == b"\x7f"
    assert java_big_endian(128) == b"\x00\x80"
    assert java_big_endian(-128) == b"\x80"
    assert java_big_endian(-129) == b"\xff\x7f"
    assert base64.b64decode(encode_decimal(Decimal("-1.00"), 2)) == b"\x9c"  # -100


def test_envelope_messages_look_like_the_postgres_connector() -> None:
    messages = list(generate_stream(40, n_keys=5, tables=[CUSTOMERS], seed=5, mix=(1, 1, 1)))
    create = next(m for m in messages if m.event.kind == "insert")
    document = json.loads(create.value or b"")
    assert document["schema"]["name"] == "dbserver1.inventory.customers.Envelope"
    assert document["payload"]["op"] == "c"
    assert document["payload"]["source"]["lsn"] == create.version
    assert json.loads(create.key or b"")["payload"] == {"id": create.event.key["id"]}
    delete_at = next(i for i, m in enumerate(messages) if m.event.kind == "delete")
    assert payload(messages[delete_at].value)["op"] == "d"
    assert messages[delete_at + 1].is_tombstone


def test_schemas_off_writes_the_bare_payload() -> None:
    message = next(generate_stream(1, tables=[CUSTOMERS], fmt=MessageFormat(schemas=False)))
    document = json.loads(message.value or b"")
    assert set(document) >= {"before", "after", "source", "op"}
    assert json.loads(message.key or b"") == message.event.key


def test_mysql_source_block_and_packed_version() -> None:
    fmt = MessageFormat(connector="mysql")
    message = next(generate_stream(1, tables=[CUSTOMERS], fmt=fmt))
    source = payload(message.value)["source"]
    assert source["file"] == "mysql-bin.000003"
    assert message.version == binlog_version(3, source["pos"], source["row"])


@pytest.mark.parametrize(
    ("handling", "delete_values"),
    [("tombstone", [None]), ("rewrite", ["true"]), ("rewrite-with-tombstone", ["true", None])],
)
def test_flattened_deletes(handling: Any, delete_values: list[str | None]) -> None:
    factory = MessageFactory(MessageFormat(flatten=True, delete_handling=handling))
    delete = next(
        e for e in generate_events(50, n_keys=3, tables=[CUSTOMERS], seed=1) if e.kind == "delete"
    )
    found = [m.value and payload(m.value)["__deleted"] for m in factory.messages(delete)]
    assert found == delete_values


def test_truncate_events_clear_the_table_in_the_oracle() -> None:
    events = list(generate_events(2_000, n_keys=30, tables=[CUSTOMERS], seed=6, truncate_rate=0.01))
    assert any(event.op is Op.TRUNCATE for event in events)
    last_truncate = max(i for i, event in enumerate(events) if event.kind == "truncate")
    after = events[last_truncate + 1 :]
    assert expected_state(events)["inventory.customers"] == expected_state(after).get(
        "inventory.customers", {}
    )

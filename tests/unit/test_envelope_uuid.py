"""A uuid column takes only a UUID's text, in the forms every sink stores: otherwise PostgreSQL
and ClickHouse refuse the row and Elasticsearch stores it, and the sinks disagree."""

from __future__ import annotations

import pytest

from fanout.errors import DecodeError
from tests.unit._envelope_messages import decode_field

UUID_FIELD = {"type": "string", "optional": True, "name": "io.debezium.data.Uuid"}


@pytest.mark.parametrize(
    "text",
    [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  # as Debezium sends it
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    ],
)
def test_a_uuid_is_kept_as_sent(text: str) -> None:
    assert decode_field(UUID_FIELD, text)[0] == text


@pytest.mark.parametrize(
    "text",
    [
        "not-a-uuid",
        "",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",  # a digit short
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",  # PostgreSQL takes it, ClickHouse not
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ],
)
def test_text_that_is_not_a_uuid_is_refused_naming_the_column(text: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_field(UUID_FIELD, text)
    assert "column 'x': value does not match its schema (io.debezium.data.Uuid (string))" in str(
        caught.value
    )
    assert "not a UUID" in str(caught.value)

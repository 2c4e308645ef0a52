"""Debezium's placeholder for values it does not have: unchanged TOASTed columns.

With the default REPLICA IDENTITY, PostgreSQL's logical decoding does not send a TOASTed
column an UPDATE did not touch; Debezium writes its ``unavailable.value.placeholder``
(default ``__debezium_unavailable_value``) in its place: the text itself in text and JSON
columns, its bytes in bytea columns (base64 under JsonConverter), ``[placeholder]`` in arrays.

Such a column is removed from the row: to every sink, a column the event does not carry keeps
the value the target holds (see docs/ENVELOPES.md). The placeholder is never written anywhere.
Checking costs one substring search of the raw message; rows are only walked when it is there.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

DEBEZIUM_PLACEHOLDER = "__debezium_unavailable_value"


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One placeholder text and the forms it takes in a JsonConverter message."""

    text: str
    raw: bytes  # as it appears in the message: the text, JSON-quoted without its quotes
    raw_base64: bytes  # a bytea column's value

    @classmethod
    def of(cls, text: str) -> Placeholder:
        encoded = base64.b64encode(text.encode()).decode()
        return cls(text, text.encode(), encoded.encode())

    def in_message(self, value: bytes) -> bool:
        return self.raw in value or self.raw_base64 in value

    def strip(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` without the columns that hold the placeholder (a new dict if any did)."""
        text, encoded = self.text, self.raw_base64.decode()
        gone = [
            name
            for name, value in row.items()
            if value in (text, encoded) or (type(value) is list and value == [text])
        ]
        if not gone:
            return row
        return {name: value for name, value in row.items() if name not in gone}


DEFAULT = Placeholder.of(DEBEZIUM_PLACEHOLDER)

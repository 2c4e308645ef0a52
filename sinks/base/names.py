"""Target-name rules: what every store refuses, plus each store's own limits.

A target name comes from routing (``schema.table`` → ``{table}`` by default, or configured), so
it can be anything a source table was called. A name a store cannot hold is refused with a
MappingError that says why, once per target, and its events go to the DLQ. Names are checked
here and quoted by each sink's SQL builders: never formatted into a statement by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fanout.errors import MappingError

RESERVED_PREFIX = "_fanout_"


@dataclass(frozen=True, slots=True)
class NameRules:
    """The limits of one kind of name in one store (a PostgreSQL table, an ES index, …)."""

    what: str  # how messages call it: "PostgreSQL table", "Elasticsearch index", …
    max_bytes: int | None = None  # UTF-8 bytes
    max_chars: int | None = None
    invalid: re.Pattern[str] | None = None  # characters the store refuses
    invalid_hint: str = ""
    reserved_prefixes: tuple[str, ...] = (RESERVED_PREFIX,)
    reserved_suffixes: tuple[str, ...] = ()
    reserved_names: frozenset[str] = field(default_factory=frozenset)

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be used, or None if it can."""
        if not name or not name.strip():
            return "empty name"
        if any(ord(char) < 32 or ord(char) == 127 for char in name):
            return "name contains control characters"
        if (
            self.max_bytes is not None
            and len(name.encode("utf-8", "surrogatepass")) > self.max_bytes
        ):
            return f"name longer than {self.max_bytes} bytes"
        if self.max_chars is not None and len(name) > self.max_chars:
            return f"name longer than {self.max_chars} characters"
        if self.invalid is not None and self.invalid.search(name):
            return f"invalid characters ({self.invalid_hint})"
        if name.startswith(self.reserved_prefixes) or name.endswith(self.reserved_suffixes):
            return "the name is reserved for fanout's bookkeeping"
        if name in self.reserved_names:
            return "the name is reserved for fanout's bookkeeping"
        return None

    def check(self, name: str) -> str:
        """``name`` if the store can hold it unchanged, else MappingError saying why."""
        problem = self.problem(name)
        if problem is not None:
            raise MappingError(f"invalid {self.what} name {name!r}: {problem}")
        return name

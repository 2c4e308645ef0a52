"""Target-name rules: what every store refuses, plus each store's own limits.

A target name comes from routing (``schema.table`` → ``{table}`` by default, or configured), so
it can be anything a source table was called. A name a store cannot hold is refused with a
MappingError that says why, once per target, and its events go to the DLQ. Names are checked
here and quoted by each sink's SQL builders: never formatted into a statement by hand.

A store with strict rules for names (Elasticsearch: lowercase, no spaces, …) may instead take a
name *derived* from the target by :meth:`NameRules.derive`: deterministic (the same target always
derives the same name), so nothing needs remembering across restarts. Two targets that derive one
name are a configuration error (``sinks.base.batch`` checks it, naming both sources).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from fanout.errors import ConfigError, MappingError

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
    lowercase: bool = False  # the store refuses uppercase letters
    invalid_leading: tuple[str, ...] = ()  # what a name must not start with

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
        if (self.invalid is not None and self.invalid.search(name)) or (
            self.lowercase and name != name.lower()
        ):
            return f"invalid characters ({self.invalid_hint})"
        if name.startswith(self.invalid_leading):
            return f"must not start with {', '.join(self.invalid_leading)}"
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

    def derive(self, name: str) -> str:
        """A name the store can hold, made from ``name`` by one fixed rule: lowercased (if the
        store wants it), control and invalid characters replaced by ``_``, leading characters
        the store refuses removed, and a name over the length limit cut and ended with ``-``
        and 8 hex digits of its SHA-256 (so two long names cut alike still differ). ``name``
        itself when it is valid. MappingError when nothing valid is left (empty, reserved)."""
        if self.problem(name) is None:
            return name
        derived = name.lower() if self.lowercase else name
        derived = _CONTROL.sub("_", derived)
        if self.invalid is not None:
            derived = self.invalid.sub("_", derived)
        while self.invalid_leading and derived.startswith(self.invalid_leading):
            derived = derived[1:]
        derived = self._fit(derived, name)
        problem = self.problem(derived)
        if problem is not None:
            raise MappingError(
                f"invalid {self.what} name {name!r}: {problem} (derived: {derived!r}; "
                "set routing.tables.<table>.target)"
            )
        return derived

    def _fit(self, derived: str, original: str) -> str:
        suffix = "-" + hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        if self.max_chars is not None and len(derived) > self.max_chars:
            derived = derived[: self.max_chars - len(suffix)] + suffix
        if self.max_bytes is not None and len(derived.encode("utf-8", "surrogatepass")) > (
            self.max_bytes
        ):
            room = self.max_bytes - len(suffix)
            cut = derived.encode("utf-8", "surrogatepass")[:room]
            derived = cut.decode("utf-8", "ignore") + suffix  # never half a character
        return derived


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NameClaims:
    """Which target (and source table) each name a store holds was made from. Two targets
    that come to one name (``Orders`` and ``orders`` derive one Elasticsearch index) would be
    merged without a word: a configuration error naming both, raised when the second is seen."""

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._owners: dict[str, tuple[str, str]] = {}  # name -> (target, source table)

    def claim(self, name: str, target: str, source: str) -> None:
        owner_target, owner_source = self._owners.setdefault(name, (target, source))
        if owner_target != target:
            raise ConfigError(
                f"{self._sink}: source tables {owner_source} (target {owner_target!r}) and "
                f"{source} (target {target!r}) both map to {name!r}; give one of them another "
                "name with routing.tables.<table>.target (docs/ENVELOPES.md, Target names)"
            )

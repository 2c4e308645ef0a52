"""Just enough SQL lexing for the chDB HTTP endpoint.

ClickHouse's HTTP interface takes one statement, optionally followed by inline data
(`INSERT INTO t (a, b) FORMAT Native\\n<binary>`). chDB wants the statement and the data
apart, and the endpoint needs the statement's kind and output format for its response
headers. This module finds those without a SQL parser: a lexer that skips strings, quoted
identifiers and comments, and tracks bracket depth, so `FORMAT`/`;` inside them is ignored.
It works on bytes so binary data after the statement is never decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support._chdb_http_errors import ClickHouseError

_TOKEN = re.compile(
    rb"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|\#[!\s][^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_OPENERS = frozenset(b"([{")
_CLOSERS = frozenset(b")]}")
# Words after which FORMAT is a name (a table or function called `format`), not the clause.
_NOT_BEFORE_FORMAT_CLAUSE = frozenset({"INTO", "TABLE", "FUNCTION", "."})
# Statements that produce a result set (ClickHouse sends X-ClickHouse-Format for these).
ROW_KINDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word" | "string" | "quoted" | "number" | "punct"
    text: str  # upper-cased for words
    start: int
    end: int
    depth: int  # bracket depth before this token


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str  # the statement alone: no trailing ';', no inline data
    kind: str  # first keyword, upper-case: "SELECT", "INSERT", "CREATE", ...
    fmt: str | None  # FORMAT clause: output format, or the input format of an INSERT
    data: bytes | None  # inline data after `INSERT ... FORMAT <fmt>`; None otherwise

    @property
    def returns_rows(self) -> bool:
        return self.kind in ROW_KINDS

    @property
    def is_insert_with_data(self) -> bool:
        return self.data is not None


def _tokens(payload: bytes) -> Iterator[Token]:
    depth = 0
    for match in _TOKEN.finditer(payload):
        kind = match.lastgroup or "punct"
        if kind in ("ws", "comment"):
            continue
        raw = match.group()
        text = raw.decode("latin-1")
        if kind == "word":
            text = text.upper()
        yield Token(kind, text, match.start(), match.end(), depth)
        if kind == "punct" and raw[0] in _OPENERS:
            depth += 1
        elif kind == "punct" and raw[0] in _CLOSERS:
            depth = max(0, depth - 1)


def _decode(sql: bytes) -> str:
    try:
        return sql.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ClickHouseError.of(
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "The query is not valid UTF-8"
        ) from exc


def _inline_data_start(payload: bytes, pos: int) -> int:
    """ClickHouse's rule: data starts after the first newline, else after blanks."""
    while pos < len(payload) and payload[pos] in b" \t\f":
        pos += 1
    if payload[pos : pos + 1] == b"\r":
        pos += 1
    if payload[pos : pos + 1] == b"\n":
        pos += 1
    return pos


def _is_format_clause(previous: Token | None, token: Token) -> bool:
    return (
        token.kind == "word"
        and token.text == "FORMAT"
        and token.depth == 0
        and (previous is None or previous.text not in _NOT_BEFORE_FORMAT_CLAUSE)
    )


def _parse_insert(payload: bytes, tokens: Iterator[Token]) -> Statement:
    previous: Token | None = None
    for token in tokens:
        if token.depth == 0 and token.kind == "word" and token.text in ("VALUES", "SELECT"):
            return _parse_other(payload, "INSERT", tokens)
        if _is_format_clause(previous, token):
            name = next(tokens, None)
            if name is None or name.kind != "word":
                raise ClickHouseError.of("SYNTAX_ERROR", "Expected a format name after FORMAT")
            data = payload[_inline_data_start(payload, name.end) :]
            fmt = payload[name.start : name.end].decode("ascii")
            return Statement(_decode(payload[: token.start]), "INSERT", fmt, data)
        previous = token
    return Statement(_decode(payload), "INSERT", None, None)


def _output_format(tokens: list[Token], payload: bytes) -> str | None:
    """The last top-level `FORMAT <name>` that ends the statement (maybe before SETTINGS)."""
    for i in range(len(tokens) - 2, -1, -1):
        token, name = tokens[i], tokens[i + 1]
        after = tokens[i + 2] if i + 2 < len(tokens) else None
        if (
            _is_format_clause(tokens[i - 1] if i else None, token)
            and name.kind == "word"
            and (after is None or after.text == "SETTINGS")
        ):
            return payload[name.start : name.end].decode("ascii")
    return None


def _parse_other(payload: bytes, kind: str, tokens: Iterator[Token]) -> Statement:
    seen: list[Token] = []
    end = len(payload)
    for token in tokens:
        if token.kind == "punct" and token.text == ";" and token.depth == 0:
            if any(t.text != ";" for t in tokens):
                raise ClickHouseError.of("SYNTAX_ERROR", "Multi-statements are not allowed")
            end = token.start
            break
        seen.append(token)
    return Statement(_decode(payload[:end]), kind, _output_format(seen, payload), None)


def parse_statement(payload: bytes) -> Statement:
    """Split a request's query text (plus any inline data) into a Statement."""
    tokens = _tokens(payload)
    first = next((t for t in tokens if t.text != "("), None)
    if first is None:
        raise ClickHouseError.of("SYNTAX_ERROR", "Empty query")
    if first.text == "INSERT":
        return _parse_insert(payload, tokens)
    return _parse_other(payload, first.text, tokens)


def is_valid_identifier(name: str) -> bool:
    """Setting, parameter and format names: plain identifiers only (they go into SQL)."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None

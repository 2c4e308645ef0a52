"""ClickHouse exceptions as the HTTP interface reports them.

chDB raises Python exceptions whose text is ClickHouse's own (`Code: 60. DB::Exception: …
(UNKNOWN_TABLE)`); this module turns them, and the endpoint's own refusals, into the status,
`X-ClickHouse-Exception-Code` header and body a real server would send.
"""

from __future__ import annotations

import re

# The few codes the endpoint raises itself (chDB's own errors carry theirs).
CODES = {
    "STD_EXCEPTION": 1001,
    "SYNTAX_ERROR": 62,
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED": 27,
    "BAD_ARGUMENTS": 36,
    "NOT_IMPLEMENTED": 48,
    "UNKNOWN_FORMAT": 73,
    "READONLY": 164,
    "CANNOT_DECOMPRESS": 271,
    "AUTHENTICATION_FAILED": 516,
}

# HTTP status per error name, as ClickHouse's exceptionCodeToHTTPStatus; everything else 500.
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE"), 403
    ),
    "ACCESS_DENIED": 403,
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_CH_MESSAGE = re.compile(r"Code: (\d+)\. DB::Exception: .*", re.DOTALL)
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_VERSION_TRAILER = re.compile(r"\s*\(version [^\n]*\)\s*$")


class ClickHouseError(Exception):
    """An error to answer with, in ClickHouse's words."""

    def __init__(self, code: int, name: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.name = name
        self.text = text  # `Code: N. DB::Exception: … (NAME)`, without the version trailer

    @classmethod
    def of(cls, name: str, message: str) -> ClickHouseError:
        code = CODES[name]
        return cls(code, name, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_exception(cls, exc: BaseException) -> ClickHouseError:
        """Parse chDB's exception text; anything without a ClickHouse code is STD_EXCEPTION."""
        match = _CH_MESSAGE.search(str(exc))
        if match is None:
            return cls.of("STD_EXCEPTION", f"{type(exc).__name__}: {exc}")
        text = _VERSION_TRAILER.sub("", match.group().strip())
        names = _NAME.findall(text)
        return cls(int(match.group(1)), names[-1] if names else "UNKNOWN_EXCEPTION", text)

    @property
    def http_status(self) -> int:
        return _STATUS_BY_NAME.get(self.name, 500)

    def body(self, version: str) -> bytes:
        return f"{self.text} (version {version})\n".encode()

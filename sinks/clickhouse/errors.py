"""The ClickHouse sink's error table: every driver exception it can meet, in one of three classes.

    ClickHouse error code in DATA_CODES           -> DATA       (the statement or its data is
                                                                 wrong: bisect, DLQ)
    client-side encoding error (ValueError, ...)  -> DATA
    anything else from ClickHouse or the network  -> TRANSIENT  (the store is at fault, or we
                                                                 cannot tell: pause, never
                                                                 dead-letter)

The ClickHouse code of a mapped error stays reachable with :func:`clickhouse_code`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import Error as DriverError
from clickhouse_connect.driver.exceptions import ProgrammingError

from sinks.base import errors as base
from sinks.base.errors import ErrorClass, Verdict, shorten

# Errors that say the statement or its data is wrong: retrying the same batch cannot help.
DATA_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    15: "DUPLICATE_COLUMN",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    33: "CANNOT_READ_ALL_DATA",
    36: "BAD_ARGUMENTS",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    47: "UNKNOWN_IDENTIFIER",
    48: "NOT_IMPLEMENTED",
    53: "TYPE_MISMATCH",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    122: "INCOMPATIBLE_COLUMNS",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    407: "DECIMAL_OVERFLOW",
    691: "UNKNOWN_ELEMENT_OF_ENUM",
}
# Errors of the store, not of the data. Listed for the docs and the log; any code not in
# DATA_CODES is treated the same way.
RETRIABLE_CODES: dict[int, str] = {
    3: "UNEXPECTED_END_OF_FILE",
    32: "ATTEMPT_TO_READ_AFTER_EOF",
    81: "UNKNOWN_DATABASE",
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    279: "ALL_CONNECTION_TRIES_FAILED",
    285: "TOO_FEW_LIVE_REPLICAS",
    286: "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE",
    319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    473: "DEADLOCK_AVOIDED",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
    999: "KEEPER_EXCEPTION",
}
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, struct.error)


def classify(exc: BaseException) -> Verdict | None:
    """The class of a driver exception, or None if it is not a driver exception."""
    if isinstance(exc, DriverError):
        code = exc.code
        message = shorten(str(exc))
        if code in DATA_CODES or (isinstance(exc, ProgrammingError) and code is None):
            return Verdict(ErrorClass.DATA, f"ClickHouse rejected the statement: {message}")
        return Verdict(ErrorClass.TRANSIENT, f"ClickHouse unavailable or overloaded: {message}")
    if isinstance(exc, OSError):  # connection refused/reset, timeouts
        return Verdict(ErrorClass.TRANSIENT, f"cannot reach ClickHouse: {shorten(str(exc))}")
    if isinstance(exc, _ENCODING_ERRORS):
        message = f"cannot encode a value for ClickHouse: {shorten(str(exc))}"
        return Verdict(ErrorClass.DATA, message)
    return None


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise driver exceptions as fanout errors (``raise … from exc``)."""
    with base.mapped_errors(classify):
        yield


def clickhouse_code(error: BaseException) -> int | None:
    """The ClickHouse code behind a mapped error, if there was one."""
    cause = error.__cause__
    code = getattr(cause, "code", None)
    return code if isinstance(code, int) else None

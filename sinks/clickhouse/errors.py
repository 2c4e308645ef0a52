"""The ClickHouse sink's error table: every driver exception it can meet, in one of three classes.

ClickHouse names its errors with a numeric code (``Code: 241. DB::Exception: … (MEMORY_LIMIT_
EXCEEDED)``, the ``X-ClickHouse-Exception-Code`` header over HTTP); clickhouse-connect keeps it
as ``exc.code``. The table is keyed on it:

    what ClickHouse or the driver says                          class
    ---------------------------------------------------------------------------------------
    CONFIGURATION_CODES: ACCESS_DENIED, AUTHENTICATION_FAILED,  CONFIGURATION: the worker
      UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD,          stops consuming, /healthz
      IP_ADDRESS_NOT_ALLOWED, DATABASE_ACCESS_DENIED,           and /readyz 503, exit after
      UNKNOWN_DATABASE, UNKNOWN_SETTING, READONLY (a read-only  config_error_exit_s
      user), READONLY_SETTING, SETTING_CONSTRAINT_VIOLATION,
      UNKNOWN_ROLE, SET_NON_GRANTED_ROLE
    TRANSIENT_CODES: network and socket errors, TIMEOUT_        TRANSIENT: retried with
      EXCEEDED, TOO_MANY_PARTS, TOO_MANY_SIMULTANEOUS_QUERIES,  backoff while it lasts,
      SERVER_OVERLOADED, QUOTA_EXCEEDED (for an interval),      paused, /readyz 503
      NOT_ENOUGH_SPACE, TABLE_IS_READ_ONLY (a replica without
      Keeper), KEEPER_EXCEPTION, replicas and quorum, QUERY_
      WAS_CANCELLED, ABORTED (shutdown), …
    MEMORY_LIMIT_EXCEEDED of the server as a whole ("(total)")  TRANSIENT (other queries end)
    MEMORY_LIMIT_EXCEEDED of the query or user, TOO_LARGE_*,    DATA: the runtime bisects the
      TOO_MANY_ROWS_OR_BYTES, HTTP 413                          batch, so an oversized batch
                                                                is split until it fits; one
                                                                record too large on its own
                                                                ends in the DLQ
    DATA_CODES: parse errors, type mismatches, values out of    DATA: bisected, the records
      range, NULL in a non-Nullable column, unknown enum        at fault to the DLQ
      elements, decimal overflow, …
    a value the driver cannot encode (DataError or              DATA
      ProgrammingError without a code, ValueError, TypeError,
      OverflowError, struct.error): an integer beyond its
      column's range, a string in an int column, a lone
      surrogate
    any other code                                              UNKNOWN: retried a few times
                                                                (retry.unknown_error_
                                                                attempts), then CONFIGURATION
    no code, an HTTP status that did not come from ClickHouse   401/403 CONFIGURATION, 413
      (a proxy, a load balancer)                                DATA, 408/429/5xx TRANSIENT,
                                                                other UNKNOWN
    no code, the connection: refused, reset, timed out          TRANSIENT
      (OperationalError, OSError)
    certificate verify failed (a CA the sink does not trust,    CONFIGURATION (it lasts, like
      a wrong host name)                                        a refused password)
    other TLS failures                                          UNKNOWN

The ClickHouse code of a mapped error stays reachable with :func:`clickhouse_code`.
"""

from __future__ import annotations

import re
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import DataError, OperationalError, ProgrammingError
from clickhouse_connect.driver.exceptions import Error as DriverError

from sinks.base import errors as base
from sinks.base.errors import ErrorClass, Verdict, shorten

CONFIGURATION_CODES: dict[int, str] = {
    81: "UNKNOWN_DATABASE",
    115: "UNKNOWN_SETTING",
    164: "READONLY",
    192: "UNKNOWN_USER",
    193: "WRONG_PASSWORD",
    194: "REQUIRED_PASSWORD",
    195: "IP_ADDRESS_NOT_ALLOWED",
    291: "DATABASE_ACCESS_DENIED",
    452: "SETTING_CONSTRAINT_VIOLATION",
    472: "READONLY_SETTING",
    497: "ACCESS_DENIED",
    511: "UNKNOWN_ROLE",
    512: "SET_NON_GRANTED_ROLE",
    516: "AUTHENTICATION_FAILED",
}
# Conditions of the store that pass: retried for as long as they last.
TRANSIENT_CODES: dict[int, str] = {
    3: "UNEXPECTED_END_OF_FILE",
    32: "ATTEMPT_TO_READ_AFTER_EOF",  # an insert body cut short: the connection broke
    159: "TIMEOUT_EXCEEDED",
    173: "CANNOT_ALLOCATE_MEMORY",
    201: "QUOTA_EXCEEDED",  # for an interval: it ends
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    225: "NO_ZOOKEEPER",
    236: "ABORTED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    279: "ALL_CONNECTION_TRIES_FAILED",
    285: "TOO_FEW_LIVE_REPLICAS",
    286: "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE",
    319: "UNKNOWN_STATUS_OF_INSERT",
    364: "RECEIVED_ERROR_TOO_MANY_REQUESTS",
    373: "SESSION_IS_LOCKED",
    394: "QUERY_WAS_CANCELLED",
    410: "EXTERNAL_SERVER_IS_NOT_RESPONDING",
    415: "ALL_REPLICAS_LOST",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    473: "DEADLOCK_AVOIDED",
    519: "NO_REMOTE_SHARD_AVAILABLE",
    529: "NOT_A_LEADER",
    735: "QUERY_WAS_CANCELLED_BY_CLIENT",
    745: "SERVER_OVERLOADED",
    999: "KEEPER_EXCEPTION",
}
MEMORY_LIMIT_EXCEEDED = 241
# The batch, or a record in it, is at fault: bisected, the records at fault dead-lettered.
DATA_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    15: "DUPLICATE_COLUMN",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    33: "CANNOT_READ_ALL_DATA",
    36: "BAD_ARGUMENTS",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    47: "UNKNOWN_IDENTIFIER",
    53: "TYPE_MISMATCH",
    60: "UNKNOWN_TABLE",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    122: "INCOMPATIBLE_COLUMNS",
    128: "TOO_LARGE_ARRAY_SIZE",
    130: "CANNOT_READ_ARRAY_FROM_TEXT",
    131: "TOO_LARGE_STRING_SIZE",
    158: "TOO_MANY_ROWS",
    161: "TOO_MANY_COLUMNS",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    191: "SET_SIZE_LIMIT_EXCEEDED",
    307: "TOO_MANY_BYTES",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    396: "TOO_MANY_ROWS_OR_BYTES",
    407: "DECIMAL_OVERFLOW",
    467: "CANNOT_PARSE_BOOL",
    469: "VIOLATED_CONSTRAINT",
    563: "CANNOT_READ_MAP_FROM_TEXT",
    691: "UNKNOWN_ELEMENT_OF_ENUM",
}
# Without a ClickHouse code: the HTTP status of an answer that did not come from ClickHouse.
_HTTP_STATUS = re.compile(r"\bHTTP (?:status )?(\d{3})\b")
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, struct.error)
CERTIFICATE_REFUSED = "certificate verify failed"  # OpenSSL's words, whatever wraps them


def classify(exc: BaseException) -> Verdict | None:
    """The class of a driver exception, or None if it is not a driver exception."""
    if isinstance(exc, DriverError):
        error_class = _class_of(exc)
        return Verdict(error_class, f"ClickHouse {_WHAT[error_class]}: {_describe(exc)}")
    if isinstance(exc, ssl.SSLError):  # before OSError: a refused certificate does not pass
        lasting = isinstance(exc, ssl.SSLCertVerificationError)
        error_class = ErrorClass.CONFIGURATION if lasting else ErrorClass.UNKNOWN
        return Verdict(error_class, f"ClickHouse TLS: {shorten(str(exc))}")
    if isinstance(exc, OSError):  # connection refused/reset, timeouts
        return Verdict(ErrorClass.TRANSIENT, f"cannot reach ClickHouse: {shorten(str(exc))}")
    if isinstance(exc, _ENCODING_ERRORS):
        message = f"cannot encode a value for ClickHouse: {type(exc).__name__}: {exc}"
        return Verdict(ErrorClass.DATA, shorten(message))
    return None


_WHAT = {
    ErrorClass.CONFIGURATION: "refused the sink's configuration",
    ErrorClass.TRANSIENT: "unavailable or overloaded",
    ErrorClass.DATA: "rejected the batch",
    ErrorClass.UNKNOWN: "error fanout does not classify",
}


def _class_of(exc: DriverError) -> ErrorClass:
    code = exc.code
    if code is None:
        return _class_without_code(exc)
    if code in CONFIGURATION_CODES:
        return ErrorClass.CONFIGURATION
    if code == MEMORY_LIMIT_EXCEEDED:
        server_wide = "(total)" in str(exc)
        return ErrorClass.TRANSIENT if server_wide else ErrorClass.DATA
    if code in DATA_CODES:
        return ErrorClass.DATA
    if code in TRANSIENT_CODES:
        return ErrorClass.TRANSIENT
    return ErrorClass.UNKNOWN


def _class_without_code(exc: DriverError) -> ErrorClass:
    if isinstance(exc, DataError | ProgrammingError):  # refused by the driver, on this side
        return ErrorClass.DATA
    status = _HTTP_STATUS.search(str(exc))
    if status is not None:
        return _status_class(int(status.group(1)))
    if CERTIFICATE_REFUSED in str(exc).lower():  # the driver's wrapping of an SSLError
        return ErrorClass.CONFIGURATION
    if isinstance(exc, OperationalError):  # the connection: refused, reset, timed out
        return ErrorClass.TRANSIENT
    return ErrorClass.UNKNOWN


def _status_class(status: int) -> ErrorClass:
    if status in (401, 403):
        return ErrorClass.CONFIGURATION
    if status == 413:
        return ErrorClass.DATA
    if status in (408, 429) or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.UNKNOWN


def _describe(exc: DriverError) -> str:
    """The store's message, prefixed with the code and its name when there is one."""
    code = exc.code
    if code is None:
        return shorten(str(exc))
    name = exc.name or _NAMES.get(code, "")
    return f"code {code}{f' ({name})' if name else ''}: {shorten(str(exc))}"


_NAMES = {
    **CONFIGURATION_CODES,
    **TRANSIENT_CODES,
    **DATA_CODES,
    MEMORY_LIMIT_EXCEEDED: "MEMORY_LIMIT_EXCEEDED",
}


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

"""The two ways to reach ClickHouse, behind one small interface, and the error mapping.

* ``server``: a ClickHouse server over HTTP(S) with ``clickhouse-connect``.
* ``embedded``: chDB, ClickHouse's engine inside this process, through clickhouse-connect's
  chdb interface. chDB runs one engine per process on one data directory; opening a second
  directory while the first is open is a configuration error.

Both modes encode inserts in Native format with the same type layer, so a value reads back the
same in either. Every driver exception is mapped onto ``fanout.errors`` in :func:`mapped_errors`
and nowhere else::

    ClickHouse error code in PERMANENT_CODES       -> PermanentError  (the data is at fault)
    client-side encoding error (ValueError, ...)   -> PermanentError
    anything else from ClickHouse or the network   -> RetryableError  (the store is at fault,
                                                      or we cannot tell: pause, never dead-letter)

The ClickHouse code of a mapped error stays reachable with :func:`clickhouse_code`.
"""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as DriverError
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

from fanout.errors import ConfigError, FanoutError, PermanentError, RetryableError
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.types import quote_identifier

log = logging.getLogger(__name__)

# Errors that say the statement or its data is wrong: retrying the same batch cannot help.
PERMANENT_CODES: dict[int, str] = {
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
# PERMANENT_CODES is treated the same way.
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
_MESSAGE_LIMIT = 500


def classify(exc: BaseException) -> FanoutError | None:
    """The fanout error for a driver exception, or None if it is not a driver exception."""
    if isinstance(exc, DriverError):
        code = exc.code
        message = _short(str(exc))
        if code in PERMANENT_CODES or (isinstance(exc, ProgrammingError) and code is None):
            return PermanentError(f"ClickHouse rejected the statement: {message}")
        return RetryableError(f"ClickHouse unavailable or overloaded: {message}")
    if isinstance(exc, OSError):  # connection refused/reset, timeouts
        return RetryableError(f"cannot reach ClickHouse: {_short(str(exc))}")
    if isinstance(exc, _ENCODING_ERRORS):
        return PermanentError(f"cannot encode a value for ClickHouse: {_short(str(exc))}")
    return None


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise driver exceptions as fanout errors (``raise … from exc``); the one place."""
    try:
        yield
    except FanoutError:
        raise
    except Exception as exc:
        mapped = classify(exc)
        if mapped is None:
            raise
        raise mapped from exc


def clickhouse_code(error: BaseException) -> int | None:
    """The ClickHouse error code behind a mapped error, if there was one."""
    cause = error.__cause__
    code = getattr(cause, "code", None)
    return code if isinstance(code, int) else None


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= _MESSAGE_LIMIT else message[:_MESSAGE_LIMIT] + "…"


class Backend:
    """A clickhouse-connect client with the four calls the sink needs."""

    def __init__(self, client: Client, mode: str) -> None:
        self._client: Client | None = client
        self.mode = mode

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RetryableError("the ClickHouse sink is closed")
        return self._client

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        with mapped_errors():
            self.client.command(sql, parameters=dict(parameters or {}))

    def query_rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with mapped_errors():
            result = self.client.query(sql, parameters=dict(parameters or {}))
        return [tuple(row) for row in result.result_rows]

    def insert_columns(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        column_types: Sequence[ClickHouseType],
        settings: Mapping[str, Any],
    ) -> None:
        """One columnar insert (Native format); ``table`` is a plain, unquoted name."""
        with mapped_errors():
            self.client.insert(
                table,
                columns,
                column_names=list(column_names),
                column_types=list(column_types),
                column_oriented=True,
                settings=dict(settings),
            )

    def use_database(self, database: str) -> None:
        self.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        self.client.database = database

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def open_backend(settings: ClickHouseSettings) -> Backend:
    """Connect in the configured mode and switch to the configured database (created if new)."""
    if settings.effective_mode == "server":
        backend = Backend(_server_client(settings), "server")
    else:
        backend = Backend(_embedded_client(settings), "embedded")
    try:
        backend.use_database(settings.database)
    except BaseException:
        backend.close()
        raise
    return backend


def skip_dataframe_libraries() -> None:
    """Keep clickhouse-connect from importing pandas and numpy on the first insert.

    Every insert asks whether its data is a pandas DataFrame or a numpy array, which imports
    both (about 80 MiB of RSS and a second of CPU). The sink inserts lists, so when neither is
    imported yet, the driver's lazy slots are filled with "not installed". Server mode only:
    chDB's interface may want them.
    """
    lazy = vars(driver_options)
    if "pandas" not in sys.modules:
        lazy.setdefault("pd", None)
        lazy.setdefault("pd_time_test", None)
    if "numpy" not in sys.modules:
        lazy.setdefault("np", None)


def _server_client(settings: ClickHouseSettings) -> Client:
    if not settings.host:
        raise ConfigError("sinks.clickhouse.host: required in server mode")
    skip_dataframe_libraries()
    password = settings.password.get_secret_value() if settings.password else ""
    with mapped_errors():
        return clickhouse_connect.get_client(
            host=settings.host,
            port=settings.port,
            username=settings.username,
            password=password,
            secure=settings.secure,
            verify=settings.verify_certs,
            ca_cert=settings.ca_cert,
            connect_timeout=settings.connect_timeout_s,
            send_receive_timeout=settings.send_receive_timeout_s,
            autogenerate_session_id=False,  # no server session: calls may overlap safely
        )


def _embedded_client(settings: ClickHouseSettings) -> Client:
    path = Path(settings.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path))
    except OperationalError as exc:
        raise RetryableError(f"cannot open chDB at {path}: {_short(str(exc))}") from exc
    except ProgrammingError as exc:
        raise ConfigError(
            f"sinks.clickhouse.data_dir: chDB cannot open {path}: {_short(str(exc))} "
            "(chDB runs one data directory per process)"
        ) from exc

"""The two ways to reach ClickHouse, behind one small interface, and the error mapping.

* ``server``: a ClickHouse server over HTTP(S) with ``clickhouse-connect``.
* ``embedded``: chDB, ClickHouse's engine inside this process, through clickhouse-connect's
  chdb interface. chDB runs one engine per process on one data directory; opening a second
  directory while the first is open is a configuration error.

Both modes encode inserts in Native format with the same type layer, so a value reads back the
same in either. Every driver exception is mapped in ``sinks.clickhouse.errors``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

from fanout.errors import ConfigError, RetryableError
from fanout.settings import ClickHouseSettings
from sinks.base.errors import shorten
from sinks.clickhouse.errors import mapped_errors
from sinks.clickhouse.types import quote_identifier

log = logging.getLogger(__name__)


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
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        column_formats: Mapping[str, str] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Rows of a query; ``column_formats`` as clickhouse-connect's (``{"c": "bytes"}``)."""
        with mapped_errors():
            result = self.client.query(
                sql, parameters=dict(parameters or {}), column_formats=dict(column_formats or {})
            )
        return [tuple(row) for row in result.result_rows]

    def insert_columns(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        column_types: Sequence[ClickHouseType],
        settings: Mapping[str, Any],
    ) -> None:
        """One columnar insert (Native format); ``table`` is a plain, unquoted name.

        The driver passes a name with a dot unquoted (taking it for ``database.table``) and
        keeps a quoted one as it is, so the name goes in quoted here, as every other statement
        names it: a target ``a.b`` is the table `a.b`, not table b of a database a."""
        with mapped_errors():
            self.client.insert(
                quote_identifier(table),
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
        raise RetryableError(f"cannot open chDB at {path}: {shorten(str(exc))}") from exc
    except ProgrammingError as exc:
        raise ConfigError(
            f"sinks.clickhouse.data_dir: chDB cannot open {path}: {shorten(str(exc))} "
            "(chDB runs one data directory per process)"
        ) from exc

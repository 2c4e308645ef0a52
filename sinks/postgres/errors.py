"""The PostgreSQL sink's error table: psycopg's exceptions in the three classes, here only.

connection loss, shutdown, cancel, deadlock,   -> TRANSIENT  (the next write reconnects)
serialisation failure, a read-only standby
a table or column gone under the sink          -> TRANSIENT  (re-read the table, try again)
anything else PostgreSQL refuses in a batch    -> DATA       (the runtime bisects the batch)
"""

from __future__ import annotations

import psycopg

from sinks.base.errors import ErrorClass, Verdict

RECONNECT = (
    psycopg.OperationalError,  # connection loss, AdminShutdown, QueryCanceled, deadlock, …
    psycopg.InterfaceError,  # the connection is already closed
    psycopg.errors.ReadOnlySqlTransaction,  # a failover left us on a standby
)
# The table changed under the sink (dropped, altered by hand): re-read it and try again.
SCHEMA_DRIFT = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)


def classify(exc: BaseException) -> Verdict | None:
    """The class of a psycopg exception, or None for anything else."""
    if not isinstance(exc, psycopg.Error):
        return None
    if isinstance(exc, RECONNECT):
        return Verdict(ErrorClass.TRANSIENT, f"postgres unavailable: {_describe(exc)}")
    if isinstance(exc, SCHEMA_DRIFT):
        return Verdict(ErrorClass.TRANSIENT, f"postgres table changed under the sink: {exc}")
    return Verdict(ErrorClass.DATA, f"postgres rejected the batch: {_describe(exc)}")


def _describe(exc: psycopg.Error) -> str:
    return f"{type(exc).__name__}: {exc}"

"""The PostgreSQL sink's error table: psycopg's exceptions in the three classes, here only.

PostgreSQL names every error it raises with a SQLSTATE; the table is keyed on it, the full code
first, then its two-character class. Errors raised before or without a server answer (a
connection that fails, a value psycopg cannot encode) have none and are sorted by kind.

    SQLSTATE / exception                                   class          the runtime
    ---------------------------------------------------------------------------------------------
    28xxx  invalid authorization (bad password, no role)   CONFIGURATION  stops the sink, exits
    42501  insufficient_privilege (a grant is missing)     CONFIGURATION
    3D000  invalid_catalog_name (no such database)         CONFIGURATION
    3F000  invalid_schema_name                             CONFIGURATION
    connection refused for a reason that lasts: password   CONFIGURATION
      authentication failed, no pg_hba.conf entry, role
      or database does not exist, no password supplied,
      SSL required / certificate refused
    08xxx  connection exception                            TRANSIENT      retries with backoff,
    40xxx  serialization failure, deadlock                 TRANSIENT      pauses, /readyz 503
    53xxx  insufficient resources (disk full, out of       TRANSIENT
           memory, too many connections)
    55P03  lock_not_available (``lock_timeout``)           TRANSIENT
    55006  object_in_use                                   TRANSIENT
    57xxx  query_canceled (``statement_timeout``), admin   TRANSIENT
           or crash shutdown, cannot connect now
    25006  read_only_sql_transaction (a failover left us   TRANSIENT
           on a standby)
    42P01 / 42703  a table or column gone under the sink   TRANSIENT      (re-read it, try again)
    any other connection failure (refused, reset, timeout, TRANSIENT
      host not found), a connection already closed
    22xxx  data exception (a value out of range, a NUL     DATA           bisects the batch: the
           byte, invalid text for the type)                               records at fault go
    23xxx  integrity constraint violation                  DATA           to the DLQ
    54xxx  program_limit_exceeded (a row or index entry    DATA
           too large, too many columns)
    42xxx  other rule violations (a datatype mismatch, a   DATA
           name PostgreSQL refuses)
    a value psycopg cannot encode (a lone surrogate,       DATA
      a NUL byte in a parameter, an int out of range,
      JSON orjson cannot write)
    42601 syntax_error, 42883 undefined_function, 0Axxx   UNKNOWN        retried a few times,
      feature_not_supported, XXxxx internal error, any                    then CONFIGURATION
      other SQLSTATE or psycopg error

42601/42883/0A are not DATA on purpose: they mean the statement fanout sends is wrong for this
server (a version it does not support), and dead-lettering every record one by one would
drain the stream; the operator is told instead.
"""

from __future__ import annotations

import orjson
import psycopg

from sinks.base.errors import ErrorClass, Verdict, shorten

RECONNECT = (
    psycopg.OperationalError,  # connection loss, AdminShutdown, QueryCanceled, deadlock, …
    psycopg.InterfaceError,  # the connection is already closed
    psycopg.errors.ReadOnlySqlTransaction,  # a failover left us on a standby
)

CONFIGURATION = ErrorClass.CONFIGURATION
TRANSIENT = ErrorClass.TRANSIENT
DATA = ErrorClass.DATA
UNKNOWN = ErrorClass.UNKNOWN

# Full SQLSTATEs first (they override their class), then two-character classes.
SQLSTATES: dict[str, ErrorClass] = {
    "42501": CONFIGURATION,  # insufficient_privilege
    "3D000": CONFIGURATION,  # invalid_catalog_name
    "3F000": CONFIGURATION,  # invalid_schema_name
    "55P03": TRANSIENT,  # lock_not_available
    "55006": TRANSIENT,  # object_in_use
    "25006": TRANSIENT,  # read_only_sql_transaction
    "42P01": TRANSIENT,  # undefined_table: changed under the sink, re-read
    "42703": TRANSIENT,  # undefined_column: changed under the sink, re-read
    "42601": UNKNOWN,  # syntax_error
    "42883": UNKNOWN,  # undefined_function
}
SQLSTATE_CLASSES: dict[str, ErrorClass] = {
    "28": CONFIGURATION,  # invalid_authorization_specification
    "08": TRANSIENT,  # connection_exception
    "40": TRANSIENT,  # transaction_rollback
    "53": TRANSIENT,  # insufficient_resources
    "57": TRANSIENT,  # operator_intervention (incl. query_canceled)
    "22": DATA,  # data_exception
    "23": DATA,  # integrity_constraint_violation
    "54": DATA,  # program_limit_exceeded
    "42": DATA,  # syntax_error_or_access_rule_violation (the rest)
    "0A": UNKNOWN,  # feature_not_supported
    "XX": UNKNOWN,  # internal_error
}
# libpq's and the server's words when a connection is refused for a reason that lasts (no
# SQLSTATE reaches the client then).
REFUSED_FOR_GOOD = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # role "x" / database "x" does not exist
    "no password supplied",
    "permission denied",
    "ssl is not enabled on the server",
    "server does not support ssl",
    "certificate verify failed",
    "certificate",
)
# Encoding a value on the client: a lone surrogate, a NUL byte, an integer out of range, a JSON
# value orjson cannot write.
ENCODING_ERRORS = (ValueError, OverflowError, orjson.JSONEncodeError)


def classify(exc: BaseException) -> Verdict | None:
    """The class of a psycopg (or value-encoding) exception, or None for anything else."""
    if isinstance(exc, psycopg.Error):
        error_class = _class_of(exc)
        return Verdict(error_class, f"postgres {_WHAT[error_class]}: {_describe(exc)}")
    if isinstance(exc, ENCODING_ERRORS):
        message = f"postgres cannot take a value: {type(exc).__name__}: {shorten(str(exc))}"
        return Verdict(DATA, message)
    return None


_WHAT = {
    CONFIGURATION: "refused the sink's configuration",
    TRANSIENT: "unavailable",
    DATA: "rejected the batch",
    UNKNOWN: "error fanout does not classify",
}


def _class_of(exc: psycopg.Error) -> ErrorClass:
    sqlstate = exc.sqlstate
    if sqlstate:
        known = SQLSTATES.get(sqlstate) or SQLSTATE_CLASSES.get(sqlstate[:2])
        return UNKNOWN if known is None else known
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        text = str(exc).lower()
        if any(words in text for words in REFUSED_FOR_GOOD):
            return CONFIGURATION
        return TRANSIENT
    if isinstance(exc, psycopg.DataError | psycopg.ProgrammingError):
        return DATA  # refused on the client: a value it cannot send, a type it cannot adapt
    return UNKNOWN


def _describe(exc: psycopg.Error) -> str:
    return f"{type(exc).__name__}: {shorten(str(exc))}"

"""The PostgreSQL and ClickHouse error tables, row by row, and the classes' exceptions (no
services). The Elasticsearch table is tested in ``test_elasticsearch_errors.py``."""

from __future__ import annotations

import ssl
import struct

import orjson
import psycopg
import pytest
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

from fanout.errors import ConfigError, MappingError, RetryableError, UnknownError
from sinks.base.errors import ErrorClass, Verdict, class_of, mapped_errors
from sinks.clickhouse import errors as ch
from sinks.postgres import errors as pg

CONFIGURATION, TRANSIENT, DATA, UNKNOWN = (
    ErrorClass.CONFIGURATION,
    ErrorClass.TRANSIENT,
    ErrorClass.DATA,
    ErrorClass.UNKNOWN,
)


# ---- the classes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "raised"),
    [
        (TRANSIENT, RetryableError),
        (DATA, MappingError),
        (CONFIGURATION, ConfigError),
        (UNKNOWN, UnknownError),
    ],
)
def test_each_class_raises_the_error_the_runtime_acts_on(
    error_class: ErrorClass, raised: type[Exception]
) -> None:
    error = Verdict(error_class, "why").error()
    assert type(error) is raised and str(error) == "why"
    assert class_of(error) is error_class


def test_an_unknown_error_is_retried_like_a_transient_one() -> None:
    assert issubclass(UnknownError, RetryableError)


def test_the_mapping_keeps_the_driver_exception_as_the_cause() -> None:
    original = psycopg.errors.InsufficientPrivilege("permission denied for table t")
    with pytest.raises(ConfigError) as raised, mapped_errors(pg.classify):
        raise original
    assert raised.value.__cause__ is original


def test_exceptions_no_table_knows_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), mapped_errors(pg.classify):
        raise KeyError("a bug")
    assert pg.classify(KeyError("x")) is None
    assert ch.classify(KeyError("x")) is None


# ---- PostgreSQL ----------------------------------------------------------------------------


def sqlstate(code: str, message: str = "the server's words") -> psycopg.Error:
    error: psycopg.Error = psycopg.errors.lookup(code)(message)
    return error


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        # configuration: the role, its grants, the database
        ("28000", CONFIGURATION),  # invalid_authorization_specification
        ("28P01", CONFIGURATION),  # invalid_password
        ("42501", CONFIGURATION),  # insufficient_privilege
        ("3D000", CONFIGURATION),  # invalid_catalog_name
        ("3F000", CONFIGURATION),  # invalid_schema_name
        # transient
        ("08006", TRANSIENT),  # connection_failure
        ("08001", TRANSIENT),  # sqlclient_unable_to_establish_sqlconnection
        ("40001", TRANSIENT),  # serialization_failure
        ("40P01", TRANSIENT),  # deadlock_detected
        ("53100", TRANSIENT),  # disk_full
        ("53200", TRANSIENT),  # out_of_memory
        ("53300", TRANSIENT),  # too_many_connections
        ("55P03", TRANSIENT),  # lock_not_available: lock_timeout
        ("55006", TRANSIENT),  # object_in_use
        ("57014", TRANSIENT),  # query_canceled: statement_timeout
        ("57P01", TRANSIENT),  # admin_shutdown
        ("57P02", TRANSIENT),  # crash_shutdown
        ("57P03", TRANSIENT),  # cannot_connect_now
        ("25006", TRANSIENT),  # read_only_sql_transaction
        ("42P01", TRANSIENT),  # undefined_table: re-read
        ("42703", TRANSIENT),  # undefined_column: re-read
        # data
        ("22001", DATA),  # string_data_right_truncation
        ("22003", DATA),  # numeric_value_out_of_range
        ("22021", DATA),  # character_not_in_repertoire: a NUL byte
        ("22P02", DATA),  # invalid_text_representation
        ("23502", DATA),  # not_null_violation
        ("23505", DATA),  # unique_violation
        ("54000", DATA),  # program_limit_exceeded: one too-large row
        ("54011", DATA),  # too_many_columns
        ("42804", DATA),  # datatype_mismatch
        ("42622", DATA),  # name_too_long
        # unknown: the statement is wrong for this server
        ("42601", UNKNOWN),  # syntax_error
        ("42883", UNKNOWN),  # undefined_function
        ("0A000", UNKNOWN),  # feature_not_supported
        ("XX000", UNKNOWN),  # internal_error
        ("58030", UNKNOWN),  # io_error: a class the table has no row for
    ],
)
def test_postgres_errors_are_classified_by_sqlstate(code: str, error_class: ErrorClass) -> None:
    verdict = pg.classify(sqlstate(code))
    assert verdict is not None and verdict.error_class is error_class
    assert "the server's words" in verdict.message


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: FATAL:  password authentication failed for user "fanout"',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "fanout", database "fanout"',
        'FATAL:  role "fanout" does not exist',
        'FATAL:  database "fanout" does not exist',
        "fe_sendauth: no password supplied",
        'FATAL:  permission denied for database "fanout" DETAIL: User does not have CONNECT',
        "server does not support SSL, but SSL was required",
        "SSL error: certificate verify failed",
    ],
)
def test_a_connection_refused_for_good_is_a_configuration_error(message: str) -> None:
    verdict = pg.classify(psycopg.OperationalError(message))
    assert verdict is not None and verdict.error_class is CONFIGURATION


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
            "Connection refused"
        ),
        psycopg.OperationalError("connection failed: timeout expired"),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.OperationalError('could not translate host name "pg" to address'),
        psycopg.InterfaceError("the connection is closed"),
    ],
)
def test_a_connection_that_fails_or_breaks_is_transient(error: psycopg.Error) -> None:
    verdict = pg.classify(error)
    assert verdict is not None and verdict.error_class is TRANSIENT


@pytest.mark.parametrize(
    "error",
    [
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        psycopg.ProgrammingError("cannot adapt type 'object'"),
        "x\ud800".encode,  # a lone surrogate, raised below
        ValueError("a value psycopg cannot dump"),
        OverflowError("int too big to convert"),
        orjson.JSONEncodeError("str is not valid UTF-8: surrogates not allowed"),
    ],
)
def test_a_value_that_cannot_be_encoded_is_data(error: object) -> None:
    if callable(error):
        with pytest.raises(UnicodeEncodeError) as raised:
            error()
        error = raised.value
    assert isinstance(error, Exception)
    verdict = pg.classify(error)
    assert verdict is not None and verdict.error_class is DATA


def test_other_psycopg_errors_without_a_sqlstate_are_unknown() -> None:
    verdict = pg.classify(psycopg.NotSupportedError("pipeline mode not supported"))
    assert verdict is not None and verdict.error_class is UNKNOWN


def test_the_postgres_message_names_the_class_and_keeps_the_servers_words() -> None:
    verdict = pg.classify(sqlstate("42501", "permission denied for table orders"))
    assert verdict is not None
    assert verdict.message == (
        "postgres refused the sink's configuration: InsufficientPrivilege: "
        "permission denied for table orders"
    )


# ---- ClickHouse ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(ch.CONFIGURATION_CODES))
def test_clickhouse_configuration_codes(code: int) -> None:
    verdict = ch.classify(DatabaseError("refused", code=code))
    assert verdict is not None and verdict.error_class is CONFIGURATION
    assert f"code {code} ({ch.CONFIGURATION_CODES[code]})" in verdict.message


@pytest.mark.parametrize("code", sorted(ch.TRANSIENT_CODES))
def test_clickhouse_transient_codes(code: int) -> None:
    verdict = ch.classify(DatabaseError("passing", code=code))
    assert verdict is not None and verdict.error_class is TRANSIENT


@pytest.mark.parametrize("code", sorted(ch.DATA_CODES))
def test_clickhouse_data_codes(code: int) -> None:
    verdict = ch.classify(DatabaseError("refused", code=code))
    assert verdict is not None and verdict.error_class is DATA


def test_the_code_lists_do_not_overlap() -> None:
    lists = [set(ch.CONFIGURATION_CODES), set(ch.TRANSIENT_CODES), set(ch.DATA_CODES)]
    assert sum(map(len, lists)) == len(set.union(*lists))
    assert ch.MEMORY_LIMIT_EXCEEDED not in set.union(*lists)


@pytest.mark.parametrize(
    ("message", "error_class"),
    [
        # a batch too large for the query's or the user's limit: split by bisection
        ("Code: 241. DB::Exception: Query memory limit exceeded: would use 9.3 GiB", DATA),
        ("Code: 241. DB::Exception: Memory limit (for user) exceeded", DATA),
        # the server as a whole is short: other queries will end
        ("Code: 241. DB::Exception: Memory limit (total) exceeded: would use 31 GiB", TRANSIENT),
    ],
)
def test_clickhouse_memory_limit_splits_unless_the_whole_server_is_short(
    message: str, error_class: ErrorClass
) -> None:
    verdict = ch.classify(DatabaseError(message, code=241))
    assert verdict is not None and verdict.error_class is error_class


@pytest.mark.parametrize("code", [1, 49, 1000, 1001, 1002, 12345])
def test_clickhouse_codes_not_in_the_table_are_unknown(code: int) -> None:
    verdict = ch.classify(DatabaseError("something new", code=code))
    assert verdict is not None and verdict.error_class is UNKNOWN


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, CONFIGURATION),
        (403, CONFIGURATION),
        (413, DATA),
        (408, TRANSIENT),
        (429, TRANSIENT),
        (500, TRANSIENT),
        (502, TRANSIENT),
        (503, TRANSIENT),
        (404, UNKNOWN),
        (418, UNKNOWN),
    ],
)
def test_clickhouse_http_status_without_a_code(status: int, error_class: ErrorClass) -> None:
    error = DatabaseError(f"HTTP driver received HTTP status {status}, server response: x")
    verdict = ch.classify(error)
    assert verdict is not None and verdict.error_class is error_class


@pytest.mark.parametrize(
    ("error", "error_class"),
    [
        (OperationalError("Error HTTPConnectionPool: Read timed out"), TRANSIENT),
        (ConnectionRefusedError("refused"), TRANSIENT),
        (ConnectionResetError("reset"), TRANSIENT),
        (TimeoutError("timed out"), TRANSIENT),
        (ssl.SSLCertVerificationError("certificate verify failed"), CONFIGURATION),
        (ssl.SSLError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), UNKNOWN),
        # the driver's wrapping of a refused certificate (seen over HTTPS)
        (
            OperationalError(
                "Error HTTPSConnectionPool(host='ch', port=8443): Max retries exceeded (Caused by "
                "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
                "certificate verify failed: unable to get local issuer certificate')))"
            ),
            CONFIGURATION,
        ),
        (DatabaseError("the driver lost its way"), UNKNOWN),
        # values the driver cannot encode: an integer beyond int64, a string in an int column
        (DataError("Unable to create native array for column `v`: error"), DATA),
        (ProgrammingError("Insert data column count does not match column names"), DATA),
        (ValueError("invalid literal for int() with base 10: 'abc'"), DATA),
        (TypeError("int() argument must be a string, not 'dict'"), DATA),
        (OverflowError("int too big to convert"), DATA),
        (struct.error("argument out of range"), DATA),
    ],
)
def test_clickhouse_errors_without_a_code(error: Exception, error_class: ErrorClass) -> None:
    verdict = ch.classify(error)
    assert verdict is not None and verdict.error_class is error_class


def test_the_clickhouse_message_names_the_code_and_keeps_the_servers_words() -> None:
    error = DatabaseError("Code: 497. DB::Exception: fanout: Not enough privileges.", code=497)
    verdict = ch.classify(error)
    assert verdict is not None
    assert verdict.message.startswith("ClickHouse refused the sink's configuration: code 497 ")
    assert "(ACCESS_DENIED): Code: 497. DB::Exception: fanout: Not enough privileges." in (
        verdict.message
    )

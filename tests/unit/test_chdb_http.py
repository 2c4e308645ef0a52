"""The chDB-backed ClickHouse HTTP endpoint, driven by the real clickhouse-connect client.

Each test starts the endpoint in-process on a free port over its own temporary data dir
(chDB allows one data dir per process at a time, and opening a session takes ~60 ms).
"""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import lz4.frame
import pytest
from backports import zstd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.support._chdb_http_sql import parse_statement
from tests.support.chdb_http import ChdbHttpServer

COLUMNS = ["id", "name", "note", "amount", "ts", "day", "uid", "tags", "flag", "ver", "deleted"]
CREATE = """
CREATE TABLE {table} (
    id Int64, name String, note Nullable(String), amount Decimal(12, 2),
    ts DateTime64(6, 'UTC'), day Date32, uid UUID, tags Array(String), flag Bool,
    ver UInt64, deleted UInt8
) ENGINE = ReplacingMergeTree(ver, deleted) ORDER BY id
"""
ROWS = 3000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChdbHttpServer]:
    endpoint = ChdbHttpServer(tmp_path / "chdb").start()
    yield endpoint
    endpoint.stop()


def connect(server: ChdbHttpServer, **kwargs: Any) -> Client:
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, tz_mode="aware", **kwargs
    )


@pytest.fixture
def client(server: ChdbHttpServer) -> Client:
    return connect(server, compress=False)


def new_table(client: Client) -> str:
    table = f"t_{uuid.uuid4().hex[:12]}"
    client.command(CREATE.format(table=table))
    client.command(f"SYSTEM STOP MERGES {table}")  # so counts without FINAL are exact
    return table


def row(i: int, ver: int, deleted: int = 0) -> list[Any]:
    return [
        -(2**40) + i,
        f"name {i} v{ver} ünïcode",
        None if i % 3 == 0 else f"note {i}",
        Decimal(f"{i * 7 % 100000}.{i % 100:02d}"),
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i, microseconds=i),
        date(1900, 1, 1) + timedelta(days=i * 17),
        uuid.UUID(int=i * 7919 + ver),
        [f"tag{j}" for j in range(i % 4)],
        i % 2 == 0,
        ver,
        deleted,
    ]


def request(
    server: ChdbHttpServer,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, target, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_ping_and_version_over_plain_http(server: ChdbHttpServer) -> None:
    assert request(server, "GET", "/ping")[2] == b"Ok.\n"
    assert request(server, "GET", "/")[2] == b"Ok.\n"
    status, headers, body = request(server, "GET", "/?query=SELECT%20version()")
    assert status == 200
    assert body.decode().strip() == server.engine.version
    assert headers["X-ClickHouse-Format"] == "TabSeparated"


def test_get_client_sees_server_version_timezone_and_settings(client: Client) -> None:
    assert client.server_version == client.command("SELECT version()")
    assert client.server_tz.utcoffset(None) == timedelta(0)
    assert "max_result_rows" in client.server_settings
    assert client.ping()


def test_command_creates_replacing_merge_tree(client: Client) -> None:
    table = new_table(client)
    engine = client.command(f"SELECT engine FROM system.tables WHERE name = '{table}'")
    assert engine == "ReplacingMergeTree"
    assert client.command(f"EXISTS TABLE {table}") == 1
    assert client.command(f"SELECT count() FROM {table}") == 0


@pytest.mark.parametrize("compress", [False, True, "zstd", "gzip"])
def test_insert_and_query_round_trip(server: ChdbHttpServer, compress: bool | str) -> None:
    client = connect(server, compress=compress)
    table = new_table(client)
    first = [row(i, 1) for i in range(ROWS)]
    updates = [row(i, 2, deleted=int(i % 50 == 0)) for i in range(0, ROWS, 10)]
    client.insert(table, first, column_names=COLUMNS)
    summary = client.insert(table, updates, column_names=COLUMNS)
    assert summary.written_rows == len(updates)

    everything = client.query(f"SELECT * FROM {table} ORDER BY id, ver").result_rows
    assert [list(r) for r in everything] == sorted(first + updates, key=lambda r: (r[0], r[9]))

    newest = {r[0]: r for r in first} | {r[0]: r for r in updates}
    expected = [r for _, r in sorted(newest.items()) if not r[10]]
    final = client.query(f"SELECT * FROM {table} FINAL ORDER BY id").result_rows
    assert [list(r) for r in final] == expected


def test_responses_and_inserts_are_compressed_on_the_wire(server: ChdbHttpServer) -> None:
    query = "/?enable_http_compression=1&query=SELECT%20number%20FROM%20numbers(1000)"
    for name, decode in (
        ("lz4", lz4.frame.decompress),
        ("zstd", zstd.decompress),
        ("gzip", gzip.decompress),
    ):
        status, headers, body = request(server, "GET", query, headers={"Accept-Encoding": name})
        assert (status, headers["Content-Encoding"]) == (200, name)
        assert decode(body).split() == [str(n).encode() for n in range(1000)]
    create = b"CREATE TABLE nums (n UInt32) ENGINE = MergeTree ORDER BY n"
    assert request(server, "POST", "/", create)[0] == 200
    tsv = b"".join(f"{n}\n".encode() for n in range(500))
    two_frames = lz4.frame.compress(b"INSERT INTO nums FORMAT TSV\n" + tsv[:1000])
    two_frames += lz4.frame.compress(tsv[1000:])
    assert request(server, "POST", "/", two_frames, headers={"Content-Encoding": "lz4"})[0] == 200
    body = gzip.compress(tsv)
    target = "/?query=INSERT%20INTO%20nums%20FORMAT%20TSV"
    assert request(server, "POST", target, body, headers={"Content-Encoding": "gzip"})[0] == 200
    assert request(server, "GET", "/?query=SELECT%20count()%20FROM%20nums")[2] == b"1000\n"


def test_bad_query_raises_database_error_with_code_and_name(client: Client) -> None:
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT * FROM no_such_table_here")
    assert "Code: 60" in str(missing.value)
    assert "UNKNOWN_TABLE" in str(missing.value)
    with pytest.raises(DatabaseError) as syntax:
        client.command("SELEC 1")
    assert "Code: 62" in str(syntax.value)
    assert "SYNTAX_ERROR" in str(syntax.value)


def test_error_response_is_shaped_like_clickhouse(server: ChdbHttpServer) -> None:
    status, headers, body = request(server, "POST", "/", b"SELECT * FROM nope")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    text = body.decode()
    assert text.startswith("Code: 60. DB::Exception: ")
    assert f"(UNKNOWN_TABLE) (version {server.engine.version})" in text


def test_url_settings_are_honoured_and_do_not_leak(client: Client) -> None:
    limited = {"max_result_rows": 10, "result_overflow_mode": "throw"}
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS_OR_BYTES"):
        client.query("SELECT number FROM numbers(100)", settings=limited)
    assert len(client.query("SELECT number FROM numbers(100)").result_rows) == 100
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.query("SELECT 1", settings={"no_such_setting_at_all": 1})


def test_server_side_parameters_are_bound(client: Client) -> None:
    result = client.query("SELECT {n:Int32} + 1 AS x, {s:String} AS s", {"n": 41, "s": "it's"})
    assert result.result_rows == [(42, "it's")]


def test_dedup_token_drops_a_retried_insert(client: Client) -> None:
    table = new_table(client)
    client.command(f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = 100")
    rows = [row(i, 1) for i in range(100)]
    for _ in range(2):
        client.insert(
            table, rows, column_names=COLUMNS, settings={"insert_deduplication_token": "p0:0-99"}
        )
    assert client.command(f"SELECT count() FROM {table}") == 100
    client.insert(
        table, rows, column_names=COLUMNS, settings={"insert_deduplication_token": "p0:100-199"}
    )
    assert client.command(f"SELECT count() FROM {table}") == 200


def test_get_is_read_only_and_multi_statements_are_refused(server: ChdbHttpServer) -> None:
    status, headers, _ = request(
        server, "GET", "/?query=CREATE%20TABLE%20x%20(a%20Int8)%20ENGINE=Log"
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    status, headers, _ = request(server, "POST", "/", b"SELECT 1; SELECT 2")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")


def test_only_default_user_with_empty_password(server: ChdbHttpServer) -> None:
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
        connect(server, username="default", password="secret")


def test_data_survives_a_restart(tmp_path: Path) -> None:
    endpoint = ChdbHttpServer(tmp_path / "chdb").start()
    try:
        client = connect(endpoint)
        table = new_table(client)
        client.insert(table, [row(i, 1) for i in range(10)], column_names=COLUMNS)
    finally:
        endpoint.stop()
    endpoint = ChdbHttpServer(tmp_path / "chdb").start()
    try:
        assert connect(endpoint).command(f"SELECT count() FROM {table}") == 10
    finally:
        endpoint.stop()


def _wait_for_ping(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/ping")
            if connection.getresponse().read() == b"Ok.\n":
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the endpoint never answered /ping")


def test_cli_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tests.support.chdb_http", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(tmp_path / "chdb")]
    root = Path(__file__).resolve().parents[2]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=root, stderr=log, env=os.environ.copy())
    try:
        _wait_for_ping(port, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_long_bind_parameters_fit_in_the_url(client: Client) -> None:
    long_value = "y" * 200_000  # command() sends binds as URL parameters
    assert client.command("SELECT length({v:String})", parameters={"v": long_value}) == 200_000


def test_concurrent_clients_are_all_served(server: ChdbHttpServer) -> None:
    table = new_table(connect(server))
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            own = connect(server, compress=worker % 2 == 0)
            for n in range(10):
                own.insert(table, [row(worker * 100 + n, 1)], column_names=COLUMNS)
                own.query(f"SELECT count() FROM {table}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert connect(server).command(f"SELECT count() FROM {table}") == 40


def test_set_and_use_last_for_their_http_session_only(server: ChdbHttpServer) -> None:
    first, second = connect(server), connect(server)  # each has its own session_id
    first.command("CREATE DATABASE IF NOT EXISTS other")
    first.command("CREATE TABLE other.only_there (a UInt8) ENGINE = Memory")
    first.command("SET max_result_rows = 5, result_overflow_mode = 'throw'")
    first.command("USE other")
    assert first.command("SELECT currentDatabase()") == "other"
    assert first.command("SELECT count() FROM only_there") == 0
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS_OR_BYTES"):
        first.query("SELECT number FROM numbers(10)")
    assert second.command("SELECT currentDatabase()") == "default"
    assert len(second.query("SELECT number FROM numbers(10)").result_rows) == 10
    first.command("SET max_result_rows = DEFAULT")
    assert len(first.query("SELECT number FROM numbers(10)").result_rows) == 10


@pytest.mark.parametrize(
    ("payload", "kind", "fmt", "data"),
    [
        (b"INSERT INTO t (`format`, b) FORMAT Native\n\n\x01", "INSERT", "Native", b"\n\x01"),
        (b"INSERT INTO format FORMAT TSV\n1\n", "INSERT", "TSV", b"1\n"),
        (b"insert into t settings a = 'FORMAT x' format CSV 1,2", "INSERT", "CSV", b"1,2"),
        (b"INSERT INTO t VALUES ('FORMAT Native', ';')", "INSERT", None, None),
        (b"SELECT format FROM t", "SELECT", None, None),
        (b"SELECT 1 FORMAT JSON SETTINGS max_threads = 1;", "SELECT", "JSON", None),
        (b"/* c */ (SELECT ';' -- FORMAT CSV\n)", "SELECT", None, None),
    ],
)
def test_statement_split_from_inline_data(
    payload: bytes, kind: str, fmt: str | None, data: bytes | None
) -> None:
    statement = parse_statement(payload)
    assert (statement.kind, statement.fmt, statement.data) == (kind, fmt, data)

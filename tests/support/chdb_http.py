"""A ClickHouse-HTTP-compatible endpoint backed by chDB, for the local stack and tests.

    python -m tests.support.chdb_http --host 127.0.0.1 --port 8123 --data-dir <dir>

Runs in the foreground until SIGTERM/SIGINT, then exits cleanly. It serves the part of
ClickHouse's HTTP interface that `clickhouse-connect` uses (`get_client`, `command`, `query`,
`insert`, Native format, HTTP compression, settings and `param_` binds in the URL, ClickHouse
errors); docs/CHDB_HTTP.md lists exactly what is and is not covered.

Guarantees: requests run one at a time on one persistent chDB session over the data
directory; when a response is sent, the statement's effects are on disk (chDB writes MergeTree
parts synchronously) and survive a restart on the same directory. Loopback addresses only;
the only user is `default` with an empty password.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import parse_qsl, urlsplit

from tests.support._chdb_http_engine import ChdbEngine, QueryRequest, QueryResult
from tests.support._chdb_http_errors import ClickHouseError
from tests.support._chdb_http_sql import Statement, is_valid_identifier, parse_statement
from tests.support._chdb_http_wire import (
    choose_encoding,
    decode_body,
    encode_body,
    form_fields,
    read_body,
)

log = logging.getLogger("chdb_http")

# URL parameters that steer the HTTP layer rather than being ClickHouse settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "wait_end_of_query",
        "compress",
        "decompress",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "cancel_http_readonly_queries_on_client_close",
        "buffer_size",
        "client_protocol_version",
        "quota_key",
        "role",
        "user",
        "password",
    }
)
_TRANSPORT_PREFIXES = ("param_", "http_")
_CONTENT_TYPES = (
    ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
    ("TSV", "text/tab-separated-values; charset=UTF-8"),
    ("CSV", "text/csv; charset=UTF-8; header=absent"),
    ("JSON", "application/json; charset=UTF-8"),
    ("Native", "application/octet-stream"),
    ("RowBinary", "application/octet-stream"),
    ("Parquet", "application/octet-stream"),
    ("Arrow", "application/octet-stream"),
)
_TEXT = "text/plain; charset=UTF-8"
MAX_REQUEST_LINE = 1024 * 1024  # ClickHouse's http_max_uri_size default


def content_type(fmt: str | None) -> str:
    for prefix, value in _CONTENT_TYPES:
        if fmt and fmt.startswith(prefix):
            return value
    return _TEXT


def settings_of(params: dict[str, str]) -> dict[str, str]:
    """URL parameters that are ClickHouse settings (validated: they go into `SET`)."""
    settings = {
        k: v
        for k, v in params.items()
        if k not in TRANSPORT_PARAMS and not k.startswith(_TRANSPORT_PREFIXES)
    }
    for name in settings:
        if not is_valid_identifier(name):
            raise ClickHouseError.of("BAD_ARGUMENTS", f"Invalid setting name {name!r}")
    return settings


def _log_excerpt(statement: Statement | None) -> str:
    if statement is None:
        return "-"
    sql = " ".join(statement.sql.split())
    cut = sql.upper().find(" VALUES")  # never log inline VALUES data
    return (sql[:cut] + " VALUES …" if cut >= 0 else sql)[:200]


def _as_clickhouse_error(exc: Exception) -> ClickHouseError:
    if isinstance(exc, ClickHouseError):
        return exc
    log.exception("unexpected error")  # a bug here, not a query error: keep the traceback
    return ClickHouseError.from_exception(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"
    timeout = 600  # idle keep-alive connections are dropped after this
    # Headers and body go out in two writes: with Nagle on, the body waited for the client's
    # delayed ACK of the headers, ~40 ms on every request of a kept-alive connection.
    disable_nagle_algorithm = True
    server: ChdbHttpServer

    def handle_one_request(self) -> None:
        """The stdlib's, with ClickHouse's 1 MiB request-line limit instead of 64 KiB
        (clickhouse-connect's command() puts long bind parameters into the URL)."""
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            elif not self.raw_requestline:
                self.close_connection = True
            elif self.parse_request():
                self._dispatch()
                self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def _dispatch(self) -> None:
        if self.command in ("GET", "POST"):
            self._serve(readonly=self.command == "GET")
        else:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method {self.command}")

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: one line per query is logged by _serve instead."""

    def _serve(self, readonly: bool) -> None:
        started = time.perf_counter()  # the log's duration includes receiving the body
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = read_body(
                self.rfile,
                self.headers.get("Transfer-Encoding"),
                self.headers.get("Content-Length"),
            )
        except (ValueError, OSError) as exc:
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, f"Cannot read the request body: {exc}")
            return
        if url.path in ("/ping", "/replicas_status") or (
            url.path == "/" and "query" not in params and not body
        ):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
        elif url.path != "/":
            self._reply(404, f"There is no handle {url.path}\n".encode(), {"Content-Type": _TEXT})
        else:
            self._serve_query(params, body, readonly, started)

    def _serve_query(
        self, params: dict[str, str], body: bytes, readonly: bool, started: float
    ) -> None:
        self._response_encoding: str | None = None
        query_id = params.get("query_id") or str(uuid.uuid4())
        request: QueryRequest | None = None
        try:
            self._authenticate(params)
            request = self._request(params, body, readonly)
            result = self.server.engine.execute(request)
        except Exception as exc:
            error = _as_clickhouse_error(exc)
            self._reply_error(error, query_id)
            status, detail = error.http_status, f"error {error.code} {error.name}"
        else:
            self._reply_result(result, query_id, params)
            status, detail = 200, f"read {result.read_rows} written {result.written_rows} rows"
        log.info(
            "%s %d %.1fms qid=%s %s (in %s, out %s): %s",
            self.command,
            status,
            (time.perf_counter() - started) * 1000,
            query_id,
            detail,
            self.headers.get("Content-Encoding", "plain"),
            self._response_encoding or "plain",
            _log_excerpt(request.statement if request else None),
        )

    def _authenticate(self, params: dict[str, str]) -> None:
        user = self.headers.get("X-ClickHouse-User") or params.get("user") or "default"
        password = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode("utf-8", "replace")
            user, _, password = decoded.partition(":")
        elif authorization:
            user, password = "<token>", "<token>"
        if (user, password) != ("default", ""):
            raise ClickHouseError.of(
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, "
                "or there is no user with such name",
            )

    def _request(self, params: dict[str, str], body: bytes, readonly: bool) -> QueryRequest:
        if "1" in (params.get("compress"), params.get("decompress")):
            raise ClickHouseError.of(
                "NOT_IMPLEMENTED", "compress=1/decompress=1 (ClickHouse block compression)"
            )
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            params = params | {k: v.decode() for k, v in form_fields(body, ctype).items()}
            body = b""
        body = decode_body(body, self.headers.get("Content-Encoding"))
        query = params.get("query", "").encode()
        statement = parse_statement(query + b"\n" + body if query and body else query or body)
        if readonly and not statement.returns_rows:
            raise ClickHouseError.of(
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, "
                "method GET implies readonly. You should use method POST for modifying queries",
            )
        return QueryRequest(
            statement=statement,
            default_format=params.get("default_format")
            or self.headers.get("X-ClickHouse-Format")
            or "TabSeparated",
            database=params.get("database") or self.headers.get("X-ClickHouse-Database"),
            session_id=params.get("session_id") or None,
            settings=settings_of(params),
            params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
        )

    def _common_headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
        }

    def _reply_result(self, result: QueryResult, query_id: str, params: dict[str, str]) -> None:
        headers = self._common_headers(query_id)
        headers["Content-Type"] = content_type(result.fmt)
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary(), separators=(",", ":"))
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        body = result.body
        encoding = choose_encoding(self.headers.get("Accept-Encoding"))
        if body and encoding and params.get("enable_http_compression", "1") in ("1", "true"):
            body = encode_body(body, encoding)
            self._response_encoding = encoding
            headers["Content-Encoding"] = encoding
        self._reply(200, body, headers)

    def _reply_error(self, exc: ClickHouseError, query_id: str) -> None:
        headers = self._common_headers(query_id)
        headers["Content-Type"] = _TEXT
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        self._reply(exc.http_status, exc.body(self.server.engine.version), headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _require_loopback(host: str) -> None:
    address = ipaddress.ip_address(socket.gethostbyname(host))
    if not address.is_loopback:
        raise ValueError(f"refusing to bind {host} ({address}): loopback addresses only")


class ChdbHttpServer(ThreadingHTTPServer):
    """The HTTP server and its chDB engine; `start()`/`stop()` for in-process use."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, data_dir: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        _require_loopback(host)
        self.engine = ChdbEngine(data_dir)
        try:
            super().__init__((host, port), _Handler)
        except BaseException:
            self.engine.close()
            raise
        self._host = host
        self.display_name = socket.gethostname()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> ChdbHttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="chdb-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the chDB session (idempotent)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        self.engine.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ClickHouse-HTTP-compatible endpoint on chDB")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data-dir", required=True, help="chDB data directory (created)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s chdb-http %(message)s"
    )
    server = ChdbHttpServer(args.data_dir, args.host, args.port)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("serving %s (chDB %s, data %s)", server.url, server.engine.version, args.data_dir)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.engine.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

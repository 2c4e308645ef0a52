"""HTTPS with authentication in front of a plain-HTTP store of the local stack, for tests.

The devstack's Elasticsearch runs without security and its ClickHouse endpoint (chDB) serves
plain HTTP with one password-less user, so neither can check a CA, a password or an API key.
``TlsProxy`` terminates TLS with a certificate the devstack CA signed (``.devstack/tls``), checks
the credentials of every request the way the real store would (HTTP basic auth, or
Elasticsearch's ``Authorization: ApiKey …``), answers a refusal in the store's own words, and
forwards what it accepts to the store over plain HTTP (credentials removed: the stores behind it
take none). A client that does not trust the CA refuses the handshake itself.

What this proves and what not (docs/DEVSTACK.md): the sinks' TLS, CA, basic-auth and API-key
settings over real HTTPS, and how they fail; not a store's own security realm (roles,
privileges, API keys the store itself issued).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tests.support._chdb_http_errors import ClickHouseError

Dialect = Literal["elasticsearch", "clickhouse"]
# Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
    | {"proxy-authorization", "proxy-authenticate", "content-length", "host"}
)
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-clickhouse-user", "x-clickhouse-key"})


@dataclass(frozen=True)
class Credentials:
    """What the proxy accepts: a user and password (basic auth), an API key, or both."""

    username: str | None = None
    password: str | None = None
    api_key: str | None = None  # the encoded key a client sends as ``Authorization: ApiKey …``

    def accepts(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic" and self.username is not None:
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except ValueError:
                return False
            return decoded == f"{self.username}:{self.password or ''}"
        if scheme.lower() == "apikey" and self.api_key is not None:
            return value == self.api_key
        return False


class TlsProxy:
    """``https://127.0.0.1:<free port>`` in front of ``upstream`` (a plain ``http://`` URL)."""

    def __init__(
        self,
        upstream: str,
        certs_dir: Path,
        accept: Credentials,
        dialect: Dialect,
    ) -> None:
        url = urlsplit(upstream)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self.accept = accept
        self.dialect = dialect
        self.forwarded = 0  # requests that passed authentication
        self.refused = 0  # requests answered 401/403 for their credentials
        self.failed_handshakes = 0  # clients that did not complete TLS (e.g. an untrusted CA)
        self._lock = threading.Lock()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs_dir / "server.pem", certs_dir / "server.key")
        self._server = _Server(self, context)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tls-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def count(self, what: Literal["forwarded", "refused", "failed_handshakes"]) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


@contextmanager
def tls_proxy(
    upstream: str, certs_dir: Path, accept: Credentials, dialect: Dialect
) -> Iterator[TlsProxy]:
    proxy = TlsProxy(upstream, certs_dir, accept, dialect).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: TlsProxy, context: ssl.SSLContext) -> None:
        self.proxy = proxy
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, address = super().get_request()
        # The handshake runs in the request's thread (setup), not in the accept loop.
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gives up on the handshake (an untrusted CA) or hangs up is counted,
        not printed as a traceback."""
        self.proxy.count("failed_handshakes")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        assert isinstance(self.connection, ssl.SSLSocket)
        self.connection.settimeout(30)
        self.connection.do_handshake()

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the counters and the worker's log, not the proxy's."""

    def do_GET(self) -> None:
        self._relay()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _relay(self) -> None:
        body = self._read_body()
        proxy = self.server.proxy
        if not proxy.accept.accepts(self.headers.get("Authorization", "")):
            proxy.count("refused")
            self._refuse()
            return
        proxy.count("forwarded")
        status, reason, headers, answer = self._forward(body)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after the chunk

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The request as the store answers it over plain HTTP, without the credentials."""
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in _HOP_BY_HOP | _CREDENTIAL_HEADERS
        }
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
            upstream = self._upstream_connection()
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                answer = response.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
                continue
            return response.status, response.reason, response.getheaders(), answer
        raise AssertionError("unreachable")

    def _upstream_connection(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            host, port = self.server.proxy.upstream
            self._upstream = http.client.HTTPConnection(host, port, timeout=120)
        return self._upstream

    def _refuse(self) -> None:
        """401/403 as the store says it: what a client maps to a credentials error."""
        if self.server.proxy.dialect == "elasticsearch":
            status, headers, body = _elasticsearch_refusal(self.path)
        else:
            status, headers, body = _clickhouse_refusal(self.headers.get("Authorization", ""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _elasticsearch_refusal(path: str) -> tuple[int, dict[str, str], bytes]:
    reason = f"unable to authenticate user for REST request [{path.split('?', 1)[0]}]"
    error = {"type": "security_exception", "reason": reason}
    authenticate = 'Basic realm="security", charset="UTF-8", ApiKey'
    body = {"error": {"root_cause": [error], **error}, "status": 401}
    headers = {
        "Content-Type": "application/json",
        "WWW-Authenticate": authenticate,
        "X-Elastic-Product": "Elasticsearch",
    }
    return 401, headers, json.dumps(body).encode()


def _clickhouse_refusal(authorization: str) -> tuple[int, dict[str, str], bytes]:
    user = "default"
    if authorization.lower().startswith("basic "):
        with suppress(ValueError):
            user = base64.b64decode(authorization[6:]).decode().partition(":")[0] or user
    error = ClickHouseError.of(
        "AUTHENTICATION_FAILED",
        f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
    )
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "X-ClickHouse-Exception-Code": str(error.code),
    }
    return error.http_status, headers, error.body("tls-proxy")

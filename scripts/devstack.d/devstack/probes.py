"""Readiness probes that need nothing beyond the standard library.

Each probe makes one real request and returns what the service says about itself, or raises
`NotReady` with the reason.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class NotReady(Exception):
    """The service did not (yet) answer the request as expected."""


def http(url: str, body: bytes | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        raise NotReady(f"{url}: {exc}") from exc


def http_json(url: str, timeout: float = 3.0) -> dict[str, object]:
    status, body = http(url, timeout=timeout)
    if status != 200:
        raise NotReady(f"{url}: HTTP {status} {body[:200]!r}")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise NotReady(f"{url}: unexpected body {body[:200]!r}")
    return data


# --- Kafka wire protocol: just enough for ApiVersions v0 and Metadata v4..v8 -------------

API_METADATA = 3
API_VERSIONS = 18


@dataclass
class KafkaCluster:
    cluster_id: str | None
    controller_id: int
    brokers: list[tuple[int, str, int]]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        size = self.take(">h")
        if size < 0:
            return None
        value = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return value


def _request(sock: socket.socket, api: int, version: int, corr: int, body: bytes) -> _Reader:
    client = b"fanout-devstack"
    header = struct.pack(">hhih", api, version, corr, len(client)) + client
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != corr:
        raise NotReady("kafka: correlation id mismatch")
    return reader


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise NotReady("kafka: connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    reader = _request(sock, API_VERSIONS, 0, 1, b"")
    error = reader.take(">h")
    if error:
        raise NotReady(f"kafka: ApiVersions error {error}")
    apis = {}
    for _ in range(reader.take(">i")):
        key, low, high = reader.take(">h"), reader.take(">h"), reader.take(">h")
        apis[key] = (low, high)
    return apis


def _metadata(sock: socket.socket, version: int) -> KafkaCluster:
    body = struct.pack(">ib", -1, 0)  # all topics, no auto-creation
    if version >= 8:
        body += struct.pack(">bb", 0, 0)  # no authorized-operations
    reader = _request(sock, API_METADATA, version, 2, body)
    reader.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.take(">i")):
        node, host, port = reader.take(">i"), reader.string(), reader.take(">i")
        reader.string()  # rack
        brokers.append((node, host or "", port))
    cluster_id = reader.string()
    return KafkaCluster(cluster_id, reader.take(">i"), brokers)


def kafka(host: str, port: int, timeout: float = 3.0) -> KafkaCluster:
    """ApiVersions, then Metadata: ready once a broker and an active controller are listed."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            apis = _api_versions(sock)
            low, high = apis.get(API_METADATA, (0, -1))
            version = min(high, 8)
            if version < max(low, 4):
                raise NotReady(f"kafka: no Metadata version in 4..8 (broker has {low}..{high})")
            cluster = _metadata(sock, version)
    except (OSError, struct.error) as exc:
        raise NotReady(f"kafka {host}:{port}: {exc}") from exc
    if not cluster.brokers or cluster.controller_id < 0:
        raise NotReady("kafka: no broker registered / no active controller yet")
    return cluster


def kafka_tls(host: str, port: int, cafile: Path, timeout: float = 3.0) -> int:
    """A TLS listener (SSL or SASL_SSL): the handshake verified against ``cafile`` (certificate
    chain and host name), then ApiVersions, which a broker answers before any SASL login.
    Returns how many APIs the broker lists."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(timeout)
            return len(_api_versions(sock))
    except (OSError, struct.error) as exc:  # ssl.SSLError is an OSError
        raise NotReady(f"kafka {host}:{port} (TLS): {exc}") from exc

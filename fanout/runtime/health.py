"""One HTTP port for ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

- live: every worker's loop has turned within ``stall_after_s`` (a stuck loop gets restarted);
  a worker waiting on a down sink still turns its loop, so it stays live.
- ready: every worker has its sink open, is subscribed, and its sink accepts writes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@dataclass
class WorkerStatus:
    sink: str
    opened: bool = False
    subscribed: bool = False
    sink_up: bool = True
    last_turn: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    def turned(self) -> None:
        self.last_turn = time.monotonic()

    @property
    def ready(self) -> bool:
        return self.opened and self.subscribed and self.sink_up


class HealthRegistry:
    def __init__(self, stall_after_s: float = 120.0) -> None:
        self._workers: list[WorkerStatus] = []
        self._stall_after_s = stall_after_s

    def register(self, status: WorkerStatus) -> None:
        self._workers.append(status)

    def live(self) -> bool:
        now = time.monotonic()
        return all(now - worker.last_turn < self._stall_after_s for worker in self._workers)

    def ready(self) -> bool:
        return bool(self._workers) and all(worker.ready for worker in self._workers)

    def describe(self) -> dict[str, Any]:
        return {
            worker.sink: {
                "opened": worker.opened,
                "subscribed": worker.subscribed,
                "sink_up": worker.sink_up,
                "last_error": worker.last_error,
            }
            for worker in self._workers
        }


class HealthServer:
    """Serves the registry on a daemon thread; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, registry: HealthRegistry, host: str, port: int) -> None:
        handler = _handler_for(registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(registry: HealthRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send_state(registry.live())
            elif self.path == "/readyz":
                self._send_state(registry.ready())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send_state(self, ok: bool) -> None:
            body = json.dumps({"ok": ok, "sinks": registry.describe()}).encode()
            self._send(200 if ok else 503, body, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds would drown the log; stay quiet."""

    return Handler

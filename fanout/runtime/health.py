"""One HTTP port for ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

- live (``/healthz``): the loop is alive. Every worker's loop has turned within
  ``stall_after_s`` (a stuck loop gets restarted); a worker waiting on a down or hung sink, or
  retrying its sink's ``open()`` at start, still turns its loop. A worker stopped by a
  configuration error is not live: it will exit, and says why.
- ready (``/readyz``): records are moving or there is nothing to move. Every worker has its
  sink open, has joined its group (an assignment, even an empty one, arrived), its sink
  accepts writes, no call to the store has gone unanswered longer than the store's timeout,
  the Avro schema registry (if any) answers, and no configuration error stopped it.

Both answer 200 or 503 with the same JSON body: per sink, the state and, when not ready, a
``reason`` in words (``"configuration error: …"``, ``"sink down: …"``,
``"schema registry <url> unavailable: …"``, …).
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
    assigned: bool = False  # the group answered: an assignment (perhaps empty) arrived
    sink_up: bool = True
    last_turn: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    # The configuration error that stopped the worker (it consumes nothing and will exit).
    config_error: str | None = None
    # Why the consumer group has not taken this worker in yet (a refused join), if it said.
    group_error: str | None = None
    # When the call to the store in progress (open or write) started; None between calls.
    call_started: float | None = None
    hung_after_s: float = 60.0  # the store's own timeout: a call unanswered longer hangs
    # Why the schema registry is being retried (the loop waits on it); None while it answers.
    registry_error: str | None = None

    def turned(self) -> None:
        self.last_turn = time.monotonic()

    def hung_for(self, now: float | None = None) -> float | None:
        """Seconds the call in progress has gone unanswered past ``hung_after_s``, or None."""
        started = self.call_started
        if started is None:
            return None
        elapsed = (time.monotonic() if now is None else now) - started
        return elapsed if elapsed > self.hung_after_s else None

    def unready_reason(self, now: float | None = None) -> str | None:
        """Why records are not moving, in words; None if the worker is ready."""
        if self.config_error is not None:
            return f"configuration error: {self.config_error}"
        if self.registry_error is not None:
            return self.registry_error
        hung = self.hung_for(now)
        if hung is not None:
            return (
                f"no answer from the store for {hung:.0f} s "
                f"(timeout {self.hung_after_s:g} s); last error: {self.last_error or 'none'}"
            )
        if not self.opened:
            detail = f": {self.last_error}" if self.last_error else ""
            return f"opening the sink{detail}"
        if not self.sink_up:
            return f"sink down: {self.last_error}"
        if self.group_error is not None:
            return f"joining the consumer group again: {self.group_error}"
        if not self.subscribed:
            return "not subscribed"
        if not self.assigned:
            return "waiting for the consumer group to assign partitions"
        return None

    @property
    def ready(self) -> bool:
        return self.unready_reason() is None


class HealthRegistry:
    def __init__(self, stall_after_s: float = 120.0) -> None:
        self._workers: list[WorkerStatus] = []
        self._stall_after_s = stall_after_s

    def register(self, status: WorkerStatus) -> None:
        self._workers.append(status)

    def _dead_reason(self, worker: WorkerStatus, now: float) -> str | None:
        if worker.config_error is not None:
            return f"configuration error: {worker.config_error}"
        idle = now - worker.last_turn
        if idle >= self._stall_after_s:
            return f"the worker loop has not turned for {idle:.0f} s"
        return None

    def live(self) -> bool:
        now = time.monotonic()
        return all(self._dead_reason(worker, now) is None for worker in self._workers)

    def ready(self) -> bool:
        now = time.monotonic()
        return bool(self._workers) and all(
            worker.unready_reason(now) is None for worker in self._workers
        )

    def describe(self, liveness: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        sinks: dict[str, Any] = {}
        for worker in self._workers:
            reason = self._dead_reason(worker, now) if liveness else worker.unready_reason(now)
            sinks[worker.sink] = {
                "opened": worker.opened,
                "subscribed": worker.subscribed,
                "assigned": worker.assigned,
                "sink_up": worker.sink_up,
                "hung": worker.hung_for(now) is not None,
                "config_error": worker.config_error,
                "group_error": worker.group_error,
                "registry_error": worker.registry_error,
                "last_error": worker.last_error,
                "reason": reason,
            }
        return sinks


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
                self._send_state(registry.live(), registry.describe(liveness=True))
            elif self.path == "/readyz":
                self._send_state(registry.ready(), registry.describe())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send_state(self, ok: bool, sinks: dict[str, Any]) -> None:
            body = json.dumps({"ok": ok, "sinks": sinks}).encode()
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

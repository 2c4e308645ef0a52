"""Running sinks: one worker thread per sink, the health/metrics server, signal handling.

In production one process runs one sink (``fanout run --sink NAME``); without ``--sink`` every
enabled sink runs side by side in this process, each with its own consumer group, so a slow or
broken sink never holds back another.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from fanout.errors import ConfigError
from fanout.runtime.health import HealthRegistry, HealthServer, WorkerStatus
from fanout.runtime.worker import SinkWorker, WorkerOptions
from fanout.settings import Settings, require_subscription
from sinks import create_sink

log = logging.getLogger(__name__)

# Every record allocates a few dicts that live until its batch is written; with the default
# threshold (700) young collections run every few records and mostly promote live objects.
GC_GEN0_THRESHOLD = 50_000


def build_worker(name: str, settings: Settings, options: WorkerOptions | None = None) -> SinkWorker:
    sink = create_sink(name, settings.sinks.get(name))
    return SinkWorker(name, settings, sink, WorkerStatus(name), options)


class App:
    """Owns the workers of one process and stops them together."""

    def __init__(self, settings: Settings, sink_names: Sequence[str]) -> None:
        require_subscription(settings)
        self.settings = settings
        self.health = HealthRegistry(stall_after_s=settings.kafka.max_poll_interval_ms / 1000)
        self.workers = [build_worker(name, settings) for name in sink_names]
        for worker in self.workers:
            self.health.register(worker.status)
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._server: HealthServer | None = None

    @property
    def metrics_port(self) -> int | None:
        return self._server.port if self._server else None

    def start(self) -> None:
        tune_gc()
        metrics = self.settings.metrics
        if metrics.enabled:
            self._server = HealthServer(self.health, metrics.host, metrics.port)
            self._server.start()
        for worker in self.workers:
            thread = threading.Thread(
                target=self._run_worker, args=(worker,), name=f"sink-{worker.sink_name}"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def wait(self) -> int:
        """Block until every worker has stopped.

        0 if all stopped cleanly, 2 if a sink rejected its configuration (after its
        ``config_error_exit_s``: credentials, grants, a missing database, an error no table
        knows that kept failing), 1 for other crashes.
        """
        for thread in self._threads:
            thread.join()
        if self._server is not None:
            self._server.stop()
        if any(isinstance(exc, ConfigError) for exc in self._errors):
            return 2
        return 1 if self._errors else 0

    def _run_worker(self, worker: SinkWorker) -> None:
        try:
            worker.run()
        except ConfigError as exc:
            if worker.status.config_error is None:  # else the worker said it (one line)
                log.error("invalid configuration: %s", exc, extra={"sink": worker.sink_name})
            self._fail(exc)
        except BaseException as exc:
            log.exception("worker crashed", extra={"sink": worker.sink_name})
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self.stop()  # one failed sink takes the process down so it gets restarted whole


def tune_gc() -> None:
    """Fewer collections for the per-record garbage; start-up objects out of their way."""
    gc.collect()
    gc.freeze()  # modules, settings, clients: never garbage, no longer scanned
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_until_signalled(app: App) -> int:
    """Run until SIGTERM/SIGINT, then drain: finish and commit the batch in hand, exit 0."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        app.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    app.start()
    return app.wait()

"""Logging set-up: one JSON object per line (or plain text for a terminal), secrets masked.

Every record passes :class:`SecretFilter` on its way out, whoever logged it (fanout, a driver,
librdkafka): its message, extra fields and traceback have secrets masked (``fanout.redact``).
librdkafka's own log goes through Python logging too (``fanout.runtime.kafka``), at WARNING and
above, with a repeated line said once a minute rather than on every reconnect.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from fanout.redact import mask_text, masked
from fanout.settings import LoggingSettings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
LIBRDKAFKA_LOGGER = "librdkafka"
# The drivers' retry warnings repeat what fanout logs once per outage ("sink down: …"), with a
# traceback per attempt; below DEBUG only their errors come through. urllib3.connectionpool by
# name: clickhouse-connect sets "urllib3" to WARNING when it is first used.
_DRIVERS = (
    "elastic_transport",
    "elasticsearch",
    "urllib3",
    "urllib3.connectionpool",
    "clickhouse_connect",
)
# Loggers whose errors fanout handles and reports itself: clickhouse-connect logs every value
# it cannot serialize at ERROR with a traceback (once per bisection step), while the sink
# classifies it (data: the record goes to the DLQ, `record dead-lettered` logged once).
_HANDLED_DRIVER_ERRORS = ("clickhouse_connect.driver.transform",)
REPEAT_WINDOW_S = 60.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


class SecretFilter(logging.Filter):
    """Masks secrets in a record's message, extra fields, traceback and stack."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(sorted(set(secrets), key=len, reverse=True))  # longest first

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it when the handler formats it
            return True
        record.msg, record.args = mask_text(message, self.secrets), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, masked(value, key, self.secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return True


class RepeatFilter(logging.Filter):
    """Lets a message through once per ``window_s``; the next one after that says how many were
    held back. librdkafka logs a failed connection on every reconnect attempt."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[str, tuple[float, int]] = {}  # shape -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        shape = re.sub(r"\d+", "#", f"{record.levelno} {record.getMessage()}")
        now = time.monotonic()
        last, held = self._seen.get(shape, (-self.window_s, 0))
        if now - last < self.window_s:
            self._seen[shape] = (last, held + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[shape] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last minute)"
            record.args = None
        return True


def configure_logging(settings: LoggingSettings, secrets: Iterable[str] = ()) -> None:
    """Log to stderr in ``settings.format``; ``secrets`` (``fanout.redact.secret_values``) are
    masked wherever they appear, on top of what looks like a secret."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    driver_level = logging.DEBUG if settings.level == "DEBUG" else logging.ERROR
    for noisy in _DRIVERS:
        logging.getLogger(noisy).setLevel(driver_level)
    handled_level = logging.DEBUG if settings.level == "DEBUG" else logging.CRITICAL
    for handled in _HANDLED_DRIVER_ERRORS:
        logging.getLogger(handled).setLevel(handled_level)
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    librdkafka.setLevel(logging.DEBUG if settings.level == "DEBUG" else logging.WARNING)
    librdkafka.filters[:] = [RepeatFilter()]

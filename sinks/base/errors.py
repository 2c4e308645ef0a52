"""The three classes every sink sorts its driver's errors into, and the one mapping to raise them.

Each sink keeps one error table (its ``errors.py``): a function from a driver exception to a
:class:`Verdict` (class + message), or None for an exception that is not the driver's. The
runtime acts on the class, not on the driver:

    TRANSIENT      the store is away, slow or overloaded   -> RetryableError: retried with
                                                             backoff for as long as it lasts,
                                                             partitions paused, nothing
                                                             dead-lettered, /readyz 503
    DATA           the records are at fault                -> MappingError: per record to the
                                                             DLQ (a batch that fails whole is
                                                             bisected, which also splits a
                                                             batch that is too large)
    CONFIGURATION  the sink cannot work as configured      -> ConfigError: the worker stops
                   (credentials, grants, a missing           consuming, /healthz and /readyz
                   database, an unknown setting)             503 with the reason, exit after
                                                             ``config_error_exit_s``

A driver error the table recognises as the driver's but has no row for (an unknown ClickHouse
code, an unexpected SQLSTATE) is ``UNKNOWN``, not a fourth class: an UnknownError, retried like a
transient one at most ``retry.unknown_error_attempts`` times, then a CONFIGURATION error. An
exception no table recognises at all is handled the same way by the runtime. Nothing is
retried forever without the operator being told.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from fanout.errors import ConfigError, FanoutError, MappingError, RetryableError, UnknownError


class ErrorClass(enum.Enum):
    TRANSIENT = "transient"
    DATA = "data"
    CONFIGURATION = "configuration"
    UNKNOWN = "unknown"  # no row in the table: bounded retry, then CONFIGURATION


class Verdict(NamedTuple):
    error_class: ErrorClass
    message: str

    def error(self) -> FanoutError:
        return _RAISED[self.error_class](self.message)


_RAISED: dict[ErrorClass, type[FanoutError]] = {
    ErrorClass.TRANSIENT: RetryableError,
    ErrorClass.DATA: MappingError,
    ErrorClass.CONFIGURATION: ConfigError,
    ErrorClass.UNKNOWN: UnknownError,
}

Classifier = Callable[[BaseException], Verdict | None]


def class_of(error: BaseException) -> ErrorClass | None:
    """The class a fanout error stands for (None for an exception that is not fanout's)."""
    if isinstance(error, ConfigError):
        return ErrorClass.CONFIGURATION
    if isinstance(error, UnknownError):
        return ErrorClass.UNKNOWN
    if isinstance(error, RetryableError):
        return ErrorClass.TRANSIENT
    if isinstance(error, FanoutError):
        return ErrorClass.DATA
    return None


@contextmanager
def mapped_errors(classify: Classifier) -> Iterator[None]:
    """Re-raise what ``classify`` recognises as fanout's error (``raise … from exc``); fanout's
    own errors and exceptions it does not recognise pass through unchanged."""
    try:
        yield
    except FanoutError:
        raise
    except Exception as exc:
        verdict = classify(exc)
        if verdict is None:
            raise
        raise verdict.error() from exc


def shorten(message: str, limit: int = 500) -> str:
    """One line of at most ``limit`` characters: driver messages can span pages."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + "…"

"""The three classes every sink sorts its driver's errors into, and the one mapping to raise them.

Each sink keeps one error table (its ``errors.py``): a function from a driver exception to a
:class:`Verdict` (class + message), or None for an exception that is not the driver's. The
runtime acts on the class, not on the driver:

    TRANSIENT      the store is away, slow or overloaded   -> RetryableError: retried with
                                                             backoff, partitions paused,
                                                             nothing dead-lettered
    DATA           the records are at fault                -> MappingError: per record to the
                                                             DLQ (a batch is bisected)
    CONFIGURATION  the sink cannot work as configured      -> ConfigError: the worker stops
                   (credentials, grants, a missing database)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from fanout.errors import ConfigError, FanoutError, MappingError, RetryableError


class ErrorClass(enum.Enum):
    TRANSIENT = "transient"
    DATA = "data"
    CONFIGURATION = "configuration"


class Verdict(NamedTuple):
    error_class: ErrorClass
    message: str

    def error(self) -> FanoutError:
        return _RAISED[self.error_class](self.message)


_RAISED: dict[ErrorClass, type[FanoutError]] = {
    ErrorClass.TRANSIENT: RetryableError,
    ErrorClass.DATA: MappingError,
    ErrorClass.CONFIGURATION: ConfigError,
}

Classifier = Callable[[BaseException], Verdict | None]


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

"""One exception tree for the whole service.

    FanoutError
    ├── ConfigError          the settings, or the store as they reach it, cannot work: a bad key
    │                        at start (exit 2), or a sink refused (credentials, grants, a missing
    │                        database): the worker stops consuming and exits after a wait
    ├── RetryableError       the whole batch failed for a reason that may pass (sink down,
    │   │                    timeout, overload); retried with backoff, never dead-lettered
    │   └── UnknownError     an error no error table knows: retried a bounded number of times
    │                        (``retry.unknown_error_attempts``), then a ConfigError
    └── PermanentError       retrying will not help; the record goes to the DLQ
        ├── DecodeError      the Kafka message is not a change event we understand
        └── MappingError     the event cannot be mapped onto the target (type change, bad name)

Sinks map their driver's exceptions onto this tree at their boundary (``raise … from exc``),
through their error table (``sinks/<name>/errors.py``).
"""


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""


class ConfigError(FanoutError):
    """Invalid configuration; the message names the offending key."""


class RetryableError(FanoutError):
    """A failure of the whole batch that may pass if tried again later."""


class UnknownError(RetryableError):
    """A failure no error table classifies: it may pass, but nobody said so. Retried a bounded
    number of times, then treated as a configuration problem (never retried forever)."""


class PermanentError(FanoutError):
    """A failure that will recur on every attempt; the record belongs in the DLQ."""


class DecodeError(PermanentError):
    """The message could not be decoded into a change event."""


class MappingError(PermanentError):
    """The event could not be mapped onto the target store."""

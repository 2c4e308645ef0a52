"""One exception tree for the whole service.

    FanoutError
    ├── ConfigError          bad configuration, raised at start; names the key
    ├── RetryableError       the whole batch failed for a reason that may pass (sink down,
    │                        timeout, overload); retried with backoff, never dead-lettered
    └── PermanentError       retrying will not help; the record goes to the DLQ
        ├── DecodeError      the Kafka message is not a change event we understand
        └── MappingError     the event cannot be mapped onto the target (type change, bad name)

Sinks map their driver's exceptions onto this tree at their boundary (``raise … from exc``).
"""


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""


class ConfigError(FanoutError):
    """Invalid configuration; the message names the offending key."""


class RetryableError(FanoutError):
    """A failure of the whole batch that may pass if tried again later."""


class PermanentError(FanoutError):
    """A failure that will recur on every attempt; the record belongs in the DLQ."""


class DecodeError(PermanentError):
    """The message could not be decoded into a change event."""


class MappingError(PermanentError):
    """The event could not be mapped onto the target store."""

"""Writer schemas by id from a Confluent-compatible schema registry, cached for the process.

Helper of ``fanout.debezium.avro``. A schema id names one immutable schema, so each is fetched
once (``confluent_kafka.schema_registry`` does the HTTP, TLS and basic auth) and kept: the
decoder asks the registry only when a new id appears, i.e. after a source table's DDL.

Errors, in the classes of ``fanout.errors``:

- the registry refuses the credentials (401/403) or is not a registry at that URL -> ConfigError
  (the worker stops consuming and says why);
- the registry does not know the id (404, error 40403) -> DecodeError: that record goes to the
  DLQ with the reason, the rest are written. The answer is remembered for ``MISSING_FOR_S``
  (at most ``MISSING_MAX`` ids), so a run of records with a bogus id costs one request, not
  one each; after that the id is asked again (a registry restored from a backup may have it);
- the registry cannot be reached, times out or answers 5xx -> retried with backoff for
  ``unavailable_after_s``, then ConfigError naming the URL (nothing is dead-lettered because
  the registry is down, and nothing waits forever without the operator being told). While it
  retries, ``on_unavailable`` hears why (the worker's ``/readyz`` says so), and ``None`` once
  the registry answers again or the retries end. A ``stop`` event set meanwhile (the worker
  told to stop) ends the wait at once with RetryableError: the record is consumed again later.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fanout.errors import ConfigError, DecodeError, RetryableError
from fanout.settings import SchemaRegistrySettings

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({40403, 40401})  # schema not found, subject not found
_REFUSED_STATUSES = frozenset({401, 403})
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 10.0
MISSING_FOR_S = 30.0  # how long a 404'd id is answered from memory
MISSING_MAX = 1024  # how many 404'd ids are remembered (the oldest is forgotten first)

Fetch = Callable[[int], str]  # schema id -> the schema's JSON text; raises what the client does
Watch = Callable[[str | None], None]  # why the registry is unavailable; None when it answers


def _unwatched(_reason: str | None) -> None:
    """No one to tell (a decoder outside a worker: ``fanout dlq show``, tests)."""


class SchemaRegistry:
    """Avro writer schemas by id, parsed once; ``fetch`` is the only I/O."""

    def __init__(
        self,
        url: str,
        fetch: Fetch,
        unavailable_after_s: float = 60.0,
        on_unavailable: Watch = _unwatched,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.url = url
        self._stop = stop or threading.Event()  # never set: a plain sleep
        self._fetch = fetch
        self._unavailable_after_s = unavailable_after_s
        self._on_unavailable = on_unavailable
        self._clock = clock
        self._schemas: dict[int, Any] = {}
        # 404'd ids -> (answered from memory until, the reason), oldest first
        self._missing: OrderedDict[int, tuple[float, str]] = OrderedDict()

    @classmethod
    def connect(
        cls,
        settings: SchemaRegistrySettings,
        on_unavailable: Watch = _unwatched,
        stop: threading.Event | None = None,
    ) -> SchemaRegistry:
        """A registry client for ``kafka.schema_registry`` settings (url, auth, CA, timeouts);
        ``stop`` cuts a retry's wait short."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        client = SchemaRegistryClient(client_config(settings))

        def fetch(schema_id: int) -> str:
            schema = client.get_schema(schema_id)
            if schema.schema_type not in (None, "AVRO"):
                raise DecodeError(
                    f"schema id {schema_id} is a {schema.schema_type} schema, not Avro"
                    " (kafka.value_format avro decodes Avro only)"
                )
            return str(schema.schema_str)

        return cls(
            str(settings.url), fetch, settings.unavailable_after_s, on_unavailable, stop=stop
        )

    def schema(self, schema_id: int) -> Any:
        """The parsed writer schema (JSON: a dict, list or name) registered under ``schema_id``."""
        found = self._schemas.get(schema_id)
        if found is None:
            found = self._schemas[schema_id] = self._load(schema_id)
        return found

    def _load(self, schema_id: int) -> Any:
        missing = self._missing.get(schema_id)
        if missing is not None:
            until, reason = missing
            if self._clock() < until:
                raise DecodeError(reason)
            del self._missing[schema_id]
        text = self._fetch_with_retries(schema_id)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DecodeError(f"schema id {schema_id} is not Avro schema JSON: {exc}") from exc

    def _remember_missing(self, schema_id: int, reason: str) -> None:
        self._missing[schema_id] = (self._clock() + MISSING_FOR_S, reason)
        while len(self._missing) > MISSING_MAX:
            self._missing.popitem(last=False)

    def _fetch_with_retries(self, schema_id: int) -> str:
        deadline = time.monotonic() + self._unavailable_after_s
        backoff = _FIRST_BACKOFF_S
        told = False
        try:
            while True:
                try:
                    return self._fetch_classified(schema_id)
                except RetryableError as exc:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ConfigError(
                            f"schema registry {self.url} unavailable for"
                            f" {self._unavailable_after_s:g} s (kafka.schema_registry.url): {exc}"
                        ) from exc
                    log.warning("schema registry unavailable, retrying: %s", exc)
                    self._on_unavailable(f"schema registry {self.url} unavailable: {exc}")
                    told = True
                    # Nothing to decode until it answers; a stop must not wait out the window.
                    if self._stop.wait(min(backoff, remaining)):
                        raise RetryableError(
                            f"stopped while the schema registry {self.url} was unavailable"
                        ) from exc
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
        finally:
            if told:
                self._on_unavailable(None)

    def _fetch_classified(self, schema_id: int) -> str:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return self._fetch(schema_id)
        except SchemaRegistryError as exc:
            if _not_found(exc):
                missing = f"schema id {schema_id} is not in the schema registry {self.url}"
                self._remember_missing(schema_id, missing)
                raise DecodeError(missing) from exc
            raise _classified(exc, schema_id, self.url) from exc
        except (DecodeError, ConfigError):
            raise
        except Exception as exc:  # the HTTP client's transport errors: refused, reset, timeout
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc


def _not_found(exc: Any) -> bool:
    """The registry's answer that it has no such schema id."""
    status, code = exc.http_status_code, exc.error_code
    return code in _NOT_FOUND_CODES or (status == 404 and code in (None, -1, 404))


def _classified(exc: Any, schema_id: int, url: str) -> Exception:
    """A registry's HTTP answer as one of fanout's error classes."""
    status = exc.http_status_code
    if status in _REFUSED_STATUSES:
        return ConfigError(
            f"schema registry {url} refused the credentials (HTTP {status}): check"
            " kafka.schema_registry.basic_auth_user and basic_auth_password"
        )
    if status is not None and (status >= 500 or status == 429 or status < 0):
        return RetryableError(f"HTTP {status}: {exc.error_message}")
    return ConfigError(
        f"schema registry {url} answered HTTP {status} ({exc.error_message}) for schema id"
        f" {schema_id}: is kafka.schema_registry.url a Confluent-compatible registry API?"
    )


def client_config(settings: SchemaRegistrySettings) -> dict[str, Any]:
    """``confluent_kafka.schema_registry`` settings for ``kafka.schema_registry``."""
    config: dict[str, Any] = {"url": settings.url, "timeout": settings.timeout_s}
    config["max.retries"] = 0  # retried here, under one deadline, with the reason logged
    if settings.ssl_ca_location:
        config["ssl.ca.location"] = settings.ssl_ca_location
    if settings.basic_auth_user:
        password = settings.basic_auth_password
        secret = password.get_secret_value() if password is not None else ""
        config["basic.auth.user.info"] = f"{settings.basic_auth_user}:{secret}"
    return config

"""Secrets kept out of everything fanout prints: ``check-config``, log lines, error messages.

Three ways a secret is recognised, each cheap enough for every log line:

- by its key: a settings key or ``kafka.extra`` librdkafka property whose name says password,
  secret, token, credentials or key material (``sasl.oauthbearer.client.secret``,
  ``ssl.keystore.password``, ``ssl.key.pem``, ``api_key``), and ``key=value`` / ``"key": value``
  pairs of such names inside free text (a conninfo string, a driver's error);
- by its place: the password in a URL's user info (``https://user:pass@host``);
- by its value: the configured secrets themselves (:func:`secret_values`), wherever a driver
  echoes them, if they are long enough not to be an ordinary word (the local stack's password is
  ``fanout``, like its user, database and group prefix).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from fanout.settings import Settings

MASK = "**********"  # what pydantic prints for a SecretStr
# Shorter configured secrets are masked by key and place only: replacing every occurrence of a
# short value would garble ordinary words in the logs.
MIN_VALUE_LENGTH = 8

_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "credential",
        "credentials",
        "apikey",
        "jaas",
    }
)
# "key" is a secret next to these words (api_key, private_key, ssl.key.pem), not on its own
# (ssl.key.location is a path, group_instance_id no key at all).
_KEY_BEFORE = frozenset({"api", "private", "secret", "access", "signing", "encryption", "session"})
_KEY_AFTER = frozenset({"pem", "material", "data", "password"})
# A name ending in one of these points at a secret or describes it, it is not the secret:
# ssl.keystore.location, sasl.oauthbearer.token.endpoint.url, password_file.
_REFERENCE_ENDINGS = frozenset(
    {"location", "file", "path", "url", "endpoint", "id", "username", "user", "mechanism", "type"}
)

_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*):[^\s@/'\"]*@")
# key=value, key: value, "key": "value" with a secret-looking key, in free text.
_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:password|passwd|pwd|passphrase|secret|token|api[_.-]?key|"""
    r"""credentials?)["']?)(?P<sep>\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;)}\]]+)""",
    re.IGNORECASE,
)


def _words(key: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def is_secret_key(key: str) -> bool:
    """Whether a setting or librdkafka property of this name holds a secret."""
    words = _words(key)
    if not words or words[-1] in _REFERENCE_ENDINGS:
        return False
    if any(word in _SECRET_WORDS for word in words):
        return True
    if words[-2:] == ["oauthbearer", "config"]:  # sasl.oauthbearer.config: clientSecret=...
        return True
    for i, word in enumerate(words):
        if word != "key":
            continue
        before = words[i - 1] if i else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        if before in _KEY_BEFORE or after in _KEY_AFTER:
            return True
    return False


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, secret ``key=value`` pairs and the given secrets masked."""
    for secret in secrets:
        if len(secret) >= MIN_VALUE_LENGTH and secret in text:
            text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(rf"\g<head>:{MASK}@", text)
    return _PAIR.sub(_mask_pair, text)


def _mask_pair(match: re.Match[str]) -> str:
    key, value = match.group("key"), match.group("value")
    if not is_secret_key(key.strip("\"'")) or value.strip("\"'") in ("", MASK, "None", "null"):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{key}{match.group('sep')}{quote}{MASK}{quote}"


def masked(value: Any, key: str = "", secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like structure with every secret masked (by key, URL and value)."""
    known = tuple(secrets)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Mapping):
        return {k: masked(v, str(k), known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item, key, known) for item in value]
    if key and is_secret_key(key) and value not in (None, "", MASK):
        return MASK
    if isinstance(value, str):
        return mask_text(value, known)
    return value


def secret_values(settings: Settings) -> set[str]:
    """The secrets configured in ``settings``: every SecretStr, every ``kafka.extra`` value under
    a secret-looking property, the passwords inside the Elasticsearch URLs."""
    found: set[str] = set()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), name)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, key)
        elif isinstance(value, str):
            if key and is_secret_key(key):
                found.add(value)
            for match in re.finditer(r"://[^\s:/@]*:([^\s@/]+)@", value):
                found.add(match.group(1))

    walk(settings, "")
    found.discard("")
    return found

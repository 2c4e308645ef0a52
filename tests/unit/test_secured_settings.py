"""Secured-connection settings: secrets inline, from the environment or from ``…_file``
siblings (mounted Kubernetes Secrets), mapped into librdkafka and psycopg; never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from fanout.errors import ConfigError
from fanout.redact import masked, secret_values
from fanout.runtime.kafka import KafkaUnreachable, probe
from fanout.settings import load_settings

SECRET = "s3cret-Passw0rd-value"

SCRAM = {
    "topics": ["a"],
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "fanout",
    "ssl_ca_location": "/etc/fanout/ca.pem",
}


def secret_file(tmp_path: Path, text: str = SECRET + "\n", name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_kafka_password_from_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    settings = load_settings(kafka={**SCRAM, "sasl_password_file": secret_file(tmp_path)})
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    conf = settings.kafka.client_config()
    assert conf["sasl.password"] == SECRET
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "fanout"
    assert conf["ssl.ca.location"] == "/etc/fanout/ca.pem"
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    path = secret_file(tmp_path, " a b \n\n")
    settings = load_settings(kafka={**SCRAM, "sasl_password_file": path})
    assert settings.kafka.client_config()["sasl.password"] == " a b \n"


def test_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PASSWORD_FILE", secret_file(tmp_path))
    assert load_settings().sinks.postgres.conninfo()["password"] == SECRET


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_KAFKA__SASL_PASSWORD", SECRET)
    settings = load_settings(kafka=SCRAM)
    assert settings.kafka.client_config()["sasl.password"] == SECRET


@pytest.mark.parametrize(
    ("section", "inline", "file"),
    [
        ("kafka", "sasl_password", "sasl_password_file"),
        ("kafka", "ssl_key_password", "ssl_key_password_file"),
        ("kafka", "oauth_client_secret", "oauth_client_secret_file"),
        ("sinks.postgres", "password", "password_file"),
        ("sinks.postgres", "sslpassword", "sslpassword_file"),
        ("sinks.elasticsearch", "password", "password_file"),
        ("sinks.elasticsearch", "api_key", "api_key_file"),
        ("sinks.clickhouse", "password", "password_file"),
    ],
)
def test_inline_and_file_together_fail_naming_both(
    tmp_path: Path, section: str, inline: str, file: str
) -> None:
    values = {inline: SECRET, file: secret_file(tmp_path)}
    if section == "kafka":
        overrides = {"kafka": {**SCRAM, **values}}
    else:
        overrides = {"sinks": {section.split(".")[1]: values}}
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    text = str(info.value)
    assert section in text and inline in text and file in text
    assert SECRET not in text


def test_unreadable_file_fails_naming_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=rf"password_file: cannot read {missing}"):
        load_settings(sinks={"postgres": {"password_file": str(missing)}})


def test_a_missing_file_named_like_a_secret_keeps_its_reason_through_the_masking(
    tmp_path: Path,
) -> None:
    """The chart names the files after their Secret keys (postgres-password)."""
    missing = tmp_path / "postgres-password"
    with pytest.raises(ConfigError) as info:
        load_settings(sinks={"postgres": {"password_file": str(missing)}})
    assert f"cannot read {missing} (No such file or directory)" in masked(str(info.value))


def test_empty_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(kafka={**SCRAM, "sasl_password_file": secret_file(tmp_path, "\n")})


def test_sasl_without_mechanism_or_password_fails() -> None:
    with pytest.raises(ConfigError, match="needs sasl_mechanism"):
        load_settings(kafka={"security_protocol": "SASL_SSL"})
    load_settings(kafka=SCRAM)  # the password may come later (a Secret absent where checked)
    with pytest.raises(ConfigError, match="needs sasl_username"):
        load_settings(kafka={**SCRAM, "sasl_username": None, "sasl_password": SECRET})
    with pytest.raises(ConfigError, match="security_protocol is SSL"):
        load_settings(kafka={**SCRAM, "security_protocol": "SSL", "sasl_password": SECRET})


def test_unknown_mechanism_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism"):
        load_settings(kafka={**SCRAM, "sasl_mechanism": "GSSAPI2", "sasl_password": SECRET})


def test_oauthbearer_maps_to_oidc_client_credentials(tmp_path: Path) -> None:
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "oauth_client_id": "fanout",
            "oauth_client_secret_file": secret_file(tmp_path),
            "oauth_token_endpoint_url": "https://idp.example/token",
            "oauth_scope": "kafka",
        }
    )
    conf = settings.kafka.client_config()
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.id"] == "fanout"
    assert conf["sasl.oauthbearer.client.secret"] == SECRET
    assert conf["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert conf["sasl.oauthbearer.scope"] == "kafka"


def test_mutual_tls_for_kafka_and_postgres(tmp_path: Path) -> None:
    settings = load_settings(
        kafka={
            "security_protocol": "SSL",
            "ssl_ca_location": "/c/ca.pem",
            "ssl_certificate_location": "/c/client.pem",
            "ssl_key_location": "/c/client.key",
            "ssl_key_password_file": secret_file(tmp_path),
        },
        sinks={
            "postgres": {
                "sslmode": "verify-full",
                "sslrootcert": "/c/ca.pem",
                "sslcert": "/c/pg.pem",
                "sslkey": "/c/pg.key",
                "sslpassword_file": secret_file(tmp_path),
                "password_file": secret_file(tmp_path),
            }
        },
    )
    conf = settings.kafka.client_config()
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.certificate.location"] == "/c/client.pem"
    assert conf["ssl.key.location"] == "/c/client.key"
    assert conf["ssl.key.password"] == SECRET
    info = settings.sinks.postgres.conninfo()
    assert info["sslmode"] == "verify-full"
    assert (info["sslrootcert"], info["sslcert"], info["sslkey"]) == (
        "/c/ca.pem",
        "/c/pg.pem",
        "/c/pg.key",
    )
    assert info["sslpassword"] == SECRET and info["password"] == SECRET


def test_check_config_dump_masks_secrets_read_from_files(tmp_path: Path) -> None:
    settings = load_settings(
        kafka={**SCRAM, "sasl_password_file": secret_file(tmp_path)},
        sinks={"postgres": {"password_file": secret_file(tmp_path)}},
    )
    dumped = settings.model_dump(mode="json", by_alias=True)
    printed = json.dumps(masked(dumped, secrets=secret_values(settings)))
    assert SECRET not in printed
    assert json.loads(printed)["kafka"]["sasl_password_file"].endswith("secret")


def test_sasl_without_a_password_is_one_line_at_start_not_a_traceback() -> None:
    kafka = load_settings(kafka=SCRAM).kafka  # the password may come later: not a config error
    with pytest.raises(KafkaUnreachable) as info:
        probe(kafka, timeout_s=1)  # librdkafka refuses the settings before any connection
    line = str(info.value)
    assert "\n" not in line
    assert "sasl.username and sasl.password must be set" in line
    assert "kafka.sasl_password_file" in line

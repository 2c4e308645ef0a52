"""The scheduled verify: a CronJob per sink in verify.sinks running `fanout verify` with the
sink's config and the source from verify.source (its password a mounted file, never an env
value), runs never overlapping, the result pushed to a Pushgateway when one is named."""

from __future__ import annotations

from tests.helm.chart import by_name, container, render, render_error

SOURCE = [
    "verify.enabled=true",
    "verify.source.host=db.internal",
    "verify.source.dbname=app",
    "verify.source.user=verifier",
    "verify.source.existingSecret=source-db",
]
NAME = "cdc-fanout-verify-postgres"


def cronjobs(*sets: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return by_name(render("full", sets=[*SOURCE, *sets]), "CronJob")


def test_no_cronjob_unless_enabled() -> None:
    assert by_name(render("full"), "CronJob") == {}


def test_one_cronjob_per_sink_runs_fanout_verify_with_the_sinks_config() -> None:
    jobs = cronjobs("verify.sinks={postgres,clickhouse}", "verify.pushgateway=http://pgw:9091")
    assert sorted(jobs) == ["cdc-fanout-verify-clickhouse", NAME]
    job = jobs[NAME]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    fanout = container({"spec": {"template": {"spec": pod}}})
    assert fanout["args"] == [
        "verify", "--sink", "postgres", "--json", "--settle-timeout", "120",
        "--pushgateway", "http://pgw:9091",
    ]  # fmt: skip
    env = {item["name"]: item.get("value") for item in fanout["env"]}
    assert env["FANOUT_CONFIG"] == "/etc/fanout/config.yaml"
    assert env["FANOUT_SOURCE__HOST"] == "db.internal"
    assert env["FANOUT_SOURCE__PASSWORD_FILE"] == "/etc/fanout-source/password"
    assert not any("valueFrom" in item for item in fanout["env"])  # the password is a file
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["source-secret"]["secret"]["secretName"] == "source-db"
    assert volumes["config"]["configMap"]["name"] == "cdc-fanout-postgres-config"


def test_a_sink_that_is_not_enabled_or_no_source_fails_the_render() -> None:
    assert "not enabled" in render_error("postgres", sets=[*SOURCE, "verify.sinks={elasticsearch}"])
    assert "verify.source.host" in render_error(
        "full", sets=["verify.enabled=true", "verify.sinks={postgres}"]
    )

"""The Elasticsearch sink when the store misbehaves: away, silent, or rejecting bulk items (429).

The shared devstack Elasticsearch is never stopped: "away" and "silent" are a TCP proxy in front
of it that the test cuts or mutes; 429s come from a second, throwaway node started here from the
devstack's unpacked distribution with a one-thread, one-slot write pool (port 9201/9301),
stopped at the end of the module. That node takes over a minute to start, so its tests are
marked ``slow``: run them with ``-m slow``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from fanout.errors import RetryableError
from fanout.events import ChangeEvent, Op, Origin
from fanout.runtime.metrics import EVENTS_WRITTEN
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.sink import ElasticsearchSink
from tests.support.pipeline import unique, wait_for
from tests.support.tcp_proxy import TcpProxy

NODE_HTTP_PORT, NODE_TRANSPORT_PORT = 9201, 9301
NODE_URL = f"http://127.0.0.1:{NODE_HTTP_PORT}"
SERVICE_USER = "fanout-devstack"  # the devstack's non-root user (ES refuses to run as root)


def change(key: int, version: int, op: Op = Op.UPSERT, offset: int = 0) -> ChangeEvent:
    row = {"id": key, "v": version} if op is Op.UPSERT else None
    origin = Origin("cdc.items", 0, offset)
    return ChangeEvent(op, "src.items", {"id": key}, row, version, version, origin, (), "items")


def searched(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=alias)
    return {hit["_id"]: hit["_source"] for hit in helpers.scan(es, index=alias, size=2000)}


@pytest.fixture
def prefix(es: Elasticsearch) -> Iterator[str]:
    name = unique("esload").lower() + "-"
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")


def test_an_unreachable_store_is_retryable_and_nothing_is_lost(
    proxy: TcpProxy, es: Elasticsearch, prefix: str
) -> None:
    settings = ElasticsearchSettings(hosts=[proxy.url], index_prefix=prefix, request_timeout_s=5)
    sink = ElasticsearchSink(settings)
    sink.open()
    try:
        assert list(sink.write([change(1, 1), change(2, 1)])) == []
        proxy.down()
        batch = [change(1, 2), change(2, 2, Op.DELETE), change(3, 1)]
        with pytest.raises(RetryableError):
            sink.write(batch)  # raises: no Failures, nothing for the DLQ
        with pytest.raises(RetryableError):
            ElasticsearchSink(settings).open()  # a sink starting while the store is away

        proxy.up()
        assert wait_for(lambda: _written(sink, batch), 30, "the write to succeed again") == "ok"
    finally:
        sink.close()
    docs = searched(es, prefix + "items")
    assert {doc_id: doc["v"] for doc_id, doc in docs.items()} == {"1": 2, "3": 1}


def _written(sink: ElasticsearchSink, batch: list[ChangeEvent]) -> str | None:
    try:
        failures = sink.write(batch)
    except RetryableError:
        return None
    return "ok" if not failures else f"failures: {failures}"


def test_a_store_that_does_not_answer_times_out_as_retryable(proxy: TcpProxy, prefix: str) -> None:
    settings = ElasticsearchSettings(hosts=[proxy.url], index_prefix=prefix, request_timeout_s=1)
    sink = ElasticsearchSink(settings)
    sink.open()
    try:
        proxy.down()
        proxy.mute = True
        proxy.up()
        started = time.monotonic()
        with pytest.raises(RetryableError, match=r"(?i)timeout|timed out"):
            sink.write([change(1, 1)])
        assert time.monotonic() - started < 30
    finally:
        sink.close()


# -- a throwaway node with a tiny write pool, for 429s --------------------------------------


class ThrowawayNode:
    """A second Elasticsearch node from the devstack's unpacked distribution, own temp dirs."""

    def __init__(self) -> None:
        self.home = _es_home()
        self.dir = Path(tempfile.mkdtemp(prefix="fanout-es-throwaway-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.url = NODE_URL

    def start(self) -> None:
        if _answers(self.url):
            pytest.fail(f"port {NODE_HTTP_PORT} is taken: another throwaway node is running?")
        conf = self._write_config()
        user = SERVICE_USER if os.geteuid() == 0 else None
        if user:
            subprocess.run(["chown", "-R", f"{user}:{user}", str(self.dir)], check=True)
            self.dir.chmod(0o755)
        env = {
            "ES_PATH_CONF": str(conf),
            "ES_JAVA_HOME": str(_java_home()),
            "ES_TMPDIR": str(self.dir / "tmp"),
            "HOME": str(self.dir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        with (self.dir / "stdout.log").open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.home / "bin" / "elasticsearch")],
                cwd=self.dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                start_new_session=True,  # its own process group: stopped as one by its id
            )

    def wait_ready(self, timeout_s: float) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"throwaway node exited; log tail:\n{self.log_tail()}")
            return _answers(self.url + "/_cluster/health?wait_for_status=yellow&timeout=1s")

        wait_for(ready, timeout_s, "the throwaway Elasticsearch node", interval_s=0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.dir / "stdout.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _write_config(self) -> Path:
        conf, logs = self.dir / "config", self.dir / "logs"
        shutil.copytree(self.home / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir()
        jvm = (conf / "jvm.options").read_text()
        jvm = re.sub(r"^-Xlog:gc.*$", f"-Xlog:gc*:file={logs}/gc.log", jvm, flags=re.M)
        jvm = jvm.replace("-XX:+HeapDumpOnOutOfMemoryError", "-XX:-HeapDumpOnOutOfMemoryError")
        (conf / "jvm.options").write_text(jvm)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d" / "heap.options").write_text("-Xms384m\n-Xmx384m\n")
        (conf / "elasticsearch.yml").write_text(
            f"cluster.name: fanout-throwaway-{self.dir.name[-8:]}\n"
            f"node.name: throwaway\npath.data: {self.dir / 'data'}\npath.logs: {logs}\n"
            f"network.host: 127.0.0.1\nhttp.port: {NODE_HTTP_PORT}\n"
            f"transport.port: {NODE_TRANSPORT_PORT}\ndiscovery.type: single-node\n"
            "xpack.security.enabled: false\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "thread_pool.write.size: 1\nthread_pool.write.queue_size: 1\n"
        )
        return conf


def _es_home() -> Path:
    default = (
        Path("/var/cache/fanout-devstack")
        if os.geteuid() == 0
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fanout-devstack"
    )
    cache = Path(os.environ.get("FANOUT_DEVSTACK_CACHE", default))
    homes = sorted(p for p in cache.glob("elasticsearch-*") if (p / ".complete").exists())
    if not homes:
        pytest.fail(f"no unpacked Elasticsearch under {cache}; run `scripts/devstack up` first")
    return homes[-1]


def _java_home() -> Path:
    candidates = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in candidates:
        release = home / "release"
        if (home / "bin" / "java").exists() and release.exists():
            found = re.search(r'JAVA_VERSION="(\d+)', release.read_text())
            if found and int(found.group(1)) >= 21:
                return home
    pytest.fail("no JDK >= 21 for the throwaway Elasticsearch node")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def tiny_node() -> Iterator[Elasticsearch]:
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pytest.fail(f"user {SERVICE_USER} missing; `scripts/devstack up` creates it")
    node = ThrowawayNode()
    node.start()
    try:
        node.wait_ready(timeout_s=120)
        client = Elasticsearch(node.url, request_timeout=30)
        yield client
        client.close()
    finally:
        node.stop()


def _rejections(client: Elasticsearch) -> int:
    stats = client.nodes.stats(metric="thread_pool")["nodes"]
    return sum(node["thread_pool"]["write"]["rejected"] for node in stats.values())


def _busy_index(client: Elasticsearch, prefix: str) -> None:
    """Many shards: one bulk request fans out into many concurrent shard requests."""
    client.indices.create(
        index=prefix + "items.fanout",
        settings={"number_of_shards": 12, "number_of_replicas": 0},
        aliases={prefix + "items": {}},
    )


def _stream(n_keys: int) -> tuple[list[ChangeEvent], dict[str, int]]:
    events = [change(k, 1, offset=k) for k in range(n_keys)]
    events += [change(k, 2, offset=n_keys + k) for k in range(0, n_keys, 2)]
    events += [change(k, 3, Op.DELETE, offset=2 * n_keys + k) for k in range(0, n_keys, 10)]
    newest: dict[str, int] = {}
    for e in events:
        newest[str(e.key["id"])] = max(e.version, newest.get(str(e.key["id"]), 0))
    return events, newest


def _stored_versions(client: Elasticsearch, index: str) -> dict[str, int]:
    client.indices.refresh(index=index)
    return {hit["_id"]: hit["_version"] for hit in helpers.scan(client, index=index, version=True)}


def _settings(url: str, prefix: str, **overrides: Any) -> ElasticsearchSettings:
    values: dict[str, Any] = {
        "hosts": [url],
        "index_prefix": prefix,
        "bulk_max_actions": 500,
        "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 200},
    }
    return ElasticsearchSettings(**{**values, **overrides})


@pytest.mark.slow  # the throwaway node takes 60-100 s to start here
def test_bulk_rejections_are_retried_item_by_item_and_land_once(tiny_node: Elasticsearch) -> None:
    prefix = unique("es429").lower() + "-"
    _busy_index(tiny_node, prefix)
    events, newest = _stream(3000)
    rejected_before = _rejections(tiny_node)
    written_before = _written_count()
    sink = ElasticsearchSink(_settings(NODE_URL, prefix, bulk_item_retries=50))
    sink.open()
    try:
        assert list(sink.write(events)) == []  # one call: the sink retried the 429s itself
    finally:
        sink.close()

    assert _rejections(tiny_node) > rejected_before, "the node never rejected a bulk item"
    physical = prefix + "items.fanout"
    assert _stored_versions(tiny_node, physical) == newest
    indexing = tiny_node.indices.stats(index=physical)["_all"]["primaries"]["indexing"]
    assert indexing["index_total"] == len(newest)  # every document applied exactly once
    assert _written_count() - written_before == len(newest)
    live = {k for k, v in newest.items() if v < 3}
    assert set(searched(tiny_node, prefix + "items")) == live


@pytest.mark.slow  # the throwaway node takes 60-100 s to start here
def test_rejections_beyond_the_in_sink_retries_are_retryable_and_a_rerun_converges(
    tiny_node: Elasticsearch,
) -> None:
    prefix = unique("es429").lower() + "-"
    _busy_index(tiny_node, prefix)
    events, newest = _stream(3000)
    impatient = ElasticsearchSink(_settings(NODE_URL, prefix, bulk_item_retries=0))
    impatient.open()
    try:
        with pytest.raises(RetryableError, match="es_rejected_execution_exception"):
            impatient.write(events)  # no Failures: rejected items are never dead-lettered
    finally:
        impatient.close()
    landed = _stored_versions(tiny_node, prefix + "items.fanout")
    assert 0 < len(landed) < len(newest)

    # The runtime writes the whole batch again later; items that landed are re-applied at the
    # same version (no change), the rest land now.
    rerun = ElasticsearchSink(_settings(NODE_URL, prefix, bulk_item_retries=50))
    rerun.open()
    try:
        assert list(rerun.write(events)) == []
    finally:
        rerun.close()
    assert _stored_versions(tiny_node, prefix + "items.fanout") == newest
    live = {k for k, v in newest.items() if v < 3}
    assert set(searched(tiny_node, prefix + "items")) == live


def _written_count() -> float:
    ops = ("upsert", "delete")
    return sum(EVENTS_WRITTEN.labels("elasticsearch", "items", op)._value.get() for op in ops)

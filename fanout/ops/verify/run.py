"""``fanout verify --sink NAME``: the source against one sink, every chosen table.

The source position is read first; each table is compared (``compare.py``); if anything
differs, verify waits for the sink's group to catch up (``settle.py``) and compares the
differing keys again, reporting only what still differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from fanout.errors import ConfigError
from fanout.ops.offsets import KafkaOffsets
from fanout.ops.progress import ProgressReporter
from fanout.ops.verify import source as src
from fanout.ops.verify.compare import SourceLeft, TableComparison, TableResult
from fanout.ops.verify.plan import Route, TablePlan, choose_tables, route_for, tables_of_topics
from fanout.ops.verify.report import VerifyReport
from fanout.ops.verify.settle import wait_caught_up
from fanout.ops.verify.targets import TargetReader
from fanout.settings import RoutingSettings, Settings, SourceSettings


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    sink: str
    tables: tuple[str, ...] = ()
    page_size: int = 2000
    max_keys: int = 1000
    settle_timeout_s: float = 120.0


def open_reader(settings: Settings, sink: str) -> TargetReader:
    if sink == "postgres":
        from fanout.ops.verify.postgres import PostgresReader

        return PostgresReader(settings.sinks.postgres)
    if sink == "clickhouse":
        from fanout.ops.verify.clickhouse import ClickHouseReader

        return ClickHouseReader(settings.sinks.clickhouse)
    from fanout.ops.verify.elasticsearch import ElasticsearchReader

    return ElasticsearchReader(settings.sinks.elasticsearch)


def source_settings(settings: Settings) -> SourceSettings:
    if settings.source is None:
        raise ConfigError("source: verify needs the source PostgreSQL (source.host, .dbname, ...)")
    return settings.source


def captured_tables(settings: Settings) -> list[str]:
    offsets = KafkaOffsets(settings.kafka)
    return tables_of_topics(offsets.topics(settings.kafka.subscription()))


class Verification:
    """One verify against the source, kept open so ``repair`` can compare its keys again:
    ``run()`` the first pass and the re-check after catch-up, ``recheck()`` once more later."""

    def __init__(self, settings: Settings, request: VerifyRequest) -> None:
        self.settings, self.request = settings, request
        source = source_settings(settings)
        routing = settings.sinks.get(request.sink).routing
        names = choose_tables(captured_tables(settings), request.tables, routing)
        self.conn = src.connect(source)
        self.reader: TargetReader | None = None
        try:
            self.position = src.current_lsn(self.conn)
            self.plans = [
                TablePlan.of(src.describe(self.conn, name), _route(routing, name)) for name in names
            ]
            self.reader = open_reader(settings, request.sink)
            self.comparisons = [
                TableComparison(
                    SourceLeft(self.conn, plan.source),
                    self.reader,
                    plan,
                    request.page_size,
                    request.max_keys,
                )
                for plan in self.plans
            ]
        except BaseException:
            self.close()
            raise
        self.report = VerifyReport(
            request.sink, {p.source.qualified: p.source.key for p in self.plans}, self.position
        )

    def run(self, progress: TextIO | None = None) -> VerifyReport:
        self.report.tables = [_compare(c, progress) for c in self.comparisons]
        if not self.report.equal:
            self.report.settled = wait_caught_up(
                self.settings, self.request.sink, self.request.settle_timeout_s
            )
            self.recheck()
        return self.report

    def recheck(self) -> VerifyReport:
        """The differing keys compared again (the rest is left as it was found)."""
        self.report.tables = [
            c.recheck(r) if not r.equal else r
            for c, r in zip(self.comparisons, self.report.tables, strict=True)
        ]
        return self.report

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.conn.close()

    def __enter__(self) -> Verification:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def verify(
    settings: Settings, request: VerifyRequest, progress: TextIO | None = None
) -> VerifyReport:
    with Verification(settings, request) as verification:
        return verification.run(progress)


def _route(routing: RoutingSettings, name: str) -> Route:
    route = route_for(routing, name)
    assert route is not None  # choose_tables kept only routed tables
    return route


def _compare(comparison: TableComparison, stream: TextIO | None) -> TableResult:
    if stream is None or not stream.isatty():
        return comparison.run()
    reporter = ProgressReporter(comparison.plan.source.qualified, stream, interactive=True)
    total = comparison.left.count()
    result = comparison.run(lambda done: reporter.update(done, total))
    reporter.finish(total, total)
    return result

"""PostgreSQL smoke test: version-guarded upsert with INSERT ... ON CONFLICT via psycopg 3."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tests.support.pipeline import unique

UPSERT = """
INSERT INTO {t} (id, name, _fanout_version) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, _fanout_version = EXCLUDED._fanout_version
WHERE {t}._fanout_version <= EXCLUDED._fanout_version
"""


def test_upsert(pg: psycopg.Connection[Any]) -> None:
    table = sql.Identifier(unique("smoke_pg"))
    pg.execute(
        sql.SQL(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, _fanout_version bigint NOT NULL)"
        ).format(t=table)
    )
    try:
        upsert = sql.SQL(UPSERT).format(t=table)
        pg.execute(upsert, (1, "first", 10))
        pg.execute(upsert, (1, "second", 20))
        pg.execute(upsert, (1, "stale", 15))  # older version: ignored
        pg.execute(upsert, (2, "other", 1))
        rows = pg.execute(
            sql.SQL("SELECT id, name, _fanout_version FROM {t} ORDER BY id").format(t=table)
        ).fetchall()
        assert rows == [(1, "second", 20), (2, "other", 1)]
    finally:
        pg.execute(sql.SQL("DROP TABLE {t}").format(t=table))

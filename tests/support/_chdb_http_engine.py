"""One persistent chDB session behind the HTTP endpoint.

Every request runs under one lock: a chDB session allows no other statement while a streaming
insert is open, and per-request settings are applied with `SET … ` / `SET … = DEFAULT` on the
shared session, so requests must not interleave. Inline insert data goes through chDB's
streaming inserter (`session.send_insert(sql, fmt)`), the Native bytes passed as they came.
Durability is chDB's: MergeTree parts are written to the data directory before the insert
returns.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chdb import session as chdb_session

from tests.support._chdb_http_errors import ClickHouseError
from tests.support._chdb_http_sql import Statement


@dataclass(frozen=True, slots=True)
class QueryRequest:
    statement: Statement
    default_format: str = "TabSeparated"
    database: str | None = None
    session_id: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # server-side `{name:Type}` binds


@dataclass(frozen=True, slots=True)
class QueryResult:
    body: bytes
    fmt: str | None  # output format of a statement that returns rows, else None
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_ns: int = 0

    def summary(self) -> dict[str, str]:
        """X-ClickHouse-Summary (ClickHouse sends the numbers as strings)."""
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows),
            "written_bytes": str(self.written_bytes),
            "result_bytes": str(len(self.body)),
            "elapsed_ns": str(self.elapsed_ns),
        }


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(slots=True)
class _SessionState:
    """What SET/USE statements left behind in one HTTP session (`session_id`)."""

    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChdbEngine:
    """Runs statements on one chDB session, one at a time."""

    def __init__(self, data_dir: str | Path) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        session_factory: Any = chdb_session.Session
        self._session: Any = session_factory(str(Path(data_dir).resolve()))
        version, timezone, database = self._text("SELECT version(), timezone(), currentDatabase()")
        self.version: str = version
        self.timezone: str = timezone
        self._home_database = database
        self._sessions: dict[str, _SessionState] = {}
        self._defaults = dict(
            line.split("\t", 1)
            for line in self._session.query("SELECT name, value FROM system.settings", "TSV")
            .bytes()
            .decode()
            .splitlines()
        )

    def _text(self, sql: str) -> list[str]:
        raw: bytes = self._session.query(sql, "TabSeparated").bytes()
        return raw.decode().rstrip("\n").split("\t")

    def execute(self, request: QueryRequest) -> QueryResult:
        with self._lock:
            if self._session is None:
                raise ClickHouseError.of("STD_EXCEPTION", "The chDB session is closed")
            state = self._sessions.setdefault(request.session_id or "", _SessionState())
            applied = state.settings | dict(request.settings)
            touched: set[str] = set()
            database = request.database or state.database
            switched = bool(database and database != self._home_database)
            switched |= request.statement.kind == "USE"
            try:
                self._use(database)
                touched = self._set(applied)
                if request.statement.kind in ("SET", "USE"):
                    touched |= self._remember(request.statement, state, applied)
                    return QueryResult(body=b"", fmt=None)
                return self._run(request)
            except ClickHouseError:
                raise
            except Exception as exc:
                raise ClickHouseError.from_exception(exc) from exc
            finally:
                self._leave(touched, switched)
                self._sessions.pop("", None)  # requests without a session keep nothing

    def _use(self, database: str | None) -> None:
        if database and database != self._home_database:
            self._session.query(f"USE {_identifier(database)}", "TSV")

    def _set(self, settings: Mapping[str, str]) -> set[str]:
        """Apply the settings that differ from the defaults; returns their names."""
        changed = {k for k, v in settings.items() if self._defaults.get(k) != v}
        if changed:
            assignments = ", ".join(f"{k} = {_sql_string(settings[k])}" for k in sorted(changed))
            self._session.query(f"SET {assignments}", "TSV")
        return changed

    def _remember(
        self, statement: Statement, state: _SessionState, before: dict[str, str]
    ) -> set[str]:
        """Run SET/USE and keep its effect for the HTTP session (as ClickHouse's session
        context does); returns the settings it touched, so they are reset afterwards."""
        self._session.query(statement.sql, "TSV")
        after = self._changed_settings()
        state.settings.update({k: v for k, v in after.items() if before.get(k) != v})
        for name in before.keys() - after.keys():  # `SET x = DEFAULT`
            state.settings.pop(name, None)
        state.database = self._text("SELECT currentDatabase()")[0]
        return set(after)

    def _changed_settings(self) -> dict[str, str]:
        """Settings now differing from the defaults. One row, so the client's own result
        limits (max_result_rows, …) cannot refuse it, and no SETTINGS clause of ours
        that would mask the values we are reading."""
        sql = (
            "SELECT groupArray(name) AS names, groupArray(value) AS values"
            " FROM system.settings WHERE changed"
        )
        row = json.loads(self._session.query(sql, "JSONEachRow").bytes())
        changed = dict(zip(row["names"], row["values"], strict=True))
        return {k: v for k, v in changed.items() if self._defaults.get(k) != v}

    def _leave(self, touched: set[str], switched: bool) -> None:
        """Back to the defaults and the home database, best effort: a failed reset must not
        hide the request's own outcome."""
        if touched:
            try:
                self._session.query("SET " + ", ".join(f"{k} = DEFAULT" for k in touched), "TSV")
            except Exception:
                for name in touched:
                    self._try(f"SET {name} = DEFAULT")
        if switched:
            self._try(f"USE {_identifier(self._home_database)}")

    def _try(self, sql: str) -> None:
        with contextlib.suppress(Exception):  # e.g. a setting that never took effect
            self._session.query(sql, "TSV")

    def _run(self, request: QueryRequest) -> QueryResult:
        statement = request.statement
        if statement.data is not None and statement.fmt is not None:
            return self._insert(statement.sql, statement.fmt, statement.data)
        fmt = statement.fmt or request.default_format
        result = self._session.query(statement.sql, fmt, params=dict(request.params) or None)
        return QueryResult(
            body=result.bytes(),
            fmt=fmt if statement.returns_rows else None,
            read_rows=result.rows_read(),
            read_bytes=result.bytes_read(),
            written_rows=result.rows_written(),
            written_bytes=result.bytes_written(),
            elapsed_ns=int(result.elapsed() * 1e9),
        )

    def _insert(self, sql: str, fmt: str, data: bytes) -> QueryResult:
        with self._session.send_insert(sql, fmt) as inserter:
            if data:
                inserter.append(data)
            outcome = inserter.finish()
        return QueryResult(
            body=b"",
            fmt=None,
            written_rows=outcome.rows_written,
            written_bytes=outcome.bytes_written,
            elapsed_ns=int(outcome.elapsed * 1e9),
        )

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

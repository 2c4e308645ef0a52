"""A verify's result: per table its counts and the keys that differ, as a table or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fanout.ops.verify.compare import KINDS, TableResult


def lsn_text(lsn: int | None) -> str | None:
    return None if lsn is None else f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(slots=True)
class VerifyReport:
    sink: str  # or "across: a, b" for --across
    key_names: dict[str, tuple[str, ...]]  # table -> its key columns
    position: int | None = None  # the source's WAL position at the start
    settled: bool | None = None  # the sink caught up before differences were re-checked
    tables: list[TableResult] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "equal": self.equal,
            "source_position": lsn_text(self.position),
            "settled": self.settled,
            "tables": [self._table_json(t) for t in self.tables],
        }

    def _table_json(self, t: TableResult) -> dict[str, Any]:
        names = self.key_names.get(t.table, ())
        return {
            "table": t.table,
            "target": t.target,
            "source_rows": t.source_rows,
            "target_rows": t.target_rows,
            "equal": t.equal,
            **t.counts,
            "keys": [
                {
                    "kind": d.kind,
                    "key": dict(zip(names, d.key, strict=False)),
                    "columns": list(d.columns),
                }
                for d in t.listed
            ],
            "unlisted": t.unlisted,
        }

    def render_text(self) -> str:
        header = ("TABLE", "TARGET", "SOURCE", "TARGET ROWS", *(k.upper() for k in KINDS), "RESULT")
        rows = [header] + [
            (
                t.table,
                t.target,
                str(t.source_rows),
                str(t.target_rows),
                *(str(t.counts[k]) for k in KINDS),
                "equal" if t.equal else "DIFFERENT",
            )
            for t in self.tables
        ]
        lines = [_aligned(rows)]
        for t in self.tables:
            lines.extend(self._key_lines(t))
        if self.settled is False:
            lines.append(
                "note: the sink did not catch up in time; some differences may be in flight"
            )
        lines.append(f"{self.sink}: {'equal' if self.equal else 'DIFFERENT'}")
        return "\n".join(lines)

    def _key_lines(self, t: TableResult) -> list[str]:
        names = self.key_names.get(t.table, ())
        lines = []
        for d in t.listed:
            key = ", ".join(f"{n}={v}" for n, v in zip(names, d.key, strict=False))
            columns = f" (columns: {', '.join(d.columns)})" if d.columns else ""
            lines.append(f"  {t.table} {d.kind}: {key}{columns}")
        if t.unlisted:
            lines.append(f"  {t.table}: {t.unlisted} more not listed (--max-keys)")
        return lines


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )

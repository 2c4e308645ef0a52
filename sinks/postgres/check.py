"""Turning one target's events into staged rows: validation and layout per event shape.

No I/O here. Events of the same *shape* (op, key names, row names, declared columns, Python
value types) map onto the table the same way, so the work of checking names and type fit is
done once per shape and cached as a :class:`Layout`: the payload each event carries through
the template's collapse to the staging ``COPY``. A layout also names the columns whose values
are checked one by one (a value the column would round is refused: ``types.value_check``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import NoneType
from typing import Any, NamedTuple

import orjson
from psycopg import sql

from fanout.errors import MappingError
from fanout.events import POSITION_COLUMN, ChangeEvent, Column, Json, Op
from sinks.base.columns import infer_column, inferred_list_column
from sinks.base.jsontext import fragment, stdlib_dumps
from sinks.postgres import sql as q
from sinks.postgres.schema import TableInfo
from sinks.postgres.types import (
    BINARY_DELETE_FLAG,
    BINARY_VERSION,
    BinaryColumn,
    PgColumn,
    ValueCheck,
    binary_column,
    check_identifier,
    describe,
    fits,
    pg_type_sql,
    value_check,
)

Shape = tuple[Any, ...]


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: used as a dict key per event
class Layout:
    """How events of one shape become rows of the staging table."""

    columns: tuple[str, ...]  # COPY column list, bookkeeping columns last
    is_delete: bool = False
    take: tuple[int, ...] | None = None  # positions of row values to stage; None = all
    extra_key: tuple[str, ...] = ()  # key columns the row lacks, taken from event.key
    json: tuple[int, ...] = ()  # staged positions sent as JSON text
    binary: tuple[BinaryColumn, ...] | None = None  # per column; None: text COPY only
    # Row columns whose values are checked one by one: the declared type does not guarantee
    # that the target column holds every value exactly (``types.value_check``).
    checks: tuple[tuple[str, ValueCheck], ...] = ()
    # Value type combinations seen to fit ``binary`` (rows repeat a few, batch after batch).
    _fitting: set[tuple[type, ...]] = field(default_factory=set, repr=False)

    def rows(self, events: Sequence[ChangeEvent]) -> list[list[Any]]:
        """The staged rows for ``events`` (all of this layout) in text form."""
        return self.stage(events, binary=False).rows

    def stage(self, events: Sequence[ChangeEvent], *, binary: bool = True) -> Staged:
        """The staged rows for ``events``, for binary COPY if every value allows it."""
        rows = self._values(events)
        types = self._binary_types(rows) if binary else None
        if self.json:
            encode = _json_bytes if types is not None else _json_str
            for row in rows:
                for i in self.json:
                    if row[i] is not None:
                        row[i] = encode(row[i])
        return Staged(rows, types)

    def refusal(self, event: ChangeEvent) -> MappingError | None:
        """Why ``event`` (of this layout) cannot be stored exactly, or None."""
        row = event.row or {}
        for name, check in self.checks:
            value = row.get(name)
            problem = None if value is None else check(value)
            if problem:
                return MappingError(problem)
        return None

    def values(self, event: ChangeEvent) -> list[Any]:
        """The staged row for one event (text form)."""
        return self.rows([event])[0]

    def _values(self, events: Sequence[ChangeEvent]) -> list[list[Any]]:
        if self.is_delete:
            return [[*event.key.values(), event.version, True] for event in events]
        if self.take is None and not self.extra_key:
            return [[*(event.row or {}).values(), event.version] for event in events]
        return [self._picked(event) for event in events]

    def _picked(self, event: ChangeEvent) -> list[Any]:
        values = [*(event.row or {}).values()]
        if self.take is not None:
            values = [values[i] for i in self.take]
        values += [event.key[name] for name in self.extra_key]
        values.append(event.version)
        return values

    def _binary_types(self, rows: list[list[Any]]) -> tuple[str, ...] | None:
        """The COPY types if every value has its column's exact type and passes its check."""
        columns = self.binary
        if columns is None:
            return None
        fitting = self._fitting
        if len(fitting) > 4096:
            fitting.clear()
        for row in rows:
            types = tuple(map(type, row))
            if types not in fitting:
                if not all(map(_type_fits, types, columns)):
                    return None
                fitting.add(types)
        for i, column in enumerate(columns):
            if column.check is not None:
                values = [value for row in rows if (value := row[i]) is not None]
                if values and not column.check(values):
                    return None
        return tuple(column.type_name for column in columns)


class Staged(NamedTuple):
    """One layout's rows as they go into COPY."""

    rows: list[list[Any]]
    types: tuple[str, ...] | None  # binary COPY with these types; None: text COPY


def _type_fits(value_type: type, column: BinaryColumn) -> bool:
    return value_type is NoneType or column.kinds is None or value_type in column.kinds


def _json_bytes(value: Any) -> bytes:
    # A JSON column's own text (Json) goes as it is: every digit and a JSON null kept.
    if type(value) is Json:
        return value.text.encode("utf-8", "surrogatepass")  # PostgreSQL judges a surrogate
    try:
        return orjson.dumps(value, default=fragment, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers beyond 64 bits: the standard library writes them
        return stdlib_dumps(value, separators=(", ", ": ")).encode("utf-8", "surrogatepass")


def _json_str(value: Any) -> str:
    # JSON text into a json/jsonb column: PostgreSQL parses it while copying, and the text
    # dumper skips psycopg's per-value Jsonb wrapper.
    if type(value) is Json:
        return value.text
    return _json_bytes(value).decode("utf-8", "surrogatepass")


@dataclass(slots=True)
class Resolution:
    """The outcome of checking one shape against the table."""

    layout: Layout | None = None
    error: MappingError | None = None
    new_columns: list[tuple[str, sql.Composable]] = field(default_factory=list)


class _Declared(NamedTuple):
    columns: tuple[Column, ...]
    token: int  # equal column tuples get equal tokens
    names: tuple[str, ...] | None  # None when nothing is declared


class Shapes:
    """Computes an event's shape cheaply.

    Declared columns are folded into a small token: looked up by the identity of the
    ``event.columns`` tuple first (decoders reuse one tuple per schema), by value otherwise.
    A row carrying exactly the declared columns maps the same way whatever its values, so its
    shape leaves the value types out.
    """

    _MAX_IDS = 4096

    def __init__(self) -> None:
        self._by_id: dict[int, _Declared] = {}
        self._by_value: dict[tuple[Column, ...], int] = {}

    def of(self, event: ChangeEvent) -> Shape:
        columns = event.columns
        known = self._by_id.get(id(columns))
        if known is None or known.columns is not columns:
            known = self._remember(columns)
        row = event.row
        if row is None:
            return (event.op, known.token, tuple(event.key))
        names = tuple(row)
        if names == known.names:
            return (event.op, known.token, tuple(event.key))
        return (event.op, known.token, tuple(event.key), names, tuple(map(type, row.values())))

    def _remember(self, columns: tuple[Column, ...]) -> _Declared:
        token = self._by_value.setdefault(columns, len(self._by_value))
        if len(self._by_id) >= self._MAX_IDS:
            self._by_id.clear()
        # Holding the tuple keeps its id from being reused by another object.
        names = tuple(column.name for column in columns) if columns else None
        known = self._by_id[id(columns)] = _Declared(columns, token, names)
        return known


def refuse_inexact(
    events: Sequence[ChangeEvent], layouts: list[Layout | None]
) -> Iterable[tuple[int, MappingError]]:
    """The events whose values their layout cannot store exactly (index, reason); only
    layouts with per-value checks look at values."""
    checked = {layout for layout in set(layouts) if layout is not None and layout.checks}
    if not checked:  # the common case: a set of a few layouts, no loop in Python
        return
    for i, layout in enumerate(layouts):
        if layout in checked:
            assert layout is not None
            problem = layout.refusal(events[i])
            if problem is not None:
                yield i, problem


def creation_columns(event: ChangeEvent) -> list[Column]:
    """Columns a new table gets from its first event: known types only, valid names only."""
    declared = {column.name: column for column in event.columns}
    values = {**event.key, **(event.row or {})}
    columns = []
    for name, value in values.items():
        if _name_error(name) is not None:
            continue
        if name in declared:
            columns.append(declared[name])
        elif value is not None:
            columns.append(infer_column(name, value))
    return columns


def resolve(info: TableInfo, key: tuple[str, ...], event: ChangeEvent) -> Resolution:
    """Check one event (standing for its shape) against the table."""
    try:
        _check_key(info, key, event)
        if event.op is Op.DELETE:
            return Resolution(layout=_delete_layout(info, event))
        return _resolve_upsert(info, key, event)
    except MappingError as exc:
        return Resolution(error=exc)


def _delete_layout(info: TableInfo, event: ChangeEvent) -> Layout:
    return Layout(
        columns=(*event.key, q.VERSION, q.DELETE_FLAG),
        is_delete=True,
        binary=_binary_columns(info, event.key, (BINARY_VERSION, BINARY_DELETE_FLAG)),
    )


def _binary_columns(
    info: TableInfo, names: Iterable[str], bookkeeping: tuple[BinaryColumn, ...]
) -> tuple[BinaryColumn, ...] | None:
    """Each staged column's binary form; None if one of them has none."""
    columns = [binary_column(info.columns[name]) for name in names]
    if None in columns:
        return None
    return (*(column for column in columns if column is not None), *bookkeeping)


def _check_key(info: TableInfo, key: tuple[str, ...], event: ChangeEvent) -> None:
    for name in event.key:
        _raise_name_error(name)
    if frozenset(event.key) != frozenset(key):
        raise MappingError(
            f"key columns ({', '.join(event.key)}) do not match the key of table "
            f"{info.name} ({', '.join(key)})"
        )


def _resolve_upsert(info: TableInfo, key: tuple[str, ...], event: ChangeEvent) -> Resolution:
    row = event.row or {}
    declared = {column.name: column for column in event.columns}
    take: list[int] = []
    json: list[int] = []
    checks: list[tuple[str, ValueCheck]] = []
    new_columns: list[tuple[str, sql.Composable]] = []
    for position, (name, value) in enumerate(row.items()):
        _raise_name_error(name)
        target = info.columns.get(name)
        if target is not None and target.generated:
            continue  # computed by PostgreSQL from the other columns
        if target is None:
            if name in declared or value is not None:
                column = declared.get(name) or infer_column(name, value)
                new_columns.append((name, pg_type_sql(column)))
            continue
        check = _check_fit(name, declared.get(name), value, target)
        if check is not None:
            checks.append((name, check))
        if target.is_json and (name in declared or not isinstance(value, str)):
            json.append(len(take))
        take.append(position)
    if new_columns:
        return Resolution(new_columns=new_columns)
    return Resolution(layout=_upsert_layout(info, row, event, take, json, tuple(checks)))


def _upsert_layout(
    info: TableInfo,
    row: dict[str, Any],
    event: ChangeEvent,
    take: list[int],
    json: list[int],
    checks: tuple[tuple[str, ValueCheck], ...],
) -> Layout:
    names = list(row)
    staged = [names[i] for i in take]
    extra_key = tuple(name for name in event.key if name not in row)
    return Layout(
        columns=(*staged, *extra_key, q.VERSION),
        take=None if len(take) == len(names) else tuple(take),
        extra_key=extra_key,
        json=tuple(json),
        binary=_binary_columns(info, (*staged, *extra_key), (BINARY_VERSION,)),
        checks=checks,
    )


def _check_fit(
    name: str, declared: Column | None, value: Any, target: PgColumn
) -> ValueCheck | None:
    """Raise MappingError if the type does not fit; the per-value check it needs, if any."""
    if declared is not None:
        column, inferred = declared, False
    elif value is None:
        return None  # NULL fits every column
    elif isinstance(value, list) and target.is_array:  # no schema: the table's type decides
        listed = inferred_list_column(name, value)
        if listed is not None and not listed.parameters:
            return None  # no item that is not NULL: fits every array
        column, inferred = listed or infer_column(name, value), True
    else:
        column, inferred = infer_column(name, value), True
    if not fits(column, target, inferred=inferred):
        raise MappingError(
            f"column {name}: source type {describe(column)} does not fit target column type "
            f"{target.type_sql}"
        )
    return value_check(column, target, inferred=inferred)


def _name_error(name: str) -> MappingError | None:
    try:
        _raise_name_error(name)
    except MappingError as exc:
        return exc
    return None


def _raise_name_error(name: str) -> None:
    check_identifier(name, "column")
    if name.startswith(q.RESERVED_PREFIX) and name != POSITION_COLUMN:
        raise MappingError(f"column {name}: names starting with {q.RESERVED_PREFIX} are reserved")

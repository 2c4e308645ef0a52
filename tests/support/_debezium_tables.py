"""Source tables and the changes made to them (package-private helper of ``debezium``)."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fanout.events import Column, Op
from tests.support._debezium_columns import ColumnSpec
from tests.support._debezium_source import SourcePosition

Kind = Literal["insert", "update", "delete", "truncate", "read"]
_COMPOSITE_RADIX = 5  # later key columns of a composite key run 1..5 under each earlier value


@dataclass(frozen=True)
class TableSpec:
    schema: str
    table: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def key_columns(self) -> tuple[ColumnSpec, ...]:
        by_name = {column.name: column for column in self.columns}
        return tuple(by_name[name] for name in self.primary_key)

    def key_for(self, index: int) -> dict[str, Any]:
        """The key of the ``index``-th row (0-based); composite keys spread like order lines."""
        values: list[int] = []
        for _ in self.primary_key[1:]:
            index, digit = divmod(index, _COMPOSITE_RADIX)
            values.append(digit + 1)
        values.append(index + 1)
        return dict(zip(self.primary_key, reversed(values), strict=True))

    def random_row(self, rng: random.Random, key: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column in self.columns:
            if column.name in key:
                row[column.name] = key[column.name]
            elif column.optional and rng.random() < 0.1:
                row[column.name] = None
            else:
                row[column.name] = column.random_value(rng)
        return row

    def changed_row(self, rng: random.Random, row: dict[str, Any] | None) -> dict[str, Any]:
        """``row`` with one to three non-key columns set to new values, as updates mostly do."""
        assert row is not None
        changed = dict(row)
        candidates = [column for column in self.columns if column.name not in self.primary_key]
        for column in rng.sample(candidates, min(len(candidates), rng.randint(1, 3))):
            changed[column.name] = column.random_value(rng)
        return changed

    @functools.cached_property
    def encoders(self) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
        return tuple((column.name, column.encoder()) for column in self.columns)

    def encode_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` as JsonConverter writes it (missing columns as null)."""
        encoded = {}
        for name, encode in self.encoders:
            value = row.get(name)
            encoded[name] = value if value is None or encode is None else encode(value)
        return encoded

    def expected_columns(self, source_types: bool = False) -> tuple[Column, ...]:
        return tuple(column.logical_column(source_types) for column in self.columns)

    def key_tuple(self, key: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(key[name] for name in self.primary_key)


def _cols(*specs: str) -> tuple[ColumnSpec, ...]:
    """``"name:kind"`` (``!`` suffix = NOT NULL) -> column specs."""
    columns = []
    for spec in specs:
        name, kind = spec.split(":")
        columns.append(ColumnSpec(name, kind.rstrip("!"), optional=not kind.endswith("!")))
    return tuple(columns)


CUSTOMERS = TableSpec(
    "inventory",
    "customers",
    _cols(
        "id:int32!",
        "first_name:text!",
        "last_name:text",
        "email:text",
        "created_at:timestamptz",
        "birth_date:date",
        "active:boolean",
        "external_id:uuid",
    ),
    ("id",),
)
ORDERS = TableSpec(
    "inventory",
    "orders",
    _cols(
        "id:int64!",
        "customer_id:int32!",
        "order_date:date",
        "total:decimal!",
        "status:text",
        "placed_at:timestamp",
        "notes:json",
        "tags:text[]",
    ),
    ("id",),
)
ORDER_LINES = TableSpec(
    "inventory",
    "order_lines",
    _cols(
        "order_id:int64!",
        "line_no:int32!",
        "product_id:int32!",
        "quantity:int16",
        "unit_price:decimal",
        "attributes:json",
    ),
    ("order_id", "line_no"),
)
PRODUCTS = TableSpec(
    "inventory",
    "products",
    _cols(
        "id:int32!",
        "sku:text!",
        "name:text!",
        "description:text",
        "category:text",
        "brand:text",
        "price:decimal",
        "cost:decimal",
        "list_price:decimal",
        "width_cm:float64",
        "height_cm:float64",
        "depth_cm:float64",
        "weight_kg:float64",
        "stock:int32",
        "reorder_level:int16",
        "reviews:int64",
        "rating:float64",
        "active:boolean",
        "featured:boolean",
        "discontinued:boolean",
        "created_at:timestamptz",
        "updated_at:timestamptz",
        "released_on:date",
        "restock_at:timestamp",
        "attributes:json",
        "tags:text[]",
        "barcode:uuid",
        "supplier_id:int32",
        "warehouse:text",
        "color:text",
    ),
    ("id",),
)
DEFAULT_TABLES = (CUSTOMERS, ORDERS, ORDER_LINES)
ALL_TABLES = (CUSTOMERS, ORDERS, ORDER_LINES, PRODUCTS)


@dataclass(frozen=True)
class LogicalEvent:
    """One change at the source, before Debezium and Kafka Connect serialize it."""

    spec: TableSpec
    kind: Kind
    key: dict[str, Any]
    row: dict[str, Any] | None  # after-image; None for delete / truncate
    position: SourcePosition

    @property
    def table(self) -> str:
        return self.spec.name

    @property
    def op(self) -> Op:
        if self.kind == "delete":
            return Op.DELETE
        if self.kind == "truncate":
            return Op.TRUNCATE
        return Op.UPSERT

    @property
    def debezium_op(self) -> str:
        return {"insert": "c", "update": "u", "delete": "d", "truncate": "t", "read": "r"}[
            self.kind
        ]

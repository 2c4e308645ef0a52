"""Origin and ChangeEvent: hand-written constructors that behave like the dataclass ones."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from fanout.events import ChangeEvent, Column, Op, Origin


@pytest.mark.parametrize("cls", [Origin, ChangeEvent])
def test_constructor_takes_every_field_in_order_with_its_default(cls: type) -> None:
    parameters = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]


def test_fields_are_set_positionally_by_keyword_and_by_default() -> None:
    origin = Origin("t", 1, 2)
    assert (origin.timestamp_ms, origin.key, origin.value, origin.headers) == (None, None, None, ())
    assert Origin(topic="t", partition=1, offset=2, value=b"v") == Origin(
        "t", 1, 2, None, None, b"v"
    )
    columns = (Column("id", "int64"),)
    event = ChangeEvent(Op.UPSERT, "s.t", {"id": 1}, {"id": 1}, 7, 5, origin, columns, "t")
    assert dataclasses.astuple(event)[:-3] == (Op.UPSERT, "s.t", {"id": 1}, {"id": 1}, 7, 5)
    assert (event.origin, event.columns, event.target) == (origin, columns, "t")
    fields = {"op": Op.DELETE, "table": "s.t", "key": {"id": 1}, "row": None, "version": 1}
    bare = ChangeEvent(**fields, source_ts_ms=None, origin=origin)  # type: ignore[arg-type]
    assert (bare.columns, bare.target) == ((), "")


def test_events_stay_frozen() -> None:
    event = ChangeEvent(Op.DELETE, "s.t", {"id": 1}, None, 1, None, Origin("t", 0, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.target = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Origin("t", 0, 0).offset = 1  # type: ignore[misc]


def test_with_target_changes_only_the_target() -> None:
    event = ChangeEvent(Op.UPSERT, "s.t", {"id": 1}, {"id": 1}, 7, 5, Origin("t", 0, 0))
    assert event.with_target("x") == dataclasses.replace(event, target="x")

"""The version of a change, from its source position (package-private helper of ``envelope``).

Sources, in the order ``"auto"`` tries them:

* ``lsn``: Postgres ``source.lsn`` (flattened: ``__lsn``), used as is.
* ``binlog``: MySQL ``source.file`` / ``pos`` / ``row`` (flattened: ``__file``, ``__pos``,
  ``__row``) packed into one non-negative int64 that orders like the tuple
  ``(file index, pos, row)``::

      bit 62 ........ 45 | 44 ............. 13 | 12 ...... 0
          file index        pos                   row
          18 bits (<262144) 32 bits (< 4 GiB)     13 bits (< 8192)

  The file index is the numeric suffix of ``mysql-bin.000042``. ``pos`` is a 32-bit field in
  binlog event headers; ``row`` indexes the rows of one rows-event, which is capped at
  ``binlog-row-event-max-size`` (8 KiB by default, every row at least one byte). A value out of
  range is a ``DecodeError``, never a silently wrapped version.
* ``ts_ms``: ``source.ts_ms`` (flattened: ``__source_ts_ms``, else the Kafka timestamp).

Every version is in 0..2^63-1 (what the sinks store): a position beyond it is a
``DecodeError``, never a wrapped or clamped version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fanout.errors import DecodeError

Position = Mapping[str, Any]

FILE_BITS, POS_BITS, ROW_BITS = 18, 32, 13
MAX_VERSION = 2**63 - 1  # versions are signed 64-bit in every sink


def pack_binlog(file_index: int, pos: int, row: int) -> int:
    """``(file index, pos, row)`` -> one int that sorts the same way (layout above)."""
    for name, value, bits in (("file index", file_index, FILE_BITS), ("pos", pos, POS_BITS),
                              ("row", row, ROW_BITS)):  # fmt: skip
        if not 0 <= value < 1 << bits:
            raise DecodeError(f"binlog {name} {value} does not fit the version's {bits} bits")
    return (file_index << (POS_BITS + ROW_BITS)) | (pos << ROW_BITS) | row


def _integer(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:  # a bool is an int to isinstance
        raise DecodeError(f"{what} is not a non-negative integer: {value!r}")
    if value > MAX_VERSION:
        raise DecodeError(f"{what} {value} does not fit a version (a signed 64-bit integer)")
    return value


def _lsn(position: Position) -> int | None:
    lsn = position.get("lsn")
    return None if lsn is None else _integer(lsn, "lsn")


def _binlog(position: Position) -> int | None:
    file, pos = position.get("file"), position.get("pos")
    if file is None or pos is None:
        return None
    suffix = str(file).rpartition(".")[2]
    if not suffix.isdigit():
        raise DecodeError(f"binlog file name {file!r} has no numeric suffix")
    row = _integer(position.get("row") or 0, "binlog row")
    return pack_binlog(int(suffix), _integer(pos, "binlog pos"), row)


def _ts_ms(position: Position) -> int | None:
    ts_ms = position.get("ts_ms")
    return None if ts_ms is None else _integer(ts_ms, "ts_ms")


_POSITION_SOURCES = {"lsn": (_lsn,), "binlog": (_binlog,), "ts_ms": (), "auto": (_lsn, _binlog)}


def resolve_version(
    rule: str, position: Position, fallback_ms: int | None
) -> tuple[int | None, str]:
    """``(version, clock)``: clock ``"position"`` (LSN/binlog) or ``"time"`` (milliseconds).

    ``fallback_ms`` (the Kafka timestamp, flattened records only) is used after ``ts_ms`` for
    the ``auto`` and ``ts_ms`` rules.
    """
    for extract in _POSITION_SOURCES[rule]:
        version = extract(position)
        if version is not None:
            return version, "position"
    if rule in ("auto", "ts_ms"):
        version = _ts_ms(position)
        if version is None and fallback_ms is not None and fallback_ms > 0:
            version = fallback_ms
        return version, "time"
    return None, "position"


def describe(rule: str, prefix: str, topic: str, flattened: bool) -> str:
    """Why a message has no version under ``rule``: names the fields that were looked for."""
    wanted = {
        "lsn": [f"{prefix}lsn"],
        "binlog": [f"{prefix}file", f"{prefix}pos"],
        "ts_ms": [f"{prefix}source_ts_ms" if flattened else "source.ts_ms"],
    }
    names = wanted.get(rule) or [*wanted["lsn"], "/".join(wanted["binlog"]), *wanted["ts_ms"]]
    if flattened and rule in ("auto", "ts_ms"):
        names.append("a Kafka timestamp")
    return f"no version: version source {rule!r} for topic {topic!r} needs {' or '.join(names)}"

"""A decoder for PostgreSQL's built-in logical replication output (pgoutput, protocol 1), as
`pg_logical_slot_get_binary_changes` returns it: one message per row. Pure: standard library
only. The message formats are PostgreSQL's ("Logical Replication Message Formats")."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)

# A column's value in a tuple: None for NULL, UNCHANGED for an unchanged TOASTed value.
UNCHANGED = object()


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    key: bool  # part of the replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    table: str
    replica_identity: str  # 'd' default, 'f' full, 'i' index, 'n' nothing
    columns: tuple[Column, ...]


@dataclass
class Change:
    """One row change of a committed transaction. `new`/`old` hold each column's text value
    (None for NULL, UNCHANGED for an unchanged TOASTed one); `old` is the old key ('K') or
    the whole old row ('O', replica identity full), or None when the WAL has neither."""

    action: str  # INSERT, UPDATE, DELETE
    relation: Relation
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    old_kind: str | None  # 'K', 'O' or None
    commit_time: datetime | None = None
    lsn: str = ""
    xid: int = 0


class ProtocolError(ValueError):
    pass


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def byte(self) -> str:
        b = self.data[self.pos:self.pos + 1]
        if not b:
            raise ProtocolError("message ended early")
        self.pos += 1
        return b.decode("ascii")

    def int8(self) -> int:
        (v,) = struct.unpack_from("!b", self.data, self.pos)
        self.pos += 1
        return int(v)

    def int16(self) -> int:
        (v,) = struct.unpack_from("!h", self.data, self.pos)
        self.pos += 2
        return int(v)

    def int32(self) -> int:
        (v,) = struct.unpack_from("!i", self.data, self.pos)
        self.pos += 4
        return int(v)

    def uint32(self) -> int:
        (v,) = struct.unpack_from("!I", self.data, self.pos)
        self.pos += 4
        return int(v)

    def int64(self) -> int:
        (v,) = struct.unpack_from("!q", self.data, self.pos)
        self.pos += 8
        return int(v)

    def string(self) -> str:
        end = self.data.index(b"\x00", self.pos)
        s = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return s

    def raw(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        if len(b) != n:
            raise ProtocolError("message ended early")
        self.pos += n
        return b


def _timestamp(us: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=us)


def _tuple(r: _Reader, relation: Relation) -> dict[str, Any]:
    n = r.int16()
    values: dict[str, Any] = {}
    for i in range(n):
        kind = r.byte()
        name = relation.columns[i].name if i < len(relation.columns) else f"col{i}"
        if kind == "n":
            values[name] = None
        elif kind == "u":
            values[name] = UNCHANGED
        elif kind in ("t", "b"):
            values[name] = r.raw(r.int32()).decode("utf-8") if kind == "t" else r.raw(r.int32())
        else:
            raise ProtocolError(f"unknown tuple value kind {kind!r}")
    return values


@dataclass
class Decoder:
    """Feeds messages in order; returns the changes of each committed transaction. Relation
    messages come before a relation's first change in each decoding call, so one decoder per
    call (or per stream) suffices."""

    relations: dict[int, Relation] = field(default_factory=dict)
    _pending: list[Change] = field(default_factory=list)
    _commit_time: datetime | None = None
    _xid: int = 0

    def feed(self, data: bytes, lsn: str = "") -> list[Change]:
        r = _Reader(bytes(data))
        kind = r.byte()
        if kind == "B":
            r.int64()  # final LSN
            self._commit_time = _timestamp(r.int64())
            self._xid = r.uint32()
            self._pending = []
            return []
        if kind == "C":
            done, self._pending = self._pending, []
            return done
        if kind == "R":
            oid = r.uint32()
            schema, table = r.string(), r.string()
            ident = chr(r.int8() & 0xFF)
            cols = []
            for _ in range(r.int16()):
                flags = r.int8()
                name = r.string()
                type_oid = r.uint32()
                r.int32()  # atttypmod
                cols.append(Column(name, type_oid, bool(flags & 1)))
            self.relations[oid] = Relation(oid, schema or "pg_catalog", table, ident, tuple(cols))
            return []
        if kind in ("I", "U", "D"):
            rel = self._relation(r.uint32())
            new = old = None
            old_kind = None
            if kind == "I":
                if r.byte() != "N":
                    raise ProtocolError("insert without a new tuple")
                new = _tuple(r, rel)
            elif kind == "U":
                marker = r.byte()
                if marker in ("K", "O"):
                    old_kind, old = marker, _tuple(r, rel)
                    marker = r.byte()
                if marker != "N":
                    raise ProtocolError("update without a new tuple")
                new = _tuple(r, rel)
            else:
                marker = r.byte()
                if marker not in ("K", "O"):
                    raise ProtocolError("delete without an old tuple")
                old_kind, old = marker, _tuple(r, rel)
            action = {"I": "INSERT", "U": "UPDATE", "D": "DELETE"}[kind]
            self._pending.append(Change(action, rel, new, old, old_kind, self._commit_time, lsn, self._xid))
            return []
        # Type ('Y'), Origin ('O'), Truncate ('T'), logical message ('M'): nothing to send.
        return []

    def _relation(self, oid: int) -> Relation:
        rel = self.relations.get(oid)
        if rel is None:
            raise ProtocolError(f"a change for relation {oid} came before its Relation message")
        return rel

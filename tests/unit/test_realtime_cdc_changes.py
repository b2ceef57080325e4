"""Postgres changes, the pure parts: pgoutput messages decoded, bindings and filters parsed
and applied as Supabase applies them, values and payloads in Supabase's shapes."""

from __future__ import annotations

import struct
from datetime import datetime, timezone

import pytest

from services.realtime.server.cdc.changes import (BindingError, TableInfo, json_value, parse_bindings,
                                                  parse_filter, passes, payload_data)
from services.realtime.server.cdc.pgoutput import UNCHANGED, Decoder, ProtocolError


def s(text: str) -> bytes:
    return text.encode() + b"\x00"


def relation(oid: int = 77, ident: str = "d") -> bytes:
    cols = [(1, "id", 20), (0, "title", 25), (0, "done", 16)]
    body = b"R" + struct.pack("!I", oid) + s("public") + s("todos") + ident.encode() + struct.pack("!h", len(cols))
    for flags, name, typ in cols:
        body += struct.pack("!b", flags) + s(name) + struct.pack("!Ii", typ, -1)
    return body


def tup(*values: object) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            raw = str(v).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def begin(us: int = 0) -> bytes:
    return b"B" + struct.pack("!qqI", 1, us, 9)


COMMIT = b"C" + struct.pack("!bqqq", 0, 1, 2, 3)


def test_a_transaction_decodes_to_its_changes_at_commit() -> None:
    d = Decoder()
    assert d.feed(begin(86_400_000_000)) == []
    d.feed(relation())
    d.feed(b"I" + struct.pack("!I", 77) + b"N" + tup(1, "a", "f"))
    d.feed(b"U" + struct.pack("!I", 77) + b"O" + tup(1, "a", "f") + b"N" + tup(1, UNCHANGED, "t"))
    d.feed(b"D" + struct.pack("!I", 77) + b"K" + tup(1, None, None))
    changes = d.feed(COMMIT)
    assert [c.action for c in changes] == ["INSERT", "UPDATE", "DELETE"]
    assert changes[0].new == {"id": "1", "title": "a", "done": "f"} and changes[0].old is None
    assert changes[1].old_kind == "O" and changes[1].new["title"] is UNCHANGED
    assert changes[2].old == {"id": "1", "title": None, "done": None} and changes[2].old_kind == "K"
    assert changes[0].commit_time == datetime(2000, 1, 2, tzinfo=timezone.utc)
    assert changes[0].relation.schema == "public" and changes[0].relation.columns[0].key


def test_a_change_before_its_relation_is_a_protocol_error() -> None:
    d = Decoder()
    d.feed(begin())
    with pytest.raises(ProtocolError):
        d.feed(b"I" + struct.pack("!I", 5) + b"N" + tup(1))


def test_bindings_echo_what_the_client_sent_with_stable_ids() -> None:
    cfg = [{"event": "*", "schema": "public", "table": "todos", "filter": "id=eq.5"},
           {"event": "INSERT", "schema": "public"}]
    b1, b2 = parse_bindings(cfg), parse_bindings(cfg)
    assert [b.reply for b in b1] == [b.reply for b in b2]
    assert b1[0].reply == {"id": b1[0].id, "event": "*", "schema": "public", "table": "todos", "filter": "id=eq.5"}
    assert b1[1].reply["table"] is None and b1[0].id != b1[1].id


@pytest.mark.parametrize("cfg", [
    [{"event": "TRUNCATE", "schema": "public"}], [{"event": "*"}], [{"schema": "public", "filter": "id=eq.1"}],
    [{"event": "*", "schema": "public", "table": "t", "filter": "id=like.1"}],
    [{"event": "*", "schema": "public", "table": "t", "filter": "id"}],
    [{"event": "*", "schema": "public", "table": "t", "filter": "id=in.1,2"}], ["nope"]])
def test_bad_bindings_are_refused_with_a_reason(cfg: list) -> None:
    with pytest.raises(BindingError):
        parse_bindings(cfg)


@pytest.mark.parametrize("flt,row,expected", [
    ("id=eq.5", {"id": "5"}, True), ("id=eq.5", {"id": "50"}, False), ("id=neq.5", {"id": "4"}, True),
    ("id=lt.10", {"id": "9"}, True), ("id=lt.10", {"id": "10"}, False), ("id=lte.10", {"id": "10"}, True),
    ("id=gt.9", {"id": "10"}, True),  # numbers compare as numbers, not text ("10" < "9")
    ("id=gte.10", {"id": "10"}, True), ("id=in.(1,2,3)", {"id": "2"}, True), ("id=in.(1,2,3)", {"id": "4"}, False),
    ("title=eq.hello world", {"title": "hello world"}, True), ('title=in.("a","b")', {"title": "b"}, True),
    ("title=eq.x", {"title": None}, False), ("title=neq.x", {"title": None}, False), ("nope=eq.1", {"id": "1"}, False),
])
def test_filters(flt: str, row: dict, expected: bool) -> None:
    assert passes(parse_filter(flt), row, {"id": 20, "title": 25}) is expected


def test_values_are_supabases_json() -> None:
    assert json_value("t", 16) is True and json_value("42", 20) == 42 and json_value("1.5", 701) == 1.5
    assert json_value("12", 1700) == 12 and json_value('{"a": [1]}', 3802) == {"a": [1]}
    assert json_value("2026-01-02 03:04:05.678+00", 1184) == "2026-01-02T03:04:05.678+00:00"
    assert json_value("2026-01-02 03:04:05+05:30", 1184) == "2026-01-02T03:04:05+05:30"
    assert json_value("2026-01-02 03:04:05", 1114) == "2026-01-02T03:04:05"
    assert json_value(None, 20) is None and json_value("{1,2}", 1007) == "{1,2}"


def _changes(ident: str = "d") -> list:
    d = Decoder()
    d.feed(begin(1_000))
    d.feed(relation(ident=ident))
    d.feed(b"I" + struct.pack("!I", 77) + b"N" + tup(1, "a", "f"))
    d.feed(b"U" + struct.pack("!I", 77) + b"N" + tup(1, "b", "t"))
    if ident == "f":
        d.feed(b"D" + struct.pack("!I", 77) + b"O" + tup(1, "b", "t"))
    else:
        d.feed(b"D" + struct.pack("!I", 77) + b"K" + tup(1, None, None))
    return d.feed(COMMIT)


INFO = TableInfo(("id",), False, {20: "int8", 25: "text", 16: "bool"})


def test_payloads_have_supabases_keys() -> None:
    ins, upd, dele = (payload_data(c, INFO) for c in _changes())
    assert set(ins) == {"schema", "table", "commit_timestamp", "type", "columns", "record", "errors"}
    assert ins["record"] == {"id": 1, "title": "a", "done": False}
    assert ins["commit_timestamp"] == "2000-01-01T00:00:00.001Z"
    assert ins["columns"] == [{"name": "id", "type": "int8"}, {"name": "title", "type": "text"},
                              {"name": "done", "type": "bool"}]
    assert upd["old_record"] == {"id": 1} and upd["record"]["done"] is True
    assert dele["old_record"] == {"id": 1} and "record" not in dele


def test_replica_identity_full_gives_the_old_row_unless_rls_guards_the_table() -> None:
    dele = _changes("f")[2]
    assert payload_data(dele, INFO)["old_record"] == {"id": 1, "title": "b", "done": True}
    rls = TableInfo(("id",), True, INFO.type_names)
    assert payload_data(dele, rls)["old_record"] == {"id": 1}


def test_columns_the_role_cannot_select_are_left_out() -> None:
    ins = payload_data(_changes()[0], INFO, {"id", "done"})
    assert ins["record"] == {"id": 1, "done": False} and [c["name"] for c in ins["columns"]] == ["id", "done"]


def test_a_table_without_primary_key_sends_supabases_error() -> None:
    data = payload_data(_changes()[0], TableInfo((), False, INFO.type_names))
    assert data["errors"] == ["Error 400: Bad Request, no primary key"] and "record" not in data

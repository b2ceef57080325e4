"""What a subscriber asked for and what it is sent, in Supabase's shapes: `postgres_changes`
bindings from phx_join (`event`, `schema`, `table`, `filter`), their filters (`eq, neq, lt,
lte, gt, gte, in`), PostgreSQL text values as Supabase's JSON, and the `data` of a
postgres_changes message (`schema, table, commit_timestamp, type, columns, record,
old_record, errors`), which realtime-js turns into `new`/`old`. Pure: standard library only."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from .pgoutput import UNCHANGED, Change

EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "in")

# Type OIDs whose JSON is not a string (PostgreSQL's pg_type.dat; stable across versions).
BOOL = {16}
INTEGER = {20, 21, 23, 26}
FLOAT = {700, 701}
NUMERIC = {1700}
JSON_TYPES = {114, 3802}
TIMESTAMPS = {1114, 1184}  # timestamp, timestamptz
NUMBERS = INTEGER | FLOAT | NUMERIC


class BindingError(ValueError):
    """A postgres_changes config the server refuses; the text is for the client."""


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    values: tuple[str, ...]

    def text(self) -> str:
        value = "(" + ",".join(self.values) + ")" if self.op == "in" else self.values[0]
        return f"{self.column}={self.op}.{value}"


@dataclass(frozen=True)
class Binding:
    """One entry of the join's `postgres_changes`; `reply` is what the phx_reply echoes."""

    id: int
    event: str
    schema: str
    table: str | None
    filter: Filter | None
    reply: dict[str, Any]

    def wants(self, change: Change) -> bool:
        rel = change.relation
        if self.event != "*" and self.event != change.action:
            return False
        if self.schema != "*" and self.schema != rel.schema:
            return False
        if self.table not in (None, "*") and self.table != rel.table:
            return False
        return True


def parse_filter(text: str) -> Filter:
    column, eq, rest = text.partition("=")
    op, dot, value = rest.partition(".")
    column = column.strip()
    if not eq or not dot or not column:
        raise BindingError(f'invalid filter "{text}": expected column=operator.value, e.g. id=eq.5')
    if op not in OPERATORS:
        raise BindingError(f'invalid filter "{text}": the operator must be one of {", ".join(OPERATORS)}')
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise BindingError(f'invalid filter "{text}": in takes a list, e.g. id=in.(1,2,3)')
        items = [v.strip() for v in value[1:-1].split(",")]
        items = [v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v for v in items]
        if not items or items == [""]:
            raise BindingError(f'invalid filter "{text}": the list is empty')
        return Filter(column, op, tuple(items))
    return Filter(column, op, (value,))


def binding_id(event: str, schema: str, table: str | None, filter_text: str | None) -> int:
    """Deterministic per binding (the client matches `ids` in each message against it)."""
    key = json.dumps([event, schema, table, filter_text]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF


def parse_bindings(config: Iterable[Any]) -> list[Binding]:
    out = []
    for entry in config or []:
        if not isinstance(entry, dict):
            raise BindingError("each postgres_changes entry must be an object")
        event = entry.get("event", "*")
        schema = entry.get("schema")
        table = entry.get("table")
        filter_text = entry.get("filter")
        if not isinstance(event, str) or event.upper() not in EVENTS:
            raise BindingError(f'invalid event "{event}": use *, INSERT, UPDATE or DELETE')
        if not isinstance(schema, str) or not schema:
            raise BindingError("postgres_changes needs a schema")
        if table is not None and not isinstance(table, str):
            raise BindingError("table must be a string")
        if filter_text is not None and not isinstance(filter_text, str):
            raise BindingError("filter must be a string")
        if filter_text is not None and table in (None, "*"):
            raise BindingError("a filter needs a table")
        flt = parse_filter(filter_text) if filter_text else None
        reply = {"id": binding_id(event, schema, table, filter_text), "event": event, "schema": schema,
                 "table": table, "filter": filter_text}
        out.append(Binding(reply["id"], event.upper(), schema, table, flt, reply))
    return out


# -- values -----------------------------------------------------------------------------------

_TZ = re.compile(r"([+-]\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$")


def json_value(text: Any, type_oid: int) -> Any:
    """A column's text output as Supabase's JSON of it (to_jsonb of the typed value)."""
    if text is None or not isinstance(text, str):
        return text
    if type_oid in BOOL:
        return text == "t"
    if type_oid in INTEGER:
        return int(text)
    if type_oid in FLOAT | NUMERIC:
        if text in ("NaN", "Infinity", "-Infinity"):
            return text
        return int(text) if type_oid in NUMERIC and re.fullmatch(r"-?\d+", text) else float(text)
    if type_oid in JSON_TYPES:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if type_oid in TIMESTAMPS and len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
        if type_oid == 1184:
            m = _TZ.search(text[19:])
            if m:
                start = 19 + m.start()
                text = text[:start] + m.group(1) + ":" + (m.group(2) or "00") + (":" + m.group(3) if m.group(3) else "")
        return text
    return text


def _comparable(value: Any, type_oid: int) -> Any:
    if type_oid in NUMBERS:
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return str(value)
    if type_oid in BOOL:
        return str(value).lower() in ("t", "true", "1")
    return str(value)


def passes(flt: Filter, text_row: dict[str, Any], type_oids: dict[str, int]) -> bool:
    """The filter on the row's text values, compared as the column's type compares (numbers
    as numbers, the rest as text). A NULL or missing value passes no filter (SQL's rule)."""
    if flt.column not in text_row:
        return False
    raw = text_row[flt.column]
    if raw is None or raw is UNCHANGED:
        return False
    oid = type_oids.get(flt.column, 25)
    value = _comparable(raw, oid)
    others = [_comparable(v, oid) for v in flt.values]
    try:
        if flt.op == "eq":
            return bool(value == others[0])
        if flt.op == "neq":
            return bool(value != others[0])
        if flt.op == "in":
            return value in others
        if flt.op == "lt":
            return bool(value < others[0])
        if flt.op == "lte":
            return bool(value <= others[0])
        if flt.op == "gt":
            return bool(value > others[0])
        if flt.op == "gte":
            return bool(value >= others[0])
    except TypeError:
        return False
    return False


# -- payloads ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableInfo:
    """What the catalog says of a published table, for one subscriber role."""

    primary_key: tuple[str, ...]
    rls_enabled: bool
    type_names: dict[int, str]  # type OID -> pg_type.typname


def commit_timestamp(at: datetime | None) -> str:
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def new_text_row(change: Change) -> dict[str, Any]:
    """The new row's text values, unchanged TOASTed ones taken from the old row if it has them."""
    row = dict(change.new or {})
    for name, value in list(row.items()):
        if value is UNCHANGED:
            old = (change.old or {}).get(name, UNCHANGED)
            if old is UNCHANGED:
                del row[name]
            else:
                row[name] = old
    return row


def payload_data(change: Change, info: TableInfo, selectable: set[str] | None = None) -> dict[str, Any]:
    """The `data` of the message, as Supabase's apply_rls builds it: only the columns the
    role may select; a DELETE's old record holds only the primary key when RLS is on (a gone
    row cannot be checked); an UPDATE's old record is the old row (replica identity full),
    else the primary key."""
    rel = change.relation
    cols = [c for c in rel.columns if selectable is None or c.name in selectable]
    oids = {c.name: c.type_oid for c in rel.columns}
    names = {c.name for c in cols}
    data: dict[str, Any] = {
        "schema": rel.schema,
        "table": rel.table,
        "commit_timestamp": commit_timestamp(change.commit_time),
        "type": change.action,
        "columns": [{"name": c.name, "type": info.type_names.get(c.type_oid, str(c.type_oid))} for c in cols],
        "errors": None,
    }
    if change.action != "DELETE" and not info.primary_key:
        return {"schema": rel.schema, "table": rel.table, "type": change.action,
                "commit_timestamp": data["commit_timestamp"], "columns": data["columns"],
                "errors": ["Error 400: Bad Request, no primary key"]}

    def jsonify(row: dict[str, Any], keep: Any = lambda name: True) -> dict[str, Any]:
        return {k: json_value(v, oids.get(k, 25)) for k, v in row.items()
                if k in names and v is not UNCHANGED and keep(k)}

    new = new_text_row(change) if change.new is not None else None
    if change.action in ("INSERT", "UPDATE") and new is not None:
        data["record"] = jsonify(new)
    if change.action == "UPDATE":
        if change.old_kind == "O" and change.old is not None:
            data["old_record"] = jsonify(change.old)
        elif change.old_kind == "K" and change.old is not None:
            data["old_record"] = jsonify(change.old, lambda k: k in info.primary_key)
        else:
            data["old_record"] = jsonify(new or {}, lambda k: k in info.primary_key)
    if change.action == "DELETE":
        old = change.old or {}
        if change.old_kind == "O" and not info.rls_enabled:
            data["old_record"] = jsonify(old)
        else:
            key = info.primary_key or tuple(c.name for c in rel.columns if c.key)
            data["old_record"] = jsonify(old, lambda k: k in key)
    return data

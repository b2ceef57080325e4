"""The logs explorer's query language: the subset of the ClickHouse (`from logs where source
= '…'`) and per-source (`from edge_logs`) SQL that Supabase's MCP server, CLI and Studio send,
evaluated over the platform's own records of a project. Anything else is refused with a
clear message. Pure; imports the standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("edge_logs", "postgres_logs", "function_edge_logs", "function_logs", "auth_logs", "storage_logs",
           "realtime_logs", "workflow_run_logs")
# Kept by the database service (db_log): its own records, and the project edge's.
EDGE_SOURCES = ("edge_logs", "auth_logs", "storage_logs")
STORED_SOURCES = ("postgres_logs",) + EDGE_SOURCES
COLUMNS = ("id", "timestamp", "event_message", "severity_text", "source", "log_attributes", "metadata")
MAX_LIMIT = 1000


class LogQueryError(ValueError):
    pass


@dataclass
class LogQuery:
    columns: list[tuple[str, str]]  # (expression, alias): a column, or log_attributes['key']
    sources: list[str]
    order_desc: bool = True
    limit: int = 100
    filters: dict[str, str] = field(default_factory=dict)


_SELECT = re.compile(r"^\s*select\s+(?P<cols>.+?)\s+from\s+(?P<src>[a-z_.`\"]+)"
                     r"(?:\s+(?:as\s+)?(?!where\b|order\b|limit\b)[a-z_]+)?(?P<rest>.*)$", re.I | re.S)
_ATTR = re.compile(r"^log_attributes\s*\[\s*'([^']+)'\s*\]$", re.I)


def parse(sql: str | None) -> LogQuery:
    if not sql or not sql.strip():
        return LogQuery(columns=[("id", "id"), ("timestamp", "timestamp"), ("event_message", "event_message"),
                                 ("source", "source")], sources=list(SOURCES))
    text = sql.strip().rstrip(";")
    m = _SELECT.match(text)
    if not m:
        raise LogQueryError("logs queries look like: select <columns> from logs where source = '<source>' "
                            "order by timestamp desc limit <n>")
    src = m.group("src").strip("`\"").lower()
    rest = m.group("rest")
    q = LogQuery(columns=_columns(m.group("cols")), sources=[])
    if src == "logs":
        q.sources = list(SOURCES)
    elif src in SOURCES:
        q.sources = [src]
    else:
        raise LogQueryError(f"unknown log source {src!r}: one of logs, {', '.join(SOURCES)}")
    rest = _clause(rest, q)
    if rest.strip():
        raise LogQueryError(f"unsupported in a logs query: {rest.strip()[:80]!r}")
    return q


def _columns(text: str) -> list[tuple[str, str]]:
    out = []
    for part in _split(text):
        m = re.match(r"^(?P<expr>.+?)(?:\s+as\s+(?P<alias>[A-Za-z_][A-Za-z0-9_]*))?$", part.strip(), re.I | re.S)
        if not m:
            raise LogQueryError(f"cannot read the column {part.strip()!r}")
        expr, alias = m.group("expr").strip(), m.group("alias")
        if expr == "*":
            out += [(c, c) for c in COLUMNS[:5]]
            continue
        attr = _ATTR.match(expr)
        if attr:
            out.append((f"attr:{attr.group(1)}", alias or attr.group(1)))
        elif expr.lower() in COLUMNS:
            out.append((expr.lower(), alias or expr.lower()))
        else:
            raise LogQueryError(f"unknown column {expr!r}: use {', '.join(COLUMNS)} or log_attributes['<key>']")
    return out


def _split(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, "", False
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _clause(rest: str, q: LogQuery) -> str:
    m = re.match(r"^\s*where\s+(?P<cond>.+?)(?=\s+order\s+by|\s+limit|\s*$)", rest, re.I | re.S)
    if m:
        for cond in re.split(r"\s+and\s+", m.group("cond"), flags=re.I):
            c = re.match(r"^\s*(source|log_attributes\s*\[\s*'[^']+'\s*\]|event_message|severity_text)\s*=\s*'([^']*)'\s*$",
                         cond, re.I)
            if not c:
                raise LogQueryError(f"unsupported condition {cond.strip()!r}: only <column> = '<value>' joined by AND")
            col, value = c.group(1), c.group(2)
            if col.lower() == "source":
                if value not in SOURCES:
                    raise LogQueryError(f"unknown log source {value!r}: one of {', '.join(SOURCES)}")
                q.sources = [s for s in q.sources if s == value]
            else:
                attr = _ATTR.match(col)
                q.filters[f"attr:{attr.group(1)}" if attr else col.lower()] = value
        rest = rest[m.end():]
    m = re.match(r"^\s*order\s+by\s+timestamp(?:\s+(asc|desc))?", rest, re.I)
    if m:
        q.order_desc = (m.group(1) or "asc").lower() == "desc"
        rest = rest[m.end():]
    m = re.match(r"^\s*limit\s+(\d+)", rest, re.I)
    if m:
        q.limit = int(m.group(1))
        if not 1 <= q.limit <= MAX_LIMIT:
            raise LogQueryError(f"limit: from 1 to {MAX_LIMIT}")
        rest = rest[m.end():]
    return rest


def evaluate(q: LogQuery, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """records: {id, timestamp (µs), event_message, severity_text, source, log_attributes}."""
    def value(rec: dict[str, Any], expr: str) -> Any:
        if expr.startswith("attr:"):
            return rec["log_attributes"].get(expr[5:])
        if expr == "metadata":
            return [rec["log_attributes"]]
        return rec.get(expr)

    rows = [r for r in records if r["source"] in q.sources
            and all(str(value(r, k)) == v for k, v in q.filters.items())]
    rows.sort(key=lambda r: r["timestamp"], reverse=q.order_desc)
    return [{alias: value(r, expr) for expr, alias in q.columns} for r in rows[:q.limit]]

"""The database service's pure parts: the logs query language (as the MCP server and Studio
send it) and the TypeScript generator."""

from __future__ import annotations

import pytest

from services.database import logs, typegen

MCP_API = """select id, log_attributes['identifier'] as identifier, timestamp, event_message, log_attributes['request.method'] as method
from logs
where source = 'edge_logs'
order by timestamp desc
limit 100"""


def test_parses_the_mcp_servers_queries() -> None:
    q = logs.parse(MCP_API)
    assert q.sources == ["edge_logs"] and q.limit == 100 and q.order_desc
    assert q.columns[1] == ("attr:identifier", "identifier") and q.columns[4] == ("attr:request.method", "method")
    assert logs.parse("select id, timestamp from function_logs limit 5").sources == ["function_logs"]


def test_evaluates_over_records() -> None:
    recs = [{"id": str(i), "timestamp": i, "event_message": f"m{i}", "severity_text": "LOG",
             "source": "postgres_logs" if i % 2 else "function_logs", "log_attributes": {"k": str(i)}}
            for i in range(6)]
    q = logs.parse("select id, log_attributes['k'] as k from logs where source = 'postgres_logs' "
                   "order by timestamp desc limit 2")
    assert logs.evaluate(q, recs) == [{"id": "5", "k": "5"}, {"id": "3", "k": "3"}]


@pytest.mark.parametrize("bad", ["drop table logs", "select * from pg_user", "select id from logs where 1=1",
                                 "select nope from logs", "select id from logs limit 100000",
                                 "select id from logs; select 1"])
def test_refuses_what_it_cannot_answer(bad: str) -> None:
    with pytest.raises(logs.LogQueryError):
        logs.parse(bad)


def test_typescript_shape() -> None:
    col = {"kind": "column", "schema": "public", "rel": "todos", "relkind": "r", "type_schema": "pg_catalog",
           "elem_type": None, "elem_typtype": None, "generated": False, "identity_always": False,
           "typtype": "b", "has_default": False}
    rows = [{**col, "name": "id", "type": "int8", "not_null": True, "identity_always": True, "has_default": True},
            {**col, "name": "title", "type": "text", "not_null": True},
            {**col, "name": "tags", "type": "_text", "elem_type": "text", "elem_typtype": "b", "not_null": False},
            {"kind": "enum", "schema": "public", "rel": "mood", "labels": ["sad", "happy"]},
            {"kind": "function", "schema": "public", "rel": "add", "type": "int4", "typtype": "b",
             "args": "a integer, b integer DEFAULT 1", "returns_set": False}]
    ts = typegen.render(rows, ["public"])
    assert "todos: {" in ts and "title: string" in ts and "tags: string[] | null" in ts
    assert "id?: never" in ts  # identity ALWAYS: never inserted
    assert 'mood: "sad" | "happy"' in ts and "Args: { a: number; b?: number }" in ts

"""The database service's pure parts: the logs query language (as the MCP server and Studio
send it). TypeScript types come from postgres-meta's generator (tests/integration/test_database_api.py)."""

from __future__ import annotations

import pytest

from services.database import logs

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

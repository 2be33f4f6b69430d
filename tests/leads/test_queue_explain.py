"""Every statement the queue page issues on leads is served by an index, on both databases.

The plan of each real statement is taken on the same connection, with the same parameters,
as the page runs it. PostgreSQL is told not to seq-scan (a test table is tiny, so it would):
a Seq Scan left in the plan then means no index could serve the query.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from crm.extensions import db
from tests.conftest import utc


def plans_of(client: Any, url: str) -> list[tuple[str, list[str]]]:
    """Request a page; return each SELECT on leads with its query plan lines."""
    plans: list[tuple[str, list[str]]] = []

    def explain(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith("SELECT") or "FROM leads" not in statement:
            return
        raw = conn.connection.dbapi_connection.cursor()
        if conn.dialect.name == "sqlite":
            raw.execute("EXPLAIN QUERY PLAN " + statement, params)
            lines = [str(row[-1]) for row in raw.fetchall()]
        else:
            raw.execute("SET LOCAL enable_seqscan = off")
            raw.execute("EXPLAIN " + statement, params)
            lines = [str(row[0]) for row in raw.fetchall()]
        plans.append((statement, lines))

    sa.event.listen(db.engine, "before_cursor_execute", explain)
    try:
        assert client.get(url).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", explain)
    return plans


def table_scans(lines: list[str]) -> list[str]:
    """Return the plan lines that read a whole table (leads or a search table) row by row."""
    bad = []
    for line in lines:
        if "Seq Scan on lead" in line:
            bad.append(line)
        if line.startswith("SCAN lead") and "INDEX" not in line:
            bad.append(line)
    return bad


@pytest.mark.parametrize(
    "url",
    [
        "/leads",
        "/leads?after=4:1773154800000000:999999",
        "/leads?stage=evaluation",
        "/leads?tag=region:lower",
        "/leads?source=referral",
        "/leads?campaign=google-ads",
        "/leads?owner=none",
        "/leads?created_from=2026-03-01&created_to=2026-03-05",
        "/leads?include=closed",
        "/leads?q=garc",
        "/leads?q=maria+garc",
        "/leads?q=ana@example.com",
        "/leads?q=(214)+555-0142",
        "/leads?q=555-0142",
        "/leads?q=0142",
    ],
)
def test_queue_statements_use_indexes(client, login_as, make_lead, frozen_clock, url):
    frozen_clock(utc(2026, 3, 10, 15, 0))
    login_as("front_desk")
    make_lead(urgent=True, tags=["region:lower"])
    make_lead(first_contact_due_at=utc(2026, 3, 10, 14, 0))
    make_lead(next_task_due_at=utc(2026, 3, 10, 16, 0))

    plans = plans_of(client, url)

    assert any("AS grp" in statement for statement, _ in plans), "the page's group query was not seen"
    for statement, lines in plans:
        assert not table_scans(lines), f"{statement}\n" + "\n".join(lines)


def test_each_group_reads_its_own_index(client, login_as, make_lead):
    login_as("front_desk")
    make_lead()
    [(_, lines)] = [(s, p) for s, p in plans_of(client, "/leads") if "UNION ALL" in s]
    plan = "\n".join(lines)
    for index in ("ix_leads_queue_urgent", "ix_leads_queue_due", "ix_leads_queue_task"):
        assert index in plan, plan

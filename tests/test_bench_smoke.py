"""The benchmark's own checks: the app's statement-count header, and ``bench/run_bench.py``
run end to end on a tiny data set so that the harness cannot rot between full runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from crm import create_app
from crm.extensions import db
from tests.conftest import PG_URL, CRMTestClient, _drop_pg_database, make_config, sign_in

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def counting_app(database_url: str, tmp_path: Path, app: Flask) -> Iterator[Flask]:
    """A second app on the test's database with ``BENCH_SQL_COUNT`` on, as the benchmark runs it."""
    bench_app = create_app(make_config(database_url, tmp_path, BENCH_SQL_COUNT=True))
    bench_app.test_client_class = CRMTestClient
    yield bench_app
    with bench_app.app_context():
        db.engine.dispose()


def test_statement_header_counts_every_statement_of_the_request(
    counting_app: Flask, make_user: Callable[..., Any], make_lead: Callable[..., Any]
) -> None:
    user = make_user("front_desk")
    for n in range(3):
        make_lead(first_name=f"Pat{n}")
    client = counting_app.test_client()
    assert sign_in(client, user.email).status_code == 302
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    with counting_app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get("/leads")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    assert int(response.headers["X-SQL-Statements"]) == len(seen) > 0
    assert "app;dur=" in response.headers["Server-Timing"]


def test_statement_header_is_off_unless_the_benchmark_asks(client: Any, login_as: Callable[..., Any]) -> None:
    login_as("front_desk")
    response = client.get("/leads")
    assert response.status_code == 200
    assert "X-SQL-Statements" not in response.headers


@pytest.mark.slow
@pytest.mark.server
def test_harness_runs_end_to_end_on_a_tiny_data_set(tmp_path: Path) -> None:
    """Build 120 leads / 400 calls, serve them, measure every page, the form and the webhook."""
    db_name = "postgresql" if PG_URL else "sqlite"
    pg_db = f"crm_benchsmoke_{os.getpid()}"
    env = {**os.environ, "BENCH_PG_URL": PG_URL} if PG_URL else dict(os.environ)
    env.pop("TEST_DATABASE_URL", None)
    out = tmp_path / "BENCH.md"
    command = [
        sys.executable,
        str(ROOT / "bench" / "run_bench.py"),
        *("--db", db_name, "--leads", "120", "--calls", "400", "--requests", "2", "--forms", "2"),
        *("--webhooks", "40", "--concurrency", "4", "--floor-repeats", "1"),
        *("--bench-dir", str(tmp_path / "bench"), "--pg-db", pg_db, "--out", str(out)),
    ]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if PG_URL:
            _drop_pg_database(pg_db)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    rows = [line.split("|")[1:-1] for line in report.splitlines() if re.match(r"\| (?!page|---)", line)]
    names = [cells[0].strip() for cells in rows]
    for page in (
        "lead queue",
        "queue filter: owner (me)",
        "search: email",
        "lead page",
        "dashboard (12 months)",
    ):
        assert page in names, names
    assert "public form post" in names
    for cells in rows:
        assert int(cells[1]) > 0 and cells[2].strip() == "0", cells  # requests made, no errors
        assert cells[3].strip().split("–")[0].isdigit(), cells  # a statement count
        assert re.fullmatch(r"\d+\.\d+", cells[10].strip()), cells  # a SQL floor
    assert re.search(r"\*\*Webhook ingestion\*\*.*: 40 of 40 callbacks answered", report), report
    assert "- Lost: **0** — 16 new calls answered 200, 16 in the `calls` table" in report, report
    assert "0 of the 16 whose `completed` callback was answered not left `completed`" in report, report
    assert "2 posts answered 303, 2 appointment requests stored" in report, report
    assert "Tracebacks in the server log: 0." in report
    assert re.search(r"Worker peak memory \(whole run, [^)]*\): \d+ MB, \d+ MB", report), report
    assert "Command: `python bench/run_bench.py --db" in report and "Machine: " in report
    # The data set itself is unchanged: the run wrote only into its throwaway copy.
    if not PG_URL:
        data = sa.create_engine(f"sqlite:///{tmp_path / 'bench' / 'sqlite' / 'crm.db'}")
        with data.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM calls")) == 400
            assert conn.scalar(sa.text("SELECT count(*) FROM leads")) == 120
        data.dispose()

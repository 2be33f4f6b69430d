"""No patient data in any log: a canary patient goes through the app, and every log is searched.

gunicorn runs with the project's ``gunicorn.conf.py`` (its access log format), at debug log
level and with SQL echo on (``SQL_ECHO``): the access log, gunicorn's own log, the app's log
lines and every SQL statement are captured. The canary's name, phone digits and words must
appear in none of them (PRODUCT §9 "no patient data in any log"), nor in an error page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm.extensions import db
from crm.models import Lead
from tests.conftest import PG_URL
from tests.reliability.clients import SERVER_ENV, PublicForm, Staff, callback, send_callback
from tests.servers import Server, gunicorn_server

pytestmark = pytest.mark.reliability

FIRST, LAST = "Zebulon", "Quastraxxian"
PHONE_TYPED, PHONE = "(469) 555-0177", "+14695550177"
MESSAGE = "Vorpal snickersnack tingling in both feet since March"
CANARIES = (FIRST, LAST, "4695550177", "555-0177", "5550177", "Vorpal", "snickersnack")


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c.lower() in text.lower()]


@pytest.fixture
def server(database_url: str, tmp_path: Path, app: Any) -> Iterator[Server]:
    db.session.commit()
    env = {**SERVER_ENV, "SQL_ECHO": "true"}
    with gunicorn_server(
        database_url, tmp_path / "server", env=env, args=("--log-level", "debug")
    ) as running:
        yield running


@pytest.mark.server
def test_a_canary_patient_leaves_no_trace_in_any_log(server: Server, make_user: Any) -> None:
    email = make_user("front_desk").email
    db.session.commit()
    pages: dict[str, requests.Response] = {}

    form = PublicForm(server.url)
    pages["form"] = form.send(FIRST, LAST, PHONE_TYPED, MESSAGE, landing_page="/spine", utm_source="google")
    form.close()
    with requests.Session() as http:
        params = callback("CA" + "c" * 32, PHONE, "no-answer", 1)
        pages["webhook"] = send_callback(http, server.url, params)
    lead_id = db.session.scalar(sa.select(Lead.id).where(Lead.last_name == LAST))
    assert lead_id is not None
    db.session.commit()  # on SQLite, BEGIN IMMEDIATE: hold no write lock while the server works

    desk = Staff(server.url, email)
    for q in (LAST, f"{FIRST} {LAST}", PHONE_TYPED, "4695550177", "555-0177"):
        pages[f"search {q}"] = desk.get("/leads", q=q)
    desk.http.headers["Referer"] = f"{server.url}/leads?q={LAST}"  # the page a user came from
    pages["lead"] = desk.get(f"/leads/{lead_id}")
    pages["note"] = desk.post(f"/leads/{lead_id}/notes", {"body": MESSAGE})
    pages["missing lead"] = desk.get("/leads/2147483000", q=LAST)
    pages["bad filter"] = desk.get("/leads", sort=LAST, stage=FIRST, q=LAST)
    pages["api without token"] = desk.http.get(f"{server.url}/api/v1/leads", params={"q": LAST}, timeout=30)
    desk.close()

    statuses = {name: r.status_code for name, r in pages.items()}
    assert max(statuses.values()) < 500, (statuses, server.error_log.read_text()[-3000:])
    assert statuses["form"] == 303 and statuses["webhook"] == 200 and statuses["note"] == 302
    assert LAST in pages[f"search {LAST}"].text and LAST in pages["lead"].text  # the searches found her
    assert statuses["missing lead"] == 404
    for name in ("missing lead", "bad filter", "api without token"):  # error answers echo nothing
        if statuses[name] >= 400:
            assert _leaks(pages[name].text) == [], name

    logs = server.logs()
    access = server.access_log.read_text()
    print(
        f"\n{len(logs.splitlines())} log lines ({len(access.splitlines())} access,"
        f" {logs.count('SELECT')} SQL SELECTs echoed), statuses {statuses}"
    )
    assert re.search(r'"GET /leads HTTP/1.1" 200', access)  # the searches are logged, without their query
    assert "INSERT INTO leads" in logs and "INSERT INTO notes" in logs  # SQL echo was on
    leaks = {line for line in logs.splitlines() if _leaks(line)}
    assert leaks == set(), sorted(leaks)[:5]


def test_a_failed_statement_is_logged_without_patient_values(app: Any, make_lead: Any, caplog: Any) -> None:
    """A real database error, logged as the 500 handler logs it, names the SQL but no value.

    PostgreSQL repeats values in its own message ("Failing row contains (…)"), which
    ``hide_parameters`` cannot hide: ``crm.errors.loggable`` keeps only what failed and where.
    """
    lead = make_lead(first_name=FIRST, last_name=LAST, phone=PHONE)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # what SQL echo shows
    try:
        with pytest.raises(sa.exc.IntegrityError) as raised:
            db.session.execute(
                sa.text(
                    "INSERT INTO leads (id, first_name, last_name, phone) VALUES (:id, :first, :last, :phone)"
                ),
                {"id": lead.id, "first": FIRST, "last": LAST, "phone": PHONE},
            )
        db.session.rollback()
        with app.test_request_context("/leads", method="POST"):  # the app's own 500 handler
            response = app.make_response(app.handle_user_exception(raised.value))
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    if PG_URL:  # the reason for loggable(): the driver's own message carries the row
        assert _leaks(str(raised.value)) != []
    assert response.status_code == 500 and _leaks(response.get_data(as_text=True)) == []
    assert "INSERT INTO leads" in caplog.text and "LoggedDatabaseError" in caplog.text
    assert _leaks(caplog.text) == []

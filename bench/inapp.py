"""The benchmark's helpers that run inside the app, on the benchmark's database (not timed).

``run_bench.py`` runs this file as a subprocess with the server's environment:

- ``inapp.py sample``: picks what the pages need (a lead to open, a name, phone and email to
  search, known callers and existing call ids for the webhook) and prints it as JSON;
- ``inapp.py floor PAGES.json``: the raw SQL floor. For each page it makes the same request
  in-process (Flask test client, signed in as the page's role), captures every statement
  the request sends to the database driver, then replays those statements straight on a
  driver connection ``--repeats`` times (execute + fetch all rows, one transaction, rolled
  back) and prints the median replay time: the least the database needs for that page.
  Writes stay out of the database: during the capture ``Session.commit`` only flushes and
  the request's transaction is rolled back; each replay is rolled back too.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from crm import create_app
from crm.extensions import db
from crm.models import Call, Lead, LeadTag
from crm.seed import DEMO_LOGINS

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="form_token"[^>]*value="([^"]+)"')
REPLAY_BUDGET_MS = 5000  # per page, beyond the first three replays


def sample(app: Flask) -> dict[str, Any]:
    """Pick the ids and values the benchmark's requests use."""
    with app.app_context():
        # A named caller (a voicemail from an unknown number makes a lead with no name yet).
        open_with_phone = sa.and_(Lead.in_queue.is_(True), Lead.phone.is_not(None), Lead.last_name > "")
        newest_first = sa.select(Lead).where(open_with_phone).order_by(Lead.id.desc()).limit(1)
        # A lead some way down the queue (the newest may be unusual); the newest on a tiny data set.
        lead = db.session.scalars(newest_first.offset(500)).first() or db.session.scalars(newest_first).one()
        with_email = (
            sa.select(Lead.email)
            .where(Lead.in_queue.is_(True), Lead.email.is_not(None))
            .order_by(Lead.id.desc())
            .limit(1)
        )
        email = db.session.scalar(with_email.offset(700)) or db.session.scalar(with_email)
        known_callers = list(
            db.session.scalars(
                sa.select(Lead.phone).where(Lead.phone.is_not(None)).order_by(Lead.id.desc()).limit(2000)
            )
        )
        calls = db.session.execute(
            sa.select(Call.call_sid, Call.from_number, Call.to_number, Call.direction, Call.status)
            .where(Call.call_sid.is_not(None), Call.direction == "inbound")
            .order_by(Call.id.desc())
            .limit(1000)
        ).all()
        # The dashboard's owner and tag filters: the owner with the most leads, the commonest tag.
        owner = db.session.scalar(
            sa.select(Lead.owner_id)
            .where(Lead.owner_id.is_not(None))
            .group_by(Lead.owner_id)
            .order_by(sa.func.count().desc())
            .limit(1)
        )
        tag = db.session.scalar(
            sa.select(LeadTag.code)
            .where(LeadTag.state == "active")
            .group_by(LeadTag.code)
            .order_by(sa.func.count().desc())
            .limit(1)
        )
        return {
            "owner": owner or "",
            "tag": tag or "",
            "lead": lead.id,
            "name": lead.last_name.split()[0],
            "phone": lead.phone,
            "last4": lead.phone[-4:],
            "email": email or "",
            "known_callers": known_callers,
            "existing_calls": [list(c) for c in calls],
        }


@contextmanager
def commits_only_flush() -> Iterator[None]:
    """Make ``Session.commit`` a flush, so a captured request leaves the database unchanged."""
    original = Session.commit
    Session.commit = Session.flush  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Session.commit = original  # type: ignore[method-assign]


def sign_in(client: FlaskClient, email: str, password: str) -> None:
    """Sign in through the real form (with its CSRF token)."""
    page = client.get("/login").get_data(as_text=True)
    token = CSRF.search(page)
    assert token, "no CSRF token on the sign-in page"
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 302, f"sign-in as {email} failed ({response.status_code})"


def webhook_request(app: Flask) -> dict[str, Any]:
    """A signed status callback for a new call from a new caller."""
    from twilio.request_validator import RequestValidator

    form = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": "CAfloor" + datetime.now(UTC).strftime("%H%M%S%f"),
        "From": "+14695550199",
        "To": next(iter(app.config["CLINIC_LINES"])),
        "Direction": "inbound",
        "CallStatus": "completed",
        "CallDuration": "42",
        "SequenceNumber": "1",
        "Timestamp": format_datetime(datetime.now(UTC)),
    }
    url = app.config["PUBLIC_BASE_URL"] + "/webhooks/twilio/voice-status"
    signature = RequestValidator(app.config["TWILIO_AUTH_TOKEN"]).compute_signature(url, form)
    return {"data": form, "headers": {"X-Twilio-Signature": signature}}


def form_request(client: FlaskClient) -> dict[str, Any]:
    """A complete appointment request, with a fresh form token."""
    token = FORM_TOKEN.search(client.get("/request-appointment").get_data(as_text=True))
    assert token, "no form token on the appointment form"
    data = {
        "first_name": "Floor",
        "last_name": "Measure",
        "phone": "(469) 555-0198",
        "message": "Lower back pain down my left leg for three weeks.",
        "where_it_hurts": "lower",
        "side": "left",
        "red_flag_bladder": "no",
        "red_flag_weakness": "no",
        "consent_phone": "y",
        "form_token": token.group(1),
    }
    return {"data": data, "headers": {"Origin": "http://localhost"}}


def capture(
    app: Flask, client: FlaskClient, method: str, path: str
) -> tuple[int, list[tuple[str, Any, bool]]]:
    """Make one request; return its status and the statements it sent (text, parameters, many)."""
    statements: list[tuple[str, Any, bool]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        statements.append((statement, parameters, many))

    with app.app_context():
        engine = db.engine
    extra = {}
    if method == "WEBHOOK":
        extra = webhook_request(app)
    elif method == "FORM":
        extra = form_request(client)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with commits_only_flush():
            response = client.get(path) if method == "GET" else client.post(path, **extra)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return response.status_code, statements


def sequences(app: Flask) -> list[tuple[str, int | None]]:
    """PostgreSQL's sequences and their values (SQLite hands out the same ids after a rollback)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return []
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value"
                " FROM pg_sequences"
            ).all()
    return [(name, value) for name, value in rows]


def reset_sequences(cursor: Any, values: list[tuple[str, int | None]]) -> None:
    """Put the sequences back (``setval`` outlives a rollback), so a replayed INSERT gets the
    ids the captured one got and the statements after it refer to rows that exist."""
    for name, value in values:
        cursor.execute("SELECT setval(%s::regclass, %s, %s)", (name, value or 1, value is not None))


def replay(
    app: Flask, statements: list[tuple[str, Any, bool]], repeats: int, ids: list[tuple[str, int | None]]
) -> float:
    """Run the statements straight on a driver connection; return the median time in ms."""
    with app.app_context():
        raw = db.engine.raw_connection()
        sqlite = db.engine.dialect.name == "sqlite"
    try:
        times: list[float] = []
        for _ in range(repeats + 1):  # the first run warms the caches and is not counted
            if len(times) > 3 and sum(times[1:]) > REPLAY_BUDGET_MS:
                break  # a slow page: a few replays give its floor well enough
            cursor = raw.cursor()
            if ids:
                reset_sequences(cursor, ids)
            started = time.perf_counter()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # as the app does: one transaction for the page
            for statement, parameters, many in statements:
                if statement.lstrip().upper().startswith("BEGIN"):
                    continue
                # "insertmanyvalues" batches are flagged ``many`` but sent as one execute.
                if many and isinstance(parameters, list) and isinstance(parameters[0], tuple | list | dict):
                    cursor.executemany(statement, parameters)
                else:
                    cursor.execute(statement, parameters)
                if cursor.description is not None:
                    cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
            raw.rollback()
            cursor.close()
        return statistics.median(times[1:])
    finally:
        raw.rollback()
        raw.close()


def floor(app: Flask, pages: list[dict[str, str]], repeats: int) -> dict[str, dict[str, Any]]:
    """Capture and replay each page's statements; return {page: {statements, floor_ms, status}}."""
    logins = {role: (email, password) for email, role, _name, password in DEMO_LOGINS}
    clients: dict[str, FlaskClient] = {}
    results: dict[str, dict[str, Any]] = {}
    for page in pages:
        role = page["role"]
        if role not in clients:
            clients[role] = app.test_client()
            if role != "public":
                sign_in(clients[role], *logins[role])
        client = clients[role]
        method = page.get("method", "GET")
        if method == "GET":
            client.get(page["path"])  # warm, as the timed run is
        ids = sequences(app)
        status, statements = capture(app, client, method, page["path"])
        results[page["name"]] = {
            "status": status,
            "statements": len(statements),
            "floor_ms": replay(app, statements, repeats, ids),
        }
        if ids:
            with app.app_context(), db.engine.connect() as conn:
                reset_sequences(conn.connection.cursor(), ids)
                conn.commit()
    return results


def main() -> int:
    """Run one of the helpers named on the command line; print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sample")
    floor_cmd = sub.add_parser("floor")
    floor_cmd.add_argument("pages", type=Path)
    floor_cmd.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    app = create_app()
    if args.command == "sample":
        out: Any = sample(app)
    else:
        out = floor(app, json.loads(args.pages.read_text()), args.repeats)
    with app.app_context():
        db.engine.dispose()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

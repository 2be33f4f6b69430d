"""Concurrent writers under gunicorn lose nothing (PRODUCT §9 "Safety of data", issue 9).

Each test starts gunicorn (2 threaded workers) on the test's own committed database and counts
rows afterwards: every write answered as done is in the database, no writer met "database is
locked", and no request got a server error.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm.extensions import db
from crm.models import AppointmentRequest, AuditEvent, Call, Lead, Note, Task
from tests.conftest import PG_URL
from tests.reliability.clients import (
    SERVER_ENV,
    PublicForm,
    Staff,
    callback,
    edit_values,
    phone,
    send_callback,
)
from tests.servers import Server, gunicorn_server

pytestmark = [pytest.mark.server, pytest.mark.reliability]

WRITERS = 16 if PG_URL else 8  # PostgreSQL takes twice the writers SQLite does
WRITES_EACH = 500
KINDS = ("form", "call", "edit", "note")  # a quarter of each writer's writes
OK = {"form": 303, "call": 200, "edit": 302, "note": 302}


@pytest.fixture
def server(database_url: str, tmp_path: Path, app: Any) -> Iterator[Server]:
    """gunicorn with 2 workers (gunicorn.conf.py: threaded) on the test's committed database."""
    db.session.commit()  # hold no SQLite lock while the server writes
    with gunicorn_server(database_url, tmp_path / "server", env=SERVER_ENV) as running:
        yield running


def _count(model: type[Any], *where: Any) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def _assert_clean(server: Server) -> None:
    logs = server.logs()
    assert "database is locked" not in logs
    assert "Traceback" not in logs, logs[-3000:]


def test_concurrent_writers_lose_nothing(server: Server, make_user: Any, make_lead: Any) -> None:
    staff = [make_user("front_desk") for _ in range(WRITERS)]
    edit_leads = [make_lead(first_name="Edith", last_name=f"Writer{w}") for w in range(WRITERS)]
    note_leads = [make_lead(first_name="Nora", last_name=f"Writer{w}") for w in range(WRITERS)]
    snapshot = [edit_values(lead, lead.version) for lead in edit_leads]
    first_version = [lead.version for lead in edit_leads]
    note_ids = [lead.id for lead in note_leads]
    edit_ids = [lead.id for lead in edit_leads]
    emails = [user.email for user in staff]
    db.session.commit()
    go: list[float] = []
    barrier = threading.Barrier(WRITERS, action=lambda: go.append(time.monotonic()))

    def writer(w: int) -> tuple[Counter[tuple[str, int]], int]:
        desk, form, calls = Staff(server.url, emails[w]), PublicForm(server.url), requests.Session()
        version = first_version[w]
        statuses: Counter[tuple[str, int]] = Counter()
        missed = 0
        barrier.wait()  # every writer signed in: start together
        for i in range(WRITES_EACH):
            n = w * WRITES_EACH + i
            kind = KINDS[i % len(KINDS)]
            if kind == "form":
                response = form.send(
                    f"Pat{n}", f"Concurrent{n}", phone("469555", n), "Low back pain, 6 weeks."
                )
            elif kind == "call":
                sid = "CA" + uuid.uuid4().hex
                status, duration = ("completed", 42) if (i // 4) % 2 else ("no-answer", 0)
                missed += status == "no-answer"
                response = send_callback(
                    calls, server.url, callback(sid, phone("469557", n), status, 1, duration)
                )
            elif kind == "edit":
                values = {**snapshot[w], "version": str(version)}
                values["insurance"] = f"Plan {w}-{i}"
                response = desk.post(f"/leads/{edit_ids[w]}/edit", values)
                version += 1
            else:
                response = desk.post(
                    f"/leads/{note_ids[w]}/notes", {"body": f"Called, left a message ({w}-{i})."}
                )
            statuses[(kind, response.status_code)] += 1
        for client in (desk, form):
            client.close()
        calls.close()
        return statuses, missed

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    elapsed = time.monotonic() - go[0]  # from the moment every writer was signed in

    statuses = sum((r[0] for r in results), Counter())
    total = WRITERS * WRITES_EACH
    each = total // len(KINDS)
    print(
        f"\n{WRITERS} writers x {WRITES_EACH} writes = {total} in {elapsed:.1f} s"
        f" ({total / elapsed:.0f} writes/s, {db.engine.dialect.name}); statuses {dict(statuses)}"
    )
    assert statuses == Counter({(kind, OK[kind]): each for kind in KINDS}), statuses
    _assert_clean(server)

    db.session.expire_all()
    assert _count(AppointmentRequest) == each
    assert _count(Lead, Lead.last_name.like("Concurrent%")) == each
    assert _count(Call) == each
    assert _count(Task, Task.kind == "callback") == sum(r[1] for r in results)  # one per missed call
    assert _count(Note, Note.lead_id.in_(note_ids)) == each
    assert _count(AuditEvent, AuditEvent.action == "lead_edit") == each
    for w, lead in enumerate(edit_leads):
        db.session.refresh(lead)
        assert lead.version == first_version[w] + WRITES_EACH // len(KINDS)
        assert lead.insurance == f"Plan {w}-{WRITES_EACH - 2}"  # the writer's last edit (i % 4 == 2)


PAIRS = 100
CONFLICT = "Not saved: someone else changed this lead while you were editing."


def test_conflicting_edit_pairs_are_refused_never_overwritten(
    server: Server, make_user: Any, make_lead: Any
) -> None:
    """Two staff save the same lead from the same version: one saves, the other is told why."""
    ana, ben = make_user("front_desk", name="Ana Desk"), make_user("manager", name="Ben Manager")
    leads = [make_lead(first_name="Paula", last_name=f"Pair{n}") for n in range(PAIRS)]
    forms = {lead.id: edit_values(lead, lead.version) for lead in leads}
    jobs = [(lead.id, who) for lead in leads for who in ("ana", "ben")]
    emails = {"ana": ana.email, "ben": ben.email}
    db.session.commit()  # on SQLite, BEGIN IMMEDIATE: hold no write lock while the server works
    editors = {who: Staff(server.url, email) for who, email in emails.items()}

    def save(job: tuple[int, str]) -> tuple[int, str, int, str]:
        lead_id, who = job
        values = {**forms[lead_id], "insurance": f"{who} plan {lead_id}"}
        response = editors[who].post(f"/leads/{lead_id}/edit", values)
        return lead_id, who, response.status_code, response.text

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:  # the two saves of a pair run side by side
        results = list(pool.map(save, jobs))
    elapsed = time.monotonic() - started
    for editor in editors.values():
        editor.close()

    outcome = Counter(status for _, _, status, _ in results)
    print(f"\n{PAIRS} conflicting pairs in {elapsed:.1f} s: {dict(outcome)}")
    assert outcome == {302: PAIRS, 409: PAIRS}
    refusals = [text for _, _, status, text in results if status == 409]
    assert all(CONFLICT in text for text in refusals)
    winners = {lead_id: who for lead_id, who, status, _ in results if status == 302}
    assert len(winners) == PAIRS  # one save per lead, never two
    _assert_clean(server)

    db.session.expire_all()
    for lead in leads:
        db.session.refresh(lead)
        assert lead.insurance == f"{winners[lead.id]} plan {lead.id}"  # the loser overwrote nothing
        assert lead.version == 2
    assert _count(AuditEvent, AuditEvent.action == "lead_edit") == PAIRS


CALLS = 200
CALLBACKS = 1000
CLIENTS = 32


def _callbacks(rng: random.Random) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Five callbacks per call, the way Twilio sends them, with its retries; and each call's last status.

    Two calls come from each caller, so the callers' first calls also race to make one lead.
    Answered calls report initiated → ringing → in-progress → completed (sequence 0–3), missed
    ones initiated → ringing → no-answer (0–2); Twilio's retries repeat some callbacks.
    """
    jobs: list[dict[str, str]] = []
    expected: dict[str, str] = {}
    for n in range(CALLS):
        sid, caller = "CA" + uuid.uuid4().hex, phone("469558", n // 2)
        if n % 2 == 0:
            chain = [("initiated", 0, 0), ("ringing", 1, 0), ("in-progress", 2, 0), ("completed", 3, 75)]
            expected[sid] = "completed"
        else:
            chain = [("initiated", 0, 0), ("ringing", 1, 0), ("no-answer", 2, 0)]
            expected[sid] = "no-answer"
        sent = [callback(sid, caller, status, seq, duration) for status, seq, duration in chain]
        while len(sent) < CALLBACKS // CALLS:
            sent.append(rng.choice(sent))  # a retry: the same callback again
        jobs += sent
    rng.shuffle(jobs)
    return jobs, expected


def test_shuffled_twilio_callbacks_leave_each_call_at_its_last_status(server: Server) -> None:
    jobs, expected = _callbacks(random.Random(9))
    local = threading.local()

    def send(params: dict[str, str]) -> int:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        return send_callback(local.http, server.url, params).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        statuses = Counter(pool.map(send, jobs))
    elapsed = time.monotonic() - started

    print(
        f"\n{len(jobs)} signed callbacks for {CALLS} calls from {CLIENTS} clients in {elapsed:.1f} s"
        f" ({len(jobs) / elapsed:.0f}/s): {dict(statuses)}"
    )
    assert statuses == {200: CALLBACKS}
    _assert_clean(server)
    db.session.expire_all()
    calls = {call.call_sid: call for call in db.session.scalars(sa.select(Call))}
    assert len(calls) == CALLS
    assert {sid: call.status for sid, call in calls.items()} == expected
    answered = [calls[sid] for sid, status in expected.items() if status == "completed"]
    assert {call.duration_seconds for call in answered} == {75}
    assert _count(Lead) == CALLS // 2  # one lead per caller, though their calls raced
    assert _count(Task, Task.kind == "callback") == CALLS // 2  # one call-back per missed call

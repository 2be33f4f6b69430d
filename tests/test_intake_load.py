"""Intake under load: 200 form submissions and 200 signed Twilio callbacks, at once, from 20
threads, against gunicorn with 2 workers on the test's own committed database (issue 5).

The mix is built so that the right answer is known in advance:

- 160 patients send the form once; 20 more send it twice (same phone, same name), so their
  two submissions race for one lead and must attach: 180 leads, 200 requests.
- 40 answered calls from new callers, each reported twice in reverse order (``completed``
  with SequenceNumber 1 before ``ringing`` with 0): 40 leads, 40 calls left ``completed``.
- 40 missed calls (``no-answer``), each retried three times: 40 calls, 40 call-back tasks.
  Half come from new callers (20 leads); the other half from form patients' phones, racing
  their form submission, so they join that patient's lead (a nameless call joins the open
  lead with its phone; a named form joins a lead that has no name yet).

Expected: 240 leads, 200 requests, 80 calls, 40 tasks, no possible duplicates, every
response 303 (form) or 200 (webhook), and no "database is locked" in the server's log.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from crm.extensions import db
from crm.models import AppointmentRequest, Call, Lead, Task
from tests.reliability.clients import callback
from tests.servers import gunicorn_server

PUBLIC_BASE_URL = "http://crm.load.test"
TOKEN = "load-test-twilio-token"
MAIN_LINE = "+19724995457"
WEBHOOK_PATH = "/webhooks/twilio/voice-status"
FORM_PATH = "/request-appointment"
THREADS = 20
TOKEN_RE = re.compile(r'name="form_token" type="hidden" value="([^"]+)"')


@pytest.fixture
def intake_server(database_url: str, tmp_path: Path, app: Any) -> Iterator[tuple[str, Path]]:
    """Serve the test's committed database with gunicorn (2 workers); yield (url, server log)."""
    db.session.commit()  # hold no SQLite lock while the server writes
    env = {
        "CLINIC_LINES": f"{MAIN_LINE}=main",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "PUBLIC_FORM_MIN_SECONDS": "0",
        "FORM_RATE_LIMIT": "100000 per hour",
    }
    with gunicorn_server(database_url, tmp_path / "server", env=env, ready_path=FORM_PATH) as server:
        yield server.url, server.error_log


# --------------------------------------------------------------------------- the mix


def _phone(n: int) -> str:
    return f"+1469555{n:04d}"


def _patient(n: int, phone: str) -> dict[str, Any]:
    return {
        "first_name": f"Pat{n:03d}",
        "last_name": f"Loadtest{n:03d}",
        "phone": phone,
        "email": f"patient{n}@example.com",
        "message": "Low back pain shooting down my left leg for 6 weeks.",
        "where_it_hurts": ["lower"],
        "side": ["left"],
        "tried_pt": "did_not_help",
        "red_flag_bladder": "no",
        "red_flag_weakness": "no",
        "preferred_time": "Morning",
        "language": "English",
        "consent_phone": "y",
        "website": "",
    }


def _callback(sid: str, caller: str, status: str, sequence: int, duration: int = 0) -> dict[str, str]:
    return callback(sid, caller, status, sequence, duration, at=datetime.now(UTC))


def _jobs() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, set[str]]]:
    """Return the 400 jobs (kind, payload) in a shuffled order, and the expected call SIDs."""
    forms = [_patient(n, _phone(n)) for n in range(160)]
    for n in range(160, 180):  # twice each: the two submissions must make one lead
        forms += [_patient(n, _phone(n)), _patient(n, _phone(n))]
    answered = ["CA" + uuid.uuid4().hex for _ in range(40)]
    missed = ["CA" + uuid.uuid4().hex for _ in range(40)]
    callbacks = []
    for i, sid in enumerate(answered):  # out of order: the final status arrives first
        caller = _phone(5000 + i)
        callbacks += [_callback(sid, caller, "completed", 1, 30), _callback(sid, caller, "ringing", 0)]
    for i, sid in enumerate(missed):  # Twilio retries: the same callback three times
        caller = _phone(i) if i < 20 else _phone(6000 + i)  # half share a form patient's phone
        callbacks += [_callback(sid, caller, "no-answer", 1)] * 3
    jobs = [("form", f) for f in forms] + [("call", c) for c in callbacks]
    random.Random(5).shuffle(jobs)
    return jobs, {"answered": set(answered), "missed": set(missed)}


# --------------------------------------------------------------------------- the clients

_local = threading.local()


def _http() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _send(url: str, job: tuple[str, dict[str, Any]]) -> tuple[str, int]:
    kind, payload = job
    http = _http()
    if kind == "form":
        page = http.get(f"{url}{FORM_PATH}", timeout=30)
        token = TOKEN_RE.search(page.text)
        if page.status_code != 200 or token is None:
            return kind, page.status_code
        response = http.post(
            f"{url}{FORM_PATH}",
            data={**payload, "form_token": token.group(1)},
            headers={"Origin": url},
            allow_redirects=False,
            timeout=30,
        )
    else:
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC_BASE_URL + WEBHOOK_PATH, payload)
        response = http.post(
            f"{url}{WEBHOOK_PATH}", data=payload, headers={"X-Twilio-Signature": signature}, timeout=30
        )
    return kind, response.status_code


def _count(model: type[Any], *where: Any) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


@pytest.mark.server
def test_200_forms_and_200_callbacks_at_once_make_exactly_the_expected_rows(
    intake_server: tuple[str, Path],
) -> None:
    url, log = intake_server
    jobs, sids = _jobs()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(lambda job: _send(url, job), jobs))
    elapsed = time.monotonic() - started

    statuses = Counter(results)
    server_log = log.read_text()
    errors = sum(n for (_, status), n in statuses.items() if status >= 400)
    print(
        f"\n{len(jobs)} submissions ({len(jobs) + 200} HTTP requests with the form GETs) in {elapsed:.1f} s:"
        f" {(len(jobs) + 200) / elapsed:.0f} requests/s, statuses {dict(statuses)}, errors {errors},"
        f" 'database is locked' {server_log.count('database is locked')}"
    )
    assert statuses == {("form", 303): 200, ("call", 200): 200}, statuses
    assert "database is locked" not in server_log
    assert "Traceback" not in server_log, server_log[-3000:]

    db.session.expire_all()
    assert _count(Lead) == 240
    assert _count(Lead, Lead.possible_duplicate_of_id.is_not(None)) == 0
    assert _count(AppointmentRequest) == 200
    per_phone = dict(db.session.execute(sa.select(Lead.phone, sa.func.count()).group_by(Lead.phone)).all())
    assert len(per_phone) == 240 and set(per_phone.values()) == {1}  # one lead per phone
    requests_per_lead = Counter(db.session.scalars(sa.select(AppointmentRequest.lead_id)))
    assert sorted(Counter(requests_per_lead.values()).items()) == [(1, 160), (2, 20)]

    calls = {call.call_sid: call for call in db.session.scalars(sa.select(Call))}
    assert set(calls) == sids["answered"] | sids["missed"]
    assert {calls[sid].status for sid in sids["answered"]} == {"completed"}
    assert {calls[sid].status for sid in sids["missed"]} == {"no-answer"}
    assert all(call.lead_id is not None for call in calls.values())
    leads = {lead.id: lead for lead in db.session.scalars(sa.select(Lead))}
    assert all(leads[call.lead_id].phone == call.from_number for call in calls.values())
    shared = [calls[sid] for sid in sids["missed"] if leads[calls[sid].lead_id].first_name]
    assert len(shared) == 20  # the calls from form patients' phones joined the patient's lead

    tasks = list(db.session.scalars(sa.select(Task)))
    assert len(tasks) == 40
    assert {task.call_id for task in tasks} == {calls[sid].id for sid in sids["missed"]}
    assert all(task.kind == "callback" for task in tasks)

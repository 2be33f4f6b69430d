"""Many call events at once (``intake.receive_call_events``) end exactly as one at a time.

The webhook records the status callbacks that arrive together in one transaction, set-wise.
Two identical "worlds" a week apart (same weekday and hours, their own numbers and call ids)
get the same mix of callbacks: world A one callback per transaction through
``receive_call_event``, as the webhook did before; world B all of them in one call of
``receive_call_events``. Every call, lead, task and answer, and every call roll-up cell,
must come out the same; and the roll-ups must equal a rebuild from the raw tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crm import intake, rollups
from crm.extensions import db
from crm.models import Call, Lead, Task
from tests.conftest import utc
from tests.test_rollups import snapshot

LINES = {"+19724995457": "main", "+12145550100": "google-ads"}
MAIN = "+19724995457"
MONDAY = utc(2026, 4, 13, 15, 0)  # 10:00 in Chicago, no clock change within two weeks


def world_events(w: int, start: datetime) -> list[intake.CallEventIn]:
    """The mix, with world ``w``'s own numbers (…5550w…) and call ids (CAw…)."""

    def sid(n: int) -> str:
        return f"CA{w}{n:031d}"

    def event(n: int, **fields: Any) -> intake.CallEventIn:
        values: dict[str, Any] = {
            "call_sid": sid(n),
            "from_number": f"+1469555{w}{n:03d}",
            "to_number": MAIN,
            "direction": "inbound",
            "status": "ringing",
            "started_at": start + timedelta(minutes=n),
        }
        values.update(fields)
        return intake.CallEventIn(**values)

    known = f"+1972555{w}100"  # the lead the clinic already has
    return [
        event(1),  # a new caller, ringing
        event(2, from_number=known, status="no-answer", sequence_number=1),  # a missed call: a task
        event(3, from_number=f"+1469555{w}003", status="completed", sequence_number=1, duration_seconds=60),
        event(4, from_number=f"+1469555{w}003"),  # the same new caller again, another call
        event(5, from_number="anonymous", status="no-answer", sequence_number=1),  # withheld: no lead
        # The first call again, completed after 70 minutes: its start moves an hour earlier.
        event(1, status="completed", sequence_number=1, duration_seconds=4200,
              started_at=start - timedelta(minutes=69)),
        # A staff leg answering call 3: call 3 is answered, its caller contacted.
        event(7, parent_call_sid=sid(3), status="in-progress", from_number=MAIN, to_number="+12145559999"),
        # We called the known patient back, and they picked up.
        event(8, direction="outbound-api", from_number=MAIN, to_number=known, status="completed",
              sequence_number=2, duration_seconds=30),
        event(9, to_number="+12125550000"),  # not the clinic's line: refused, nothing stored
        # A voicemail from a new caller: a missed call with a task.
        event(10, status="completed", sequence_number=2, duration_seconds=20,
              recording_url="https://api.twilio.com/recordings/RE1"),
        # A call the clinic has had since last week, reported again with a longer duration.
        event(0, from_number=known, status="completed", sequence_number=5, duration_seconds=900,
              started_at=start - timedelta(days=1, minutes=14)),
        event(3, from_number=f"+1469555{w}003", status="completed", sequence_number=1, duration_seconds=60),
        # We call a number back before its first call reaches us: no lead yet, so none found …
        event(11, direction="outbound-api", from_number=MAIN, to_number=f"+1469555{w}012", status="completed",
              sequence_number=2, duration_seconds=40),
        event(12),  # … then that caller's first call makes the lead
    ]  # fmt: skip


def set_up_world(w: int, start: datetime, owner_id: int) -> None:
    """The known patient's lead and their call of the day before."""
    now = start - timedelta(days=1)
    found = intake.find_or_create_lead(
        intake.ContactIn(source="phone", phone=f"+1972555{w}100", first_name="Kim", last_name="Known"),
        now=now,
    )
    assert found.lead is not None
    found.lead.owner_id = owner_id
    intake.receive_call_event(
        intake.CallEventIn(
            call_sid=f"CA{w}{0:031d}",
            from_number=f"+1972555{w}100",
            to_number=MAIN,
            direction="inbound",
            status="completed",
            sequence_number=1,
            duration_seconds=60,
            started_at=start - timedelta(days=1),
        ),
        lines=LINES,
        now=now,
    )
    db.session.commit()


def plain(value: Any, w: int, shift: timedelta) -> Any:
    """A value as world 1 would have it: the world's digit and the week between them taken out."""
    if isinstance(value, datetime):
        return value - shift
    if isinstance(value, str):
        return (
            value.replace(f"+1469555{w}", "+1469555_")
            .replace(f"+1972555{w}", "+1972555_")
            .replace(f"CA{w}", "CA_")
        )
    return value


def answer(result: intake.IntakeResult | intake.IntakeRefused) -> tuple[Any, ...]:
    if isinstance(result, intake.IntakeRefused):
        return ("refused", str(result))
    return (
        result.call.call_sid if result.call else None,
        result.lead.phone if result.lead else None,
        result.created,
        bool(result.details.get("missed")),
        result.details.get("task_created"),
    )


def world(w: int, shift: timedelta) -> dict[str, Any]:
    """Everything world ``w`` holds, as world 1 would hold it."""
    pattern = f"CA{w}%"
    calls = db.session.scalars(sa.select(Call).where(Call.call_sid.like(pattern))).all()
    leads = db.session.scalars(
        sa.select(Lead).where(sa.or_(Lead.phone.like(f"+1469555{w}%"), Lead.phone.like(f"+1972555{w}%")))
    ).all()
    phone_of = {lead.id: lead.phone for lead in leads}
    tasks = db.session.scalars(
        sa.select(Task).join(Call, Task.call_id == Call.id).where(Call.call_sid.like(pattern))
    )

    def row(obj: Any, columns: list[str]) -> tuple[Any, ...]:
        return tuple(plain(getattr(obj, c), w, shift) for c in columns)

    call_columns = [
        "call_sid", "from_number", "to_number", "line", "campaign", "direction", "status",
        "sequence_number", "started_at", "local_hour", "local_weekday", "duration_seconds",
        "recording_url", "answered", "voicemail", "missed", "handled_by_id",
    ]  # fmt: skip
    lead_columns = [
        "first_name", "last_name", "phone", "open_phone_key", "source", "campaign", "stage",
        "created_at", "last_activity_at", "first_contact_due_at", "first_contact_at",
        "first_attempt_at", "next_task_due_at", "owner_id", "urgent",
    ]  # fmt: skip
    return {
        "calls": sorted((*row(c, call_columns), plain(phone_of.get(c.lead_id), w, shift)) for c in calls),
        "leads": sorted(
            (*row(lead, lead_columns), plain(phone_of.get(lead.possible_duplicate_of_id), w, shift))
            for lead in leads
        ),
        "tasks": sorted(
            (
                plain(t.call.call_sid, w, shift),
                plain(phone_of.get(t.lead_id), w, shift),
                t.kind,
                t.title,
                plain(t.due_at, w, shift),
                t.assignee_id,
                t.attempt,
            )
            for t in tasks
        ),
    }


def call_cells(day: datetime) -> set[tuple[Any, ...]]:
    table = rollups.TABLES["rollup_calls"]
    local_day = (day - timedelta(hours=5)).date()
    rows = db.session.execute(
        sa.select(table).where(table.c.grain == "d", table.c.bucket == local_day)
    ).mappings()
    return {tuple(v for k, v in r.items() if k not in ("grain", "bucket")) for r in rows}


def test_many_call_events_at_once_end_as_one_at_a_time(app, make_user, frozen_clock) -> None:
    desk = make_user("front_desk", name="Dana Desk")
    week = timedelta(days=7)
    starts = {1: MONDAY, 2: MONDAY + week}
    for w, start in starts.items():
        set_up_world(w, start, desk.id)

    # World 1: one callback per transaction, as the webhook recorded them before.
    frozen_clock(starts[1] + timedelta(minutes=30))
    one_by_one = []
    for event in world_events(1, starts[1]):
        try:
            result = intake.receive_call_event(event, lines=LINES, now=starts[1] + timedelta(minutes=30))
            one_by_one.append(answer(result))
            db.session.commit()
        except intake.IntakeRefused as refused:
            db.session.rollback()
            one_by_one.append(answer(refused))

    # World 2: all of them at once, in one transaction.
    frozen_clock(starts[2] + timedelta(minutes=30))
    results = intake.receive_call_events(
        world_events(2, starts[2]), lines=LINES, now=starts[2] + timedelta(minutes=30)
    )
    at_once = [answer(result) for result in results]
    db.session.commit()

    assert [tuple(plain(v, 2, week) for v in a) for a in at_once] == [
        tuple(plain(v, 1, timedelta()) for v in a) for a in one_by_one
    ]
    assert sum(1 for a in at_once if a[0] == "refused") == 1
    first, second = world(1, timedelta()), world(2, week)
    assert first["calls"] and first["tasks"] and len(first["leads"]) == 5
    for key in first:
        for a, b in zip(first[key], second[key], strict=True):
            assert b == a, key
    for day in (starts[1], starts[1] - timedelta(days=1)):
        assert call_cells(day) and call_cells(day + week) == call_cells(day)
    kept = snapshot()
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()

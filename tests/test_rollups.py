"""The dashboard roll-ups stay equal to the raw queries whatever writes come, by every path.

A seeded random sequence of writes — new leads (one at a time and in bulk), calls and their
status callbacks through the intake (Core upserts), call-back tasks done, stage moves through
the pipeline, tags, merges, "not a patient" (a Core UPDATE) and reassignment — runs in
separate transactions. After it, (1) every roll-up row equals what ``rollups.rebuild()``
computes from the raw tables, and (2) each dashboard metric read from the roll-ups equals the
same metric computed by the raw queries.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from crm import clock, merge, metrics, pipeline, queue, rollups
from crm.extensions import db
from crm.intake import CallEventIn, ContactIn, receive_call_event, receive_contacts_bulk
from crm.models import Lead, LeadTag, ReferringPractice, RollupLeadFacts, Task
from crm.settings import clinic_tz
from tests.conftest import utc

LINES = {"+19724995457": "main", "+12145550100": "google-ads"}
START = utc(2026, 3, 2, 14, 0)  # Monday 8:00 in Chicago, a week before the clocks go forward
KINDS = ("source", "campaign", "owner_id", "tag")
MOVES = ("contacted", "conservative_care", "evaluation", "surgical_review", "closed")


def snapshot() -> dict[str, set[tuple[Any, ...]]]:
    """Every roll-up row that holds a non-zero count, and every lead's facts."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for name, table in rollups.TABLES.items():
        values = [table.c[c.name] for c in table.columns if not c.primary_key]
        rows = db.session.execute(sa.select(table).where(sa.or_(*(v != 0 for v in values))))
        out[name] = {tuple(r) for r in rows}
    facts = RollupLeadFacts.__table__
    out["facts"] = {
        tuple(str(v) for v in r) for r in db.session.execute(sa.select(facts).order_by(facts.c.lead_id))
    }
    return out


def local_period(first_day: datetime, days: int) -> metrics.Period:
    tz = clinic_tz()
    day = first_day.astimezone(tz).date()
    return metrics.Period(
        datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=days), time(), tz)
    )


def dashboard_filters(owner_ids: list[int]) -> list[metrics.Filters]:
    """Each filter a manager can set alone (the roll-ups answer them), and some combinations."""
    return [
        metrics.Filters(source="phone"),
        metrics.Filters(source="web_form"),
        metrics.Filters(campaign="spring"),
        metrics.Filters(campaign="=cmd"),
        *(metrics.Filters(owner_id=owner_id) for owner_id in owner_ids),
        metrics.Filters(tag="region:lower"),
        metrics.Filters(tag="condition:stenosis"),
        metrics.Filters(source="phone", campaign="spring"),
        metrics.Filters(source="web_form", tag="region:lower"),
        metrics.Filters(source="phone", owner_id=owner_ids[0]),
    ]


def every_metric(period: metrics.Period, filters: list[metrics.Filters]) -> dict[str, Any]:
    db.session.expire_all()
    out: dict[str, Any] = {
        "calls": metrics.calls(period),
        "staff": metrics.staff(period),
    }
    for f in [metrics.NO_FILTERS, *filters]:
        funnel, sources = metrics.funnel_and_sources(period, f)
        out[f"funnel {f}"] = funnel
        out[f"sources {f}"] = sources
        out[f"speed {f}"] = metrics.speed_to_lead(period, f)
        out.update({f"{by} {f}": metrics.conversion_by(by, period, f) for by in metrics.BY_COLUMNS})
    return out


def random_writes(rng: random.Random, staff: list[Any], n: int) -> None:
    sids: list[str] = []
    for step in range(n):
        now = START + timedelta(hours=7 * step + rng.randrange(0, 300) / 60)
        clock.set_now(now)
        leads = list(db.session.scalars(sa.select(Lead).where(Lead.merged_into_id.is_(None))))
        action = rng.choice(
            [
                "lead",
                "lead",
                "bulk",
                "call",
                "call",
                "callback",
                "task",
                "move",
                "move",
                "tag",
                "merge",
                "nap",
                "owner",
                "owner",
            ]
        )
        if action in ("lead", "bulk") or not leads:
            contacts = [
                ContactIn(
                    source=rng.choice(["phone", "web_form", "referral"]),
                    first_name="Pat",
                    last_name=f"Random{step}x{i}",
                    phone=f"+1972555{rng.randrange(1000, 9999)}",
                    campaign=rng.choice([None, "spring", "=cmd"]),
                    landing_page=rng.choice([None, "/back-pain", "/neck"]),
                    message=rng.choice([None, "numbness in my leg", "lower back pain for months"]),
                    referring_provider=rng.choice([None, "North Spine Clinic"]),
                )
                for i in range(1 if action == "lead" else 3)
            ]
            receive_contacts_bulk(contacts, now=now)
        elif action == "call":
            lead = rng.choice(leads)
            sid = f"CA{step:032d}"
            sids.append(sid)
            status = rng.choice(["ringing", "completed", "no-answer", "busy"])
            receive_call_event(
                CallEventIn(
                    call_sid=sid,
                    from_number=lead.phone or "+19725550101",
                    to_number=rng.choice(list(LINES)),
                    direction="inbound",
                    status=status,
                    sequence_number=0,
                    started_at=now,
                    answered=status == "completed" or None,
                    handled_by_id=rng.choice(staff).id if status == "completed" else None,
                ),
                lines=LINES,
                now=now,
            )
        elif action == "callback" and sids:
            sid = rng.choice(sids)
            receive_call_event(
                CallEventIn(
                    call_sid=sid,
                    from_number="+19725550101",
                    to_number="+19724995457",
                    direction="inbound",
                    status=rng.choice(["completed", "no-answer"]),
                    sequence_number=5,
                    started_at=now - timedelta(hours=rng.randrange(0, 30)),
                ),
                lines=LINES,
                now=now,
            )
        elif action == "task":
            task = db.session.scalars(sa.select(Task).where(Task.done_at.is_(None)).limit(1)).first()
            if task is not None:
                task.done_at = now
        elif action == "move":
            lead = rng.choice(leads)
            to = rng.choice(MOVES)
            if to != lead.stage and lead.stage != "closed":
                request = pipeline.MoveRequest(
                    to=to,
                    close_reason="no_response" if to == "closed" else None,
                    override=True,
                    reason="test",
                )
                try:
                    pipeline.move(lead, request, actor=rng.choice(staff))
                except pipeline.StageRefused:
                    db.session.rollback()
                    continue
        elif action == "tag":
            lead = rng.choice(leads)
            existing = {t.code: t for t in lead.tags}
            code = rng.choice(["condition:stenosis", "region:lower", "symptom:numbness"])
            if code in existing:
                existing[code].state = "removed" if existing[code].state == "active" else "active"
            else:
                lead.tags.append(LeadTag(code=code, origin="staff", state="active"))
        elif action == "merge" and len(leads) > 2:
            survivor, other = rng.sample(leads, 2)
            try:
                merge.merge_leads(survivor, other, actor=staff[0], now=now)
            except merge.MergeRefused:
                db.session.rollback()
                continue
        elif action == "nap":
            queue.bulk_not_a_patient([rng.choice(leads).id], actor=staff[0], now=now, ip=None)
        elif action == "owner":
            queue.bulk_reassign(
                [rng.choice(leads).id], owner=rng.choice(staff), actor=staff[0], now=now, ip=None
            )
        db.session.commit()
    clock.set_now(None)


@pytest.mark.parametrize("seed", [1, 2])
def test_roll_ups_equal_the_raw_queries_after_random_writes(app, make_user, seed, monkeypatch):
    rng = random.Random(seed)
    staff = [make_user("front_desk", name=f"Desk {i}") for i in range(3)] + [make_user("manager")]
    db.session.add(ReferringPractice(name="North Spine Clinic"))
    db.session.commit()

    random_writes(rng, staff, 60)

    kept = snapshot()
    assert kept["rollup_leads"] and kept["rollup_calls"] and kept["rollup_staff"]
    assert {row[2][0] for row in kept["rollup_filter_leads"]} == {"s", "c", "o", "t"}
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()

    filters = dashboard_filters([s.id for s in staff])
    matched: set[str] = set()
    for period in (local_period(START, 7), local_period(START - timedelta(days=3), 40)):
        from_rollups = every_metric(period, filters)
        monkeypatch.setattr(metrics, "USE_ROLLUPS", False)
        raw = every_metric(period, filters)
        monkeypatch.setattr(metrics, "USE_ROLLUPS", True)
        for key in raw:
            assert (key, from_rollups[key]) == (key, raw[key])
        matched |= {
            kind for f in filters for kind in KINDS if getattr(f, kind) and raw[f"funnel {f}"][0]["leads"]
        }
    assert matched == set(KINDS)  # each kind of filter was compared on leads, not on empty charts


def test_a_failed_transaction_leaves_the_roll_ups_as_they_were(app, make_lead):
    make_lead(created_at=utc(2026, 3, 10, 15))
    before = snapshot()
    lead = make_lead(created_at=utc(2026, 3, 10, 16))
    db.session.rollback()
    lead.source = "referral"
    db.session.rollback()
    assert snapshot() != before  # the committed lead counts …
    kept = snapshot()
    db.session.add(Lead(source="phone", created_at=utc(2026, 3, 11, 15)))
    db.session.flush()
    db.session.rollback()
    assert snapshot() == kept  # … the rolled-back one does not


def test_concurrent_writers_of_the_same_day_are_each_counted_once(app, monkeypatch):
    """Eight writers add calls to the same clinic day at once, each in its own transactions.

    Each commit reads the day's stored counts and recounts its raw calls; without serialising
    writers of one day (PostgreSQL's READ COMMITTED lets another commit land between the two
    reads) a call is counted twice or not at all. A short pause injected between the two
    reads makes that window wide enough to be hit every run.
    """
    import threading
    import time as wall

    stored_call_day = rollups._stored_call_day

    def slow_stored_call_day(day_: Any) -> Any:
        counts = stored_call_day(day_)
        wall.sleep(0.03)
        return counts

    monkeypatch.setattr(rollups, "_stored_call_day", slow_stored_call_day)
    day = utc(2026, 3, 10, 15)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                for k in range(12):
                    event = CallEventIn(
                        call_sid=f"CA{n:02d}{k:030d}",
                        from_number=f"+1972555{n:02d}{k:02d}",
                        to_number="+19724995457",
                        direction="inbound",
                        status="no-answer" if k % 3 else "completed",
                        started_at=day + timedelta(minutes=n * 12 + k),
                    )
                    receive_call_event(event, lines=LINES, now=day)
                    db.session.commit()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db.session.expire_all()
    kept = snapshot()
    calls = rollups.TABLES["rollup_calls"]
    stored = db.session.scalar(sa.select(sa.func.sum(calls.c.calls)).where(calls.c.grain == "d"))
    assert stored == 8 * 12
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()


def test_a_callback_that_changes_no_counted_column_recounts_nothing(app):
    """A status callback moving a call from "ringing" to "in-progress" changes no roll-up.

    The commit then reads and writes no roll-up table (a busy phone line sends several such
    callbacks per call); the missed callback that follows is counted as usual.
    """
    day = utc(2026, 3, 10, 15)

    def callback(status: str, sequence: int) -> None:
        event = CallEventIn(
            call_sid="CA" + "7" * 32,
            from_number="+19725550177",
            to_number="+19724995457",
            direction="inbound",
            status=status,
            sequence_number=sequence,
            started_at=day,
        )
        receive_call_event(event, lines=LINES, now=day)
        db.session.commit()

    callback("ringing", 0)
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        callback("in-progress", 1)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)
    assert statements  # the callback itself was written …
    assert [s for s in statements if "rollup_" in s] == []  # … and no roll-up was touched

    callback("no-answer", 2)
    kept = snapshot()
    calls = rollups.TABLES["rollup_calls"]
    assert db.session.execute(
        sa.select(calls.c.calls, calls.c.missed, calls.c.callbacks).where(calls.c.grain == "d")
    ).all() == [(1, 1, 1)]
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()


def test_an_unanswered_call_of_a_known_caller_leaves_the_lead_facts_alone(app, make_user):
    """A lead's facts read only its answered calls: a new missed call recounts the day, not the lead."""
    day = utc(2026, 3, 10, 15)
    desk = make_user("front_desk")

    def callback(sid: str, status: str, **extra: Any) -> list[str]:
        statements: list[str] = []

        def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event = CallEventIn(
            call_sid=sid,
            from_number="+19725550188",
            to_number="+19724995457",
            direction="inbound",
            status=status,
            started_at=day,
            **extra,
        )
        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            receive_call_event(event, lines=LINES, now=day)
            db.session.commit()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)
        return statements

    callback("CA" + "1" * 32, "no-answer")  # a new caller: a new lead
    second = callback("CA" + "2" * 32, "ringing")
    assert [s for s in second if "rollup_calls" in s]  # the day is recounted …
    assert [s for s in second if "rollup_lead_facts" in s] == []  # … the lead is not
    if db.engine.dialect.name == "sqlite":  # one writer at a time: the new call's own cell is added
        assert [s for s in second if "GROUP BY" in s] == []
    third = callback("CA" + "3" * 32, "completed", answered=True, handled_by_id=desk.id)
    assert [s for s in third if "rollup_lead_facts" in s]  # an answered call is its first contact

    kept = snapshot()
    assert any(row[-1] for row in kept["rollup_speed_staff"])
    calls = rollups.TABLES["rollup_calls"]
    day_counts = sa.select(calls.c.calls, calls.c.missed).where(calls.c.grain == "d")
    assert db.session.execute(day_counts).all() == [(3, 1)]
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()


def two_calls_on(day: datetime) -> None:
    """An answered and a missed call on ``day``, each committed."""
    for n, status in enumerate(["completed", "no-answer"]):
        event = CallEventIn(
            call_sid=f"CA{n:032d}",
            from_number=f"+197255501{n:02d}",
            to_number="+19724995457",
            direction="inbound",
            status=status,
            started_at=day + timedelta(minutes=n),
        )
        receive_call_event(event, lines=LINES, now=day)
        db.session.commit()


def statements_of(work: Any) -> list[str]:
    """Run ``work()`` and return the SQL statements it sent."""
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        work()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)
    return statements


def test_a_new_unmissed_call_adds_its_own_cell_without_recounting_its_day(app):
    """A new call (no call-back task) adds one to its hour's cell; its day's calls are not counted again.

    On PostgreSQL the upsert itself says it inserted the row (another transaction may insert
    the same SID between the read before it and the upsert); on SQLite nothing else writes.
    """
    day = utc(2026, 3, 10, 15)
    two_calls_on(day)  # the day already holds calls

    event = CallEventIn(
        call_sid="CA" + "8" * 32,
        from_number="+19725550188",
        to_number="+19724995457",
        direction="inbound",
        status="completed",
        started_at=day + timedelta(minutes=5),
    )
    statements = statements_of(lambda: (receive_call_event(event, lines=LINES, now=day), db.session.commit()))
    assert any(s.startswith("INSERT INTO rollup_calls") for s in statements)
    assert not any("count(*)" in s and "FROM calls" in s for s in statements)  # no recount of the day
    kept = snapshot()
    calls = rollups.TABLES["rollup_calls"]
    assert db.session.scalar(sa.select(sa.func.sum(calls.c.calls)).where(calls.c.grain == "d")) == 3
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()


def test_an_unmissed_call_moved_by_a_later_callback_moves_its_cell_without_recounting_its_day(app, make_user):
    """Twilio's "completed" callback says when the call ended: its start moves back by its duration.

    A call the day already counted, not missed before nor after, then leaves its old hour's
    cell for the new one (and its handler's contact goes with it) by a difference, without its
    day's calls being counted again; the result equals a rebuild.
    """
    desk = make_user("front_desk", name="Dana Desk")
    day = utc(2026, 3, 10, 15, 10)  # 10:10 in Chicago
    two_calls_on(day)  # the day already holds calls
    sid = "CA" + "7" * 32
    ringing = CallEventIn(
        call_sid=sid,
        from_number="+19725550177",
        to_number="+19724995457",
        direction="inbound",
        status="in-progress",
        sequence_number=1,
        started_at=day,
        handled_by_id=desk.id,
        answered=True,
    )
    receive_call_event(ringing, lines=LINES, now=day)
    db.session.commit()
    completed = CallEventIn(
        call_sid=sid,
        from_number="+19725550177",
        to_number="+19724995457",
        direction="inbound",
        status="completed",
        sequence_number=2,
        duration_seconds=1800,
        started_at=day - timedelta(minutes=30),  # 9:40: the hour before
    )
    later = day + timedelta(minutes=20)
    statements = statements_of(
        lambda: (receive_call_event(completed, lines=LINES, now=later), db.session.commit())
    )
    assert any(s.startswith("INSERT INTO rollup_calls") for s in statements)
    assert not any("count(*)" in s and "FROM calls" in s for s in statements)  # no recount of the day
    calls = rollups.TABLES["rollup_calls"]
    hours = dict(
        db.session.execute(
            sa.select(calls.c.hour, calls.c.calls).where(calls.c.grain == "d", calls.c.calls != 0)
        ).all()
    )
    assert hours == {9: 1, 10: 2}
    kept = snapshot()
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()


def test_new_leads_facts_are_folded_from_what_intake_wrote_and_read_again_once_changed(app, make_user):
    """Bulk intake's new leads: their facts come from the rows it wrote (no read back, nothing to
    take back), unless something changes them later in the same transaction — a stage move, a
    tag, a first contact by an answered call — or a savepoint is rolled back: then they are read.
    Either way the roll-ups equal a rebuild from the raw tables."""
    desk = make_user("front_desk")
    now = utc(2026, 3, 10, 15)
    clock.set_now(now)

    def contacts(tag: str) -> list[ContactIn]:
        return [
            ContactIn(
                source=source,
                first_name="Pat",
                last_name=f"{tag}{i}",
                phone=f"+1972555{tag}{i:02d}",
                campaign=campaign,
                landing_page=page,
                message=message,
            )
            for i, (source, campaign, page, message) in enumerate(
                [
                    ("phone", None, None, None),
                    ("web_form", "spring", "/back-pain", "lower back pain and numbness in my leg"),
                    ("web_form", None, "/neck", "I can't control my bladder since yesterday"),
                ]
            )
        ]

    def facts_read(statements: list[str]) -> bool:
        return any(s.startswith("SELECT") and "FROM stage_changes" in s for s in statements)

    def plain() -> None:
        receive_contacts_bulk(contacts("10"), now=now)
        db.session.commit()

    assert not facts_read(statements_of(plain))  # folded from the rows intake wrote

    def changed() -> None:
        rows = receive_contacts_bulk(contacts("20"), now=now)
        first, second, _third = (db.session.get(Lead, row.lead_id) for row in rows)
        pipeline.move(first, pipeline.MoveRequest(to="contacted"), actor=desk)
        second.tags.append(LeadTag(code="condition:stenosis", origin="staff", state="active"))
        db.session.flush()
        receive_call_event(
            CallEventIn(
                call_sid="CA" + "7" * 32,
                from_number=_third.phone,
                to_number="+19724995457",
                direction="inbound",
                status="completed",
                answered=True,
                handled_by_id=desk.id,
                started_at=now,
            ),
            lines=LINES,
            now=now,
        )
        db.session.commit()

    assert facts_read(statements_of(changed))  # the changed ones are read again

    def rolled_back() -> None:
        receive_contacts_bulk(contacts("30"), now=now)
        with db.session.begin_nested() as savepoint:
            receive_contacts_bulk(contacts("40"), now=now)
            savepoint.rollback()
        db.session.commit()

    assert facts_read(statements_of(rolled_back))

    kept = snapshot()
    facts = {row[0]: row for row in db.session.execute(sa.select(RollupLeadFacts.__table__))}
    assert len(facts) == 9  # the savepoint's three leads are gone, and so are their facts
    by_name = {lead.last_name: lead for lead in db.session.scalars(sa.select(Lead))}
    assert facts[by_name["200"].id].reached == 1
    assert "condition:stenosis" in facts[by_name["201"].id].tags.split(",")
    assert facts[by_name["202"].id].contact_by == desk.id and facts[by_name["202"].id].speed_minutes == 0
    assert facts[by_name["101"].id].landing_page == "/back-pain" and facts[by_name["101"].id].tags
    rollups.rebuild()
    assert snapshot() == kept
    db.session.rollback()

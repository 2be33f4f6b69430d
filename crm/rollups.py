"""Dashboard roll-ups: counts kept up to date in the same transaction as every write.

At 100,000 leads and 1,000,000 calls the dashboard's raw queries (``crm.metrics``) take
seconds for a 12-month range; these tables hold the same numbers pre-grouped, so the
dashboard reads a few thousand rows instead.

What they hold (every aggregate row is keyed by ``grain`` and ``bucket``: the clinic-local
day, or the Monday of its week (``w``), or the first of its month (``m``); "none" is ``""``/0):

- ``rollup_leads`` (d, m): counted leads by the day they were *created*, source, campaign and
  ``reached`` (the furthest funnel position, ``crm.metrics``' definition: history and current
  stage, a skipped stage counts, going back un-reaches nothing).
- ``rollup_lead_tags`` (d, m): the same by active complaint tag (a lead counts once per tag).
- ``rollup_lead_origins`` (d, m): the same by landing page (``kind="landing"``) and referring
  practice (``kind="practice"``, its id as text).
- ``rollup_speed`` (d, w): counted leads by creation day and business minutes from creation
  to first contact, binned (``speed_bin``: whole minutes rounded up, exact to 30 minutes, then
  5-, 15- and 60-minute bins); not yet contacted leads are ``minutes=-1``.
  ``rollup_speed_staff`` (d, m): the contacted ones again by who made the first contact.
  Percentiles are computed from these *minute histograms* on both databases (SQLite has no
  ``percentile_cont``), interpolating between ranks as ``percentile_cont`` does: so they are
  the exact percentiles of the binned values, not of the raw fractional minutes.
- ``rollup_calls`` (d, m): calls by the day they *started* (clinic-local) and the clinic-local
  weekday and hour stored on the call at insert (so right across DST): calls, inbound, missed,
  ``callbacks`` (missed calls that got a call-back task) and ``callbacks_on_time`` (whose task
  was done by its due time).
- ``rollup_staff`` (d, m): per staff member and day, contacts (answered calls they handled,
  by call day), stage moves they made and moves to surgery scheduled (by move day, counted
  leads only).
- ``rollup_filter_leads`` (d, m) and ``rollup_filter_speed`` (d, w, m): the lead roll-ups again
  under each single dashboard filter a lead passes (``filter_keys``: its source, campaign,
  owner and each active tag), so a filtered dashboard reads counts too: conversion rows by
  ``kind`` (source, campaign, tag, landing, practice) and ``value``, and the speed histogram
  by who made the first contact (0 and ``minutes=-1`` for a lead not yet contacted). A lead
  with a campaign, an owner and three tags adds to seven filters.
- ``rollup_lead_facts``: one row per lead, what it adds to the lead roll-ups, so that a
  change takes the old contribution back and adds the new one.

Merged-away and "not a patient" leads add nothing to the lead roll-ups; calls count whatever
their lead (as ``crm.metrics.calls``).

How they stay right: one set of session hooks (``install``) notes which leads and which
call days a transaction touched — ORM objects at each flush, and Core ``INSERT/UPDATE/
DELETE`` statements on ``leads``, ``stage_changes``, ``lead_tags``, ``calls`` and ``tasks`` run through
the session (for an UPDATE or DELETE the rows its ``WHERE`` matches are read first; bound
lead ids, call SIDs and start times are read from its parameters). A call upserted by its
SID (a status callback) is read before the upsert and again at the commit, and marks its lead
and day only when a column the roll-ups read differs (it covers the ORM's later changes to
that call too); likewise a dirty ORM call or lead marks only when such a column changed. A
call the transaction created, with no call-back task, adds its own cell instead of
recounting its day (SQLite: one writer at a time; PostgreSQL: the upsert's ``xmax = 0`` says
it inserted the row, and the day's lock is taken shared). A call that was there and changed,
whose task the transaction did not touch (a later status callback moving its start by its
duration, answering it, linking it to its lead), takes its old cell's counts back and adds the
new ones, unless a call-back count would move with it (missed before and not after, or in
another cell): then its day is counted again. Just before the commit,
each touched lead's facts are computed again from the raw tables and each touched call day
is counted again, and the differences are added to the aggregates — all in the committing
transaction. Writes that bypass the session (the seed's driver-level bulk load) end with
``rebuild()``; ``flask --app wsgi metrics rebuild`` recomputes everything (needed after the
clinic's time zone, business hours or holidays change: days and business minutes are
computed with the settings in force at the write).
"""

from __future__ import annotations

from collections import Counter, defaultdict, namedtuple
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from math import ceil
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm.business_hours import BusinessCalendar, business_minutes_between, load_calendar
from crm.extensions import db
from crm.models import (
    STAGES,
    Call,
    Lead,
    LeadTag,
    RollupLeadFacts,
    StageChange,
    Task,
    rollup_calls,
    rollup_filter_leads,
    rollup_filter_speed,
    rollup_lead_origins,
    rollup_lead_tags,
    rollup_leads,
    rollup_speed,
    rollup_speed_staff,
    rollup_staff,
)

ORDER = {stage: i for i, stage in enumerate(STAGES[: STAGES.index("closed")])}
GRAINS: dict[str, tuple[str, ...]] = {
    "rollup_leads": ("d", "m"),
    "rollup_lead_tags": ("d", "m"),
    "rollup_lead_origins": ("d", "m"),
    "rollup_speed": ("d", "w"),
    "rollup_speed_staff": ("d", "m"),
    "rollup_calls": ("d", "m"),
    "rollup_staff": ("d", "m"),
    "rollup_filter_leads": ("d", "m"),
    "rollup_filter_speed": ("d", "w", "m"),
}
TABLES = {
    t.name: t
    for t in (
        rollup_leads,
        rollup_lead_tags,
        rollup_lead_origins,
        rollup_speed,
        rollup_speed_staff,
        rollup_calls,
        rollup_staff,
        rollup_filter_leads,
        rollup_filter_speed,
    )
}
WATCHED = {"leads", "stage_changes", "lead_tags", "calls", "tasks"}
BATCH = 2000
_KEY = "crm_rollups"

# (table name, day, key tuple) -> values tuple
Contribution = tuple[str, date, tuple[Any, ...], tuple[int, ...]]


def bucket(day: date, grain: str) -> date:
    """Return the first day of the day, week (Monday) or month that holds ``day``."""
    if grain == "w":
        return day - timedelta(days=day.weekday())
    if grain == "m":
        return day.replace(day=1)
    return day


def speed_bin(minutes: int) -> int:
    """Return the histogram bin of a whole number of business minutes (its upper bound).

    Exact up to 30 minutes; then rounded up to 5 minutes up to 2 hours, to 15 minutes up to
    8 hours, and to the hour beyond, so a week holds a few hundred bins, not thousands.
    """
    for limit, step in ((30, 1), (120, 5), (480, 15)):
        if minutes <= limit:
            return -(-minutes // step) * step
    return -(-minutes // 60) * 60


def _keys(table: sa.Table) -> list[str]:
    return [c.name for c in table.primary_key.columns if c.name not in ("grain", "bucket")]


def _values(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if not c.primary_key]


# --------------------------------------------------------------------------- lead facts


def _order(stage: str | None) -> int:
    return ORDER.get(stage or "", -1)


def compute_facts(lead_ids: Iterable[int], cal: BusinessCalendar) -> dict[int, dict[str, Any]]:
    """Compute the facts of some leads from the raw tables (5 statements per batch)."""
    ids = sorted(set(lead_ids))
    facts: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH):
        facts.update(_facts_batch(ids[start : start + BATCH], cal))
    return facts


# What of a lead its facts read (``_facts_batch``); its id comes first in each row read.
LEAD_FACTS = (
    "created_at",
    "source",
    "campaign",
    "landing_page",
    "referring_practice_id",
    "stage",
    "merged_into_id",
    "not_a_patient",
    "first_contact_at",
    "owner_id",
)
LEAD_FACT_COLUMNS = ("id", *LEAD_FACTS)


_LeadFacts = namedtuple("_LeadFacts", LEAD_FACT_COLUMNS)  # a declared lead, read like a row


def _facts_batch(ids: list[int] | None, cal: BusinessCalendar) -> dict[int, dict[str, Any]]:
    """Compute the facts of the leads ``ids`` (all leads when None: full scans, for ``rebuild``)."""

    def in_ids(column: Any) -> Any:
        return sa.true() if ids is None else column.in_(ids)

    leads = db.session.execute(
        sa.select(*(Lead.__table__.c[c] for c in LEAD_FACT_COLUMNS)).where(in_ids(Lead.id))
    ).all()

    def rows(stmt: Any) -> Iterator[Any]:  # run when first read, one after another, and streamed
        yield from db.session.execute(stmt)

    stages = rows(
        sa.select(StageChange.lead_id, StageChange.to_stage, StageChange.actor_id, StageChange.at).where(
            in_ids(StageChange.lead_id)
        )
    )
    tags = rows(
        sa.select(LeadTag.lead_id, LeadTag.code).where(in_ids(LeadTag.lead_id), LeadTag.state == "active")
    )
    calls = rows(
        sa.select(Call.lead_id, Call.started_at, Call.handled_by_id).where(
            Call.answered.is_(True), Call.handled_by_id.is_not(None), in_ids(Call.lead_id)
        )
    )
    return _fold_facts(leads, stages, tags, calls, cal)


def _fold_facts(
    leads: Iterable[Any],
    stages: Iterable[tuple[int, str, int | None, datetime]],
    tags_of: Iterable[tuple[int, str]],
    answered_calls: Iterable[tuple[int, datetime, int]],
    cal: BusinessCalendar,
) -> dict[int, dict[str, Any]]:
    """The facts of leads from their raw rows: the lead (``LEAD_FACT_COLUMNS``), its stage
    changes (lead, to stage, actor, at), active tags (lead, code) and answered calls with a
    handler (lead, started, handler)."""
    history: dict[int, int] = {}
    moves: dict[int, Counter[tuple[date, int]]] = defaultdict(Counter)
    conversions: dict[int, Counter[tuple[date, int]]] = defaultdict(Counter)
    contacted_by_move: dict[int, tuple[datetime, int]] = {}
    for lead_id, to_stage, actor_id, at in stages:
        history[lead_id] = max(history.get(lead_id, -1), _order(to_stage))
        if actor_id is not None:
            key = (cal.local_date(at), actor_id)
            moves[lead_id][key] += 1
            conversions[lead_id][key] += to_stage == "surgery_scheduled"
            if to_stage == "contacted" and (
                lead_id not in contacted_by_move or (at, actor_id) < contacted_by_move[lead_id]
            ):
                contacted_by_move[lead_id] = (at, actor_id)
    tags: dict[int, list[str]] = defaultdict(list)
    for lead_id, code in tags_of:
        tags[lead_id].append(code)
    first_call: dict[int, tuple[datetime, int]] = {}
    for lead_id, at, handler in answered_calls:
        if lead_id not in first_call or (at, handler) < first_call[lead_id]:
            first_call[lead_id] = (at, handler)
    by_call = {lead_id: handler for lead_id, (_at, handler) in first_call.items()}
    out: dict[int, dict[str, Any]] = {}
    for r in leads:
        reached = max(history.get(r.id, 0) if r.id in history else 0, _order(r.stage))
        speed = None
        if r.first_contact_at is not None:
            speed = max(0, ceil(business_minutes_between(r.created_at, r.first_contact_at, cal) - 1e-9))
        contact_by = by_call.get(r.id) or (contacted_by_move[r.id][1] if r.id in contacted_by_move else 0)
        out[r.id] = {
            "lead_id": r.id,
            "counted": r.merged_into_id is None and not r.not_a_patient,
            "day": cal.local_date(r.created_at),
            "source": r.source,
            "campaign": r.campaign or "",
            "landing_page": (r.landing_page or "")[:500],
            "practice_id": r.referring_practice_id or 0,
            "reached": reached,
            "tags": ",".join(sorted(tags.get(r.id, []))),
            "owner_id": r.owner_id or 0,
            "contact_by": contact_by if speed is not None else 0,
            "speed_minutes": speed,
            "moves": sorted(
                [d.isoformat(), a, n, conversions[r.id][(d, a)]] for (d, a), n in moves[r.id].items()
            ),
        }
    return out


def contributions(fact: dict[str, Any]) -> Iterator[Contribution]:
    """Yield what one lead's facts add to the aggregates (nothing when it does not count)."""
    if not fact["counted"]:
        return
    day, reached = fact["day"], fact["reached"]
    if isinstance(day, str):
        day = date.fromisoformat(day)
    yield "rollup_leads", day, (fact["source"], fact["campaign"], reached), (1,)
    tags = [tag for tag in fact["tags"].split(",") if tag]
    for tag in tags:
        yield "rollup_lead_tags", day, (tag, reached), (1,)
    if fact["landing_page"]:
        yield "rollup_lead_origins", day, ("landing", fact["landing_page"], reached), (1,)
    if fact["practice_id"]:
        yield "rollup_lead_origins", day, ("practice", str(fact["practice_id"]), reached), (1,)
    minutes = -1 if fact["speed_minutes"] is None else speed_bin(fact["speed_minutes"])
    yield "rollup_speed", day, (minutes,), (1,)
    if minutes >= 0:
        yield "rollup_speed_staff", day, (fact["contact_by"], minutes), (1,)
    for move_day, actor, n, conversions in fact["moves"]:
        yield "rollup_staff", date.fromisoformat(move_day), (actor,), (0, n, conversions)
    groups = [("source", fact["source"]), ("campaign", fact["campaign"])]
    groups += [("tag", tag) for tag in tags]
    if fact["landing_page"]:
        groups.append(("landing", fact["landing_page"]))
    if fact["practice_id"]:
        groups.append(("practice", str(fact["practice_id"])))
    for key in filter_keys(fact["source"], fact["campaign"], fact["owner_id"], tags):
        for kind, value in groups:
            yield "rollup_filter_leads", day, (key, kind, value, reached), (1,)
        yield "rollup_filter_speed", day, (key, fact["contact_by"] if minutes >= 0 else 0, minutes), (1,)


def filter_key(kind: str, value: str | int) -> str:
    """Name one dashboard filter in the ``rollup_filter_*`` tables (kind: source, campaign, owner, tag)."""
    return f"{kind[0]}:{value}"


def filter_keys(source: str, campaign: str, owner_id: int, tags: list[str]) -> list[str]:
    """Every single filter a lead passes (its source, campaign, owner and each active tag)."""
    keys = [filter_key("source", source)]
    if campaign:
        keys.append(filter_key("campaign", campaign))
    if owner_id:
        keys.append(filter_key("owner", owner_id))
    return keys + [filter_key("tag", tag) for tag in tags]


def _old_facts(ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    columns = RollupLeadFacts.__table__.columns
    for start in range(0, len(ids), BATCH):
        rows = db.session.execute(
            sa.select(*columns).where(RollupLeadFacts.lead_id.in_(ids[start : start + BATCH]))
        ).mappings()
        out.update({r["lead_id"]: dict(r) for r in rows})
    return out


_DECLARED = "crm_rollups_new_leads"


class _Marked(set[int]):
    """The leads a transaction touched. Marking a lead drops what intake declared of it
    (``note_new_leads``): a change after the declaration makes its facts be read again."""

    def __init__(self, declared: dict[int, Any]) -> None:
        super().__init__()
        self.declared = declared

    def add(self, lead_id: int) -> None:
        self.declared.pop(lead_id, None)
        super().add(lead_id)

    def update(self, *others: Iterable[int]) -> None:
        for other in others:
            for lead_id in other:
                self.add(lead_id)

    def __ior__(self, other: Any) -> _Marked:
        self.update(other)
        return self


def note_new_leads(
    session: Session,
    leads: Iterable[dict[str, Any]],
    stages: Iterable[dict[str, Any]],
    tags: Iterable[dict[str, Any]],
) -> None:
    """Say that this transaction inserted these leads with these rows and nothing else yet.

    ``leads``: each lead's ``LEAD_FACT_COLUMNS`` (its ``id`` included; a column not given is
    NULL); ``stages`` and ``tags``: its ``StageChange`` and ``LeadTag`` rows as inserted. At
    the commit their facts are folded from these rows (``_fold_facts``, as from the tables)
    instead of being read back, and, being new, they have no old facts to take back. Call it
    after the INSERTs: any later change that marks one of them (a stage move, a tag, a first
    contact, an answered call linked to it) makes its facts be read from the tables instead,
    and so does a rollback to a savepoint. So a write that bypasses the session's hooks (DML
    through ``session.connection()`` or the driver) must not touch such a lead before the commit:
    its change would not be counted until the next ``rebuild``.
    """
    declared: dict[int, Any] = session.info.setdefault(_DECLARED, {})
    rows: dict[int, tuple[Any, list[Any], list[Any]]] = {}
    for lead in leads:
        values = [lead.get(c) for c in LEAD_FACT_COLUMNS]
        rows[lead["id"]] = (_LeadFacts(*values), [], [])
    for stage in stages:
        rows[stage["lead_id"]][1].append(
            (stage["lead_id"], stage["to_stage"], stage.get("actor_id"), stage["at"])
        )
    for tag in tags:
        if tag.get("state", "active") == "active":
            rows[tag["lead_id"]][2].append((tag["lead_id"], tag["code"]))
    declared.update(rows)


# --------------------------------------------------------------------------- calls


def day_range(day: date, cal: BusinessCalendar) -> tuple[datetime, datetime]:
    """Return a clinic-local day as a UTC half-open interval."""
    start = datetime.combine(day, time(), cal.tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), cal.tz).astimezone(UTC)
    return start, end


def _call_counts(*, per_call: bool = False) -> tuple[Any, ...]:
    """The per-cell sums of ``rollup_calls``, over ``calls`` outer-joined to their call-back task.

    ``per_call``: for one day's few hundred calls, each missed call looks its task up by the
    ``(call_id, kind)`` key instead (no join). Given the join, PostgreSQL's planner read all
    200,000 tasks into a hash for 300 calls: 40 ms against 0.7 ms, inside every status
    callback that changed a call. The rebuild, which counts every call, keeps the join.
    """
    inbound = sa.case((Call.direction == "inbound", 1), else_=0)
    missed = sa.case((sa.and_(Call.direction == "inbound", Call.missed.is_(True)), 1), else_=0)
    if per_call:
        task = sa.and_(Task.call_id == Call.id, Task.kind == "callback")
        has_task, done_in_time = sa.exists().where(task), sa.exists().where(task, Task.done_at <= Task.due_at)
    else:
        has_task, done_in_time = (
            Task.id.is_not(None),
            sa.and_(Task.done_at.is_not(None), Task.done_at <= Task.due_at),
        )
    callback = sa.case((sa.and_(Call.missed.is_(True), has_task), 1), else_=0)
    on_time = sa.case((sa.and_(Call.missed.is_(True), done_in_time), 1), else_=0)
    return (
        sa.func.count(),
        sa.func.sum(inbound),
        sa.func.sum(missed),
        sa.func.sum(callback),
        sa.func.sum(on_time),
    )


def _with_tasks(select: Any) -> Any:
    return select.select_from(Call).outerjoin(Task, sa.and_(Task.call_id == Call.id, Task.kind == "callback"))


@cache
def _day_statements() -> tuple[Any, Any, Any, Any]:
    """The four statements that count and read one call day, built once (bound day limits)."""
    start = sa.bindparam("start", type_=Call.started_at.type)
    end = sa.bindparam("end", type_=Call.started_at.type)
    in_day = sa.and_(Call.started_at >= start, Call.started_at < end)
    counts = (
        sa.select(Call.local_weekday, Call.local_hour, *_call_counts(per_call=True))
        .select_from(Call)
        .where(in_day)
        .group_by(Call.local_weekday, Call.local_hour)
    )
    contacts = (
        sa.select(Call.handled_by_id, sa.func.count())
        .where(in_day, Call.answered.is_(True), Call.handled_by_id.is_not(None))
        .group_by(Call.handled_by_id)
    )
    c, s = rollup_calls.c, rollup_staff.c
    day = sa.bindparam("day", type_=c.bucket.type)
    stored = sa.select(c.weekday, c.hour, *(c[v] for v in _values(rollup_calls))).where(
        c.grain == "d", c.bucket == day
    )
    stored_contacts = sa.select(s.user_id, s.contacts).where(s.grain == "d", s.bucket == day, s.contacts != 0)
    return counts, contacts, stored, stored_contacts


def _call_day(day: date, cal: BusinessCalendar) -> list[Contribution]:
    """Count one clinic-local day's calls from the raw tables (2 statements)."""
    start, end = day_range(day, cal)
    counts, contacts, _stored, _stored_contacts = _day_statements()
    out: list[Contribution] = []
    for weekday, hour, *sums in db.session.execute(counts, {"start": start, "end": end}):
        out.append(("rollup_calls", day, (int(weekday), int(hour)), tuple(int(v or 0) for v in sums)))
    for handler, n in db.session.execute(contacts, {"start": start, "end": end}):
        out.append(("rollup_staff", day, (int(handler),), (int(n), 0, 0)))
    return out


def _stored_call_day(day: date) -> list[Contribution]:
    _counts, _contacts, stored, stored_contacts = _day_statements()
    out: list[Contribution] = []
    for weekday, hour, *sums in db.session.execute(stored, {"day": day}):
        out.append(("rollup_calls", day, (weekday, hour), tuple(sums)))
    for user_id, n in db.session.execute(stored_contacts, {"day": day}):
        out.append(("rollup_staff", day, (user_id,), (n, 0, 0)))
    return out


# --------------------------------------------------------------------------- applying


def _add(
    total: dict[tuple[str, str, date, tuple[Any, ...]], list[int]], items: Iterable[Contribution], sign: int
) -> None:
    for table, day, key, values in items:
        for grain in GRAINS[table]:
            slot = total.setdefault((table, grain, bucket(day, grain), key), [0] * len(values))
            for i, v in enumerate(values):
                slot[i] += sign * v


def _upsert(table: sa.Table) -> Any:
    return _upsert_for(db.session.get_bind().dialect.name, table.name)


@cache
def _upsert_for(dialect: str, name: str) -> Any:
    """Add to a roll-up's counts (built once per dialect and table)."""
    table = TABLES[name]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={v: table.c[v] + stmt.excluded[v] for v in _values(table)},
    )
    if dialect == "postgresql":
        # With RETURNING (of one short column, read and dropped), SQLAlchemy sends the rows as one
        # statement of many VALUES; without it psycopg executes the upsert once per row. Each
        # row's key is unique in a batch (``_write`` sums by key): PostgreSQL refuses an upsert
        # that would touch one row twice.
        upsert = upsert.returning(table.c.grain)
    return upsert


def _write(total: dict[tuple[str, str, date, tuple[Any, ...]], list[int]]) -> None:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (name, grain, when, key), values in total.items():
        if not any(values):
            continue
        table = TABLES[name]
        rows[name].append(
            {
                "grain": grain,
                "bucket": when,
                **dict(zip(_keys(table), key, strict=True)),
                **dict(zip(_values(table), values, strict=True)),
            }
        )
    for name, batch in sorted(rows.items()):
        table = TABLES[name]
        # Rows in key order: two transactions moving counts between the same cells in opposite
        # directions (Ana's lead to Ben, Ben's to Ana) then lock them in the same order, so
        # PostgreSQL never finds them waiting on each other (a deadlock, one request failing).
        keys = [c.name for c in table.primary_key.columns]
        batch.sort(key=lambda row: tuple(row[k] for k in keys))
        stmt = _upsert(table)
        for start in range(0, len(batch), 5000):
            db.session.execute(stmt, batch[start : start + 5000])


DAY_LOCK, LEAD_LOCK = 1 << 40, 2 << 40  # advisory lock key spaces: a call day, a lead


def _serialize(ids: list[int], days: list[date], added_days: Iterable[date] = ()) -> None:
    """On PostgreSQL, hold a lock on each touched call day and lead until this transaction ends.

    ``refresh`` reads the stored aggregate and recounts the raw rows in two statements; under
    READ COMMITTED another writer of the same day could commit between them, and its call
    would be counted twice. With the lock, the second writer reads and recounts only after the
    first has committed. A day that only gets a new call's own cell added (``added_days``)
    takes the lock shared: such additions commute with each other, but not with a recount
    (its call would be missing from the recount's raw rows yet in its stored read, or the other
    way round). Keys are taken in one sorted order (days, then leads), so two writers cannot
    deadlock on them. SQLite needs nothing: ``BEGIN IMMEDIATE`` already serialises writers.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return
    keys = [DAY_LOCK + day.toordinal() for day in days] + [LEAD_LOCK + i for i in ids]
    shared = sorted({DAY_LOCK + day.toordinal() for day in added_days} - set(keys))
    db.session.execute(
        sa.text(
            "SELECT CASE WHEN k = ANY(CAST(:shared AS bigint[])) THEN pg_advisory_xact_lock_shared(k)"
            " ELSE pg_advisory_xact_lock(k) END"
            " FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k"
        ),
        {"keys": sorted(set(keys) | set(shared)), "shared": shared},
    )


def refresh(
    lead_ids: Iterable[int],
    call_days: Iterable[date],
    cal: BusinessCalendar | None = None,
    extra: Iterable[Contribution] = (),
    declared: Mapping[int, tuple[Any, list[Any], list[Any]]] | None = None,
) -> None:
    """Recount some leads and call days from the raw tables and move the aggregates by the difference.

    ``extra`` is added as it is (new calls of days not recounted here). ``declared``: leads of
    ``lead_ids`` this transaction inserted (``note_new_leads``), with their rows; their facts
    are folded from those rows, and they have no old facts.
    """
    ids, days, extra = sorted(set(lead_ids)), sorted(set(call_days)), list(extra)
    if not ids and not days and not extra:
        return
    _serialize(ids, days, (day for _table, day, _key, _values in extra))
    cal = cal or load_calendar()
    total: dict[tuple[str, str, date, tuple[Any, ...]], list[int]] = {}
    if ids:
        declared = {i: declared[i] for i in ids if i in declared} if declared else {}
        known = [i for i in ids if i not in declared]
        old = _old_facts(known)
        new = compute_facts(known, cal)
        if declared:
            leads, stages, tags = zip(*declared.values(), strict=True)
            new.update(
                _fold_facts(
                    leads, [s for rows in stages for s in rows], [t for rows in tags for t in rows], [], cal
                )
            )
        for fact in old.values():
            _add(total, contributions(fact), -1)
        for fact in new.values():
            _add(total, contributions(fact), +1)
        facts = RollupLeadFacts.__table__
        for start in range(0, len(known), BATCH):
            db.session.execute(sa.delete(facts).where(facts.c.lead_id.in_(known[start : start + BATCH])))
        if new:
            db.session.execute(sa.insert(facts), list(new.values()))
    for day in days:
        _add(total, _stored_call_day(day), -1)
        _add(total, _call_day(day, cal), +1)
    _add(total, extra, +1)
    _write(total)


def rebuild() -> dict[str, int]:
    """Recompute every roll-up from the raw tables (in the caller's transaction); return row counts."""
    cal = load_calendar()
    for table in [*TABLES.values(), RollupLeadFacts.__table__]:
        db.session.execute(sa.delete(table))
    total: dict[tuple[str, str, date, tuple[Any, ...]], list[int]] = {}
    facts = _facts_batch(None, cal)
    rows = sorted(facts.values(), key=lambda fact: fact["day"])
    for start in range(0, len(rows), 5000):
        db.session.execute(sa.insert(RollupLeadFacts.__table__), rows[start : start + 5000])
    # Added up one creation month at a time and written (added) before the next: the filter
    # roll-ups hold ~18 rows per lead, and all of them at once took 1.5 GB at 100,000 leads.
    month = None
    for fact in rows:
        if bucket(fact["day"], "m") != month:
            _write(total)
            total, month = {}, bucket(fact["day"], "m")
        _add(total, contributions(fact), +1)
    _add(total, _all_call_days(cal), +1)
    _write(total)
    return {
        name: int(db.session.scalar(sa.select(sa.func.count()).select_from(t)) or 0)
        for name, t in sorted(TABLES.items())
    }


def _all_call_days(cal: BusinessCalendar) -> list[Contribution]:
    """Count every call by clinic-local day in one grouped pass (by UTC hour, then mapped)."""
    if db.session.get_bind().dialect.name == "postgresql":
        hour = sa.func.to_char(sa.func.timezone("UTC", Call.started_at), "YYYY-MM-DD HH24")
    else:
        hour = sa.func.strftime("%Y-%m-%d %H", Call.started_at)
    contact = sa.case((Call.answered.is_(True), Call.handled_by_id), else_=None)
    cells: dict[tuple[date, int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    contacts: Counter[tuple[date, int]] = Counter()
    day_of: dict[tuple[str, int], date] = {}
    for utc_hour, weekday, local_hour, handler, *sums in db.session.execute(
        _with_tasks(sa.select(hour, Call.local_weekday, Call.local_hour, contact, *_call_counts())).group_by(
            hour, Call.local_weekday, Call.local_hour, contact
        )
    ):
        if (utc_hour, local_hour) not in day_of:
            local = datetime.strptime(utc_hour, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(cal.tz)
            # A call later in the UTC hour may already be on the next local day (half-hour zones).
            day_of[utc_hour, local_hour] = local.date() + timedelta(days=int(local_hour < local.hour))
        day = day_of[utc_hour, local_hour]
        cell = cells[day, int(weekday), int(local_hour)]
        for i, v in enumerate(sums):
            cell[i] += int(v or 0)
        if handler is not None:
            contacts[day, int(handler)] += int(sums[0])
    out: list[Contribution] = [("rollup_calls", d, (w, h), tuple(v)) for (d, w, h), v in cells.items()]
    out += [("rollup_staff", d, (u,), (n, 0, 0)) for (d, u), n in contacts.items()]
    return out


# --------------------------------------------------------------------------- session hooks


# What of a call the roll-ups read: its lead's facts (lead, start, answered, handler) and its
# day's counts (start, direction, missed, local weekday and hour, handler).
CALL_FACTS = (
    "lead_id",
    "started_at",
    "direction",
    "missed",
    "answered",
    "handled_by_id",
    "local_weekday",
    "local_hour",
)
_CHECK = "crm_rollups_calls"
_CREATED = "crm_rollups_created_calls"
# An execution option: an INSERT on ``calls`` given it writes exactly the calls with these
# SIDs (an upsert); the hooks then read them before it runs without compiling it to find them.
SIDS_OPTION = "crm_rollups_call_sids"


def _marks(session: Session) -> tuple[set[int], set[datetime], set[int]]:
    """The leads, call start times and call ids (of call-back tasks) this transaction touched."""
    if _KEY not in session.info:
        session.info[_KEY] = (_Marked(session.info.setdefault(_DECLARED, {})), set(), set())
    leads, moments, calls = session.info[_KEY]
    return leads, moments, calls


def _checks(session: Session) -> dict[str, tuple[Any, ...] | None]:
    """Calls upserted by CallSid: their roll-up columns before this transaction's first upsert."""
    checks: dict[str, tuple[Any, ...] | None] = session.info.setdefault(_CHECK, {})
    return checks


def _changed(state: Any, attrs: Iterable[str]) -> bool:
    return any(state.attrs[attr].history.has_changes() for attr in attrs)


def _collect_orm(session: Session, flush_context: Any) -> None:
    leads, moments, calls = _marks(session)
    for obj in [*session.new, *session.dirty, *session.deleted]:
        # A dirty row whose roll-up columns did not change (a call's status, a lead's last
        # activity) cannot move any roll-up: recounting it would be wasted work.
        dirty = obj not in session.new and obj not in session.deleted
        if isinstance(obj, Lead):
            if not dirty or _changed(sa.inspect(obj), LEAD_FACTS):
                leads.add(obj.id)
        elif isinstance(obj, Task) and obj.call_id is not None:
            calls.add(obj.call_id)
        elif isinstance(obj, Call):
            state = sa.inspect(obj)
            if state.dict.get("call_sid") in session.info.get(_CHECK, {}):
                continue  # upserted by its SID: the commit compares the row with how it was
            if not dirty or _changed(state, CALL_FACTS):
                _call_marks(state, obj in session.new, obj in session.deleted, leads, moments, calls)
        elif isinstance(obj, (StageChange, LeadTag)):
            history = sa.inspect(obj).attrs.lead_id.history
            leads.update(v for v in [*history.added, *history.unchanged, *history.deleted] if v is not None)


def _lead_part(row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """What a call adds to its lead's facts (``CALL_FACTS`` order): only an answered call with a handler."""
    if row is None:
        return None
    lead_id, started_at, _direction, _missed, answered, handler, *_ = row
    if not answered or handler is None or lead_id is None:
        return None
    return lead_id, started_at, handler


def _call_marks(
    state: Any, new: bool, deleted: bool, leads: set[int], moments: set[datetime], calls: set[int]
) -> None:
    """Mark a flushed call's days (before and after) and, when its part in them changed, its leads."""
    before: list[Any] = []
    after: list[Any] = []
    complete = True
    for attr in CALL_FACTS:
        history = state.attrs[attr].history
        old, now = [*history.deleted, *history.unchanged], [*history.added, *history.unchanged]
        complete = complete and bool(old or new) and bool(now or deleted)
        before.append(old[0] if old else None)
        after.append(now[0] if now else None)
    rows = (None if new else tuple(before), None if deleted else tuple(after))
    for row in rows:
        if row is not None and row[1] is not None:
            moments.add(row[1])
    if not complete:  # an unloaded column: recount the day at commit, and any lead it names
        if state.identity is not None and not deleted:
            calls.add(state.identity[0])
        leads.update(row[0] for row in rows if row is not None and row[0] is not None)
        return
    if _lead_part(rows[0]) != _lead_part(rows[1]):
        leads.update(part[0] for part in map(_lead_part, rows) if part is not None)


def _collect_core(state: Any) -> None:
    """Note what a Core INSERT/UPDATE/DELETE on a watched table is about to touch."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table is None or table.name not in WATCHED:
        return
    session: Session = state.session
    leads, moments, calls = _marks(session)
    id_column = {"leads": "id", "tasks": "call_id"}.get(table.name, "lead_id")
    declared = state.execution_options.get(SIDS_OPTION) if table.name == "calls" else None
    if declared and state.is_insert:
        _note_upserted(session, list(declared))  # no need to compile the statement for its SIDs
        return
    where = getattr(state.statement, "whereclause", None)
    if where is not None:
        columns = [table.c[id_column]] + ([table.c.started_at] if table.name == "calls" else [])
        for row in session.execute(sa.select(*columns).where(where)):
            if row[0] is not None:
                (calls if table.name == "tasks" else leads).add(row[0])
            if len(row) > 1 and row[1] is not None:
                moments.add(row[1])
    params: list[dict[str, Any]] = []
    raw = state.parameters
    params += raw if isinstance(raw, list) else [raw or {}]
    if getattr(state.statement, "_values", None) or getattr(state.statement, "_multi_values", None):
        # Values written into the statement itself (``.values(...)``): compiled to read them.
        # Otherwise they are all in the parameters (the ``WHERE``'s rows were read above).
        params.append(state.statement.compile(dialect=session.get_bind().dialect).params)
    sids: list[str] = []
    added_leads: set[int] = set()
    added_moments: list[datetime] = []
    for p in params:
        for name, value in p.items():
            base = name.rsplit("_", 1)[0] if name[-1:].isdigit() else name
            if table.name == "tasks":
                if base == "call_id" and isinstance(value, int):
                    calls.add(value)
            elif base in (id_column, "lead_id", "merged_into_id"):
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(v, int):
                        added_leads.add(v)
            elif base == "started_at" and isinstance(value, datetime):
                added_moments.append(value)
            elif base == "call_sid" and isinstance(value, str):
                sids.append(value)
    if table.name == "calls" and state.is_insert and sids and len(sids) >= len(added_moments):
        _note_upserted(session, sids)
        return
    leads |= added_leads
    moments.update(added_moments)
    if sids:
        for lead_id, started_at in session.execute(
            sa.select(Call.lead_id, Call.started_at).where(Call.call_sid.in_(set(sids)))
        ):
            if lead_id is not None:
                leads.add(lead_id)
            moments.add(started_at)


def _note_upserted(session: Session, sids: list[str]) -> None:
    """An upsert by CallSid: note each call's roll-up columns as they were before it.

    The commit compares them with the final row and recounts only when they differ.
    """
    checks = _checks(session)
    fresh = sorted(set(sids) - checks.keys())
    if not fresh:
        return
    checks.update(dict.fromkeys(fresh))
    for sid, _call_id, *values in session.execute(_call_rows(locked=True), {"sids": fresh}):
        checks[sid] = tuple(values)


@cache
def _call_rows(*, locked: bool) -> Any:
    """Read calls' roll-up columns by SID, their id first (built once; the SIDs are bound)."""
    stmt = (
        sa.select(Call.call_sid, Call.id, *(Call.__table__.c[c] for c in CALL_FACTS))
        .where(Call.call_sid.in_(sa.bindparam("sids", expanding=True)))
        .order_by(Call.call_sid)  # locked in one order by every writer
    )
    # PostgreSQL: a concurrent upsert of the call commits first.
    return stmt.with_for_update() if locked else stmt


def note_created_call(session: Session, sid: str) -> None:
    """Say that this transaction's upsert inserted the call ``sid`` (PostgreSQL's ``xmax = 0``)."""
    session.info.setdefault(_CREATED, set()).add(sid)


def _check_calls(
    session: Session, leads: set[int], moments: set[datetime], touched: set[int]
) -> tuple[list[tuple[int, tuple[Any, ...]]], list[tuple[tuple[Any, ...], tuple[Any, ...]]]]:
    """Mark the upserted calls whose roll-up columns differ from before the transaction.

    A call this transaction created, and whose call-back task it did not touch (``touched``),
    is returned as (id, row) instead: its own contribution is added, and its day is not
    recounted. On SQLite (``BEGIN IMMEDIATE``: no other writer between the two reads) "not
    there before" says it was created; on PostgreSQL only the upsert itself can say so
    (``note_created_call``), as another transaction may insert the same SID in between.

    A call that was there, whose task was not touched, and that is either not missed before
    or after (so it adds nothing to the call-back counts) or missed both times in the same
    cell, is returned as a (before, after) pair: its old contribution is taken back and the
    new one added, and its day is not recounted either (a status callback moving a call's
    start by its duration, answering it, or linking it to its lead). The "before" row was
    read locked (``_note_upserted``), so no other writer changed it meanwhile.
    """
    checks: dict[str, tuple[Any, ...] | None] = session.info.pop(_CHECK, {})
    inserted: set[str] = session.info.pop(_CREATED, set())
    moved: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    if not checks:
        return [], moved
    after: dict[str, tuple[Any, ...] | None] = dict.fromkeys(checks)
    ids: dict[str, int] = {}
    for sid, call_id, *values in session.execute(_call_rows(locked=False), {"sids": sorted(checks)}):
        after[sid], ids[sid] = tuple(values), call_id
    alone = session.get_bind().dialect.name == "sqlite"
    created: list[tuple[int, tuple[Any, ...]]] = []
    for sid, before in checks.items():
        row = after[sid]
        if before == row:
            continue
        if _lead_part(before) != _lead_part(row):
            leads.update(part[0] for part in (_lead_part(before), _lead_part(row)) if part is not None)
        # Started, direction, local weekday and hour known: its own cell can be added.
        known = row is not None and None not in (row[1], row[2], row[6], row[7])
        if (alone or sid in inserted) and before is None and known and ids[sid] not in touched:
            created.append((ids[sid], row))
            continue
        was_known = before is not None and None not in (before[1], before[2], before[6], before[7])
        if known and was_known and ids[sid] not in touched:
            assert before is not None and row is not None
            # Not missed before nor after: it adds nothing to the call-back counts. Missed both
            # times in the same cell (a repeated callback linking the call to its lead): its
            # call-back counts stay where they were.
            same_cell = before[1] == row[1] and before[6:8] == row[6:8] and before[3] == row[3]
            if (not before[3] and not row[3]) or same_cell:
                moved.append((before, row))
                continue
        moments.update(r[1] for r in (before, row) if r is not None)
    return created, moved


def _created_calls(rows: list[tuple[Any, ...]], cal: BusinessCalendar, sign: int = 1) -> list[Contribution]:
    """What calls without a call-back task add to their day (``_call_day``'s sums, one row each);
    ``sign=-1``: what they take away."""
    out: list[Contribution] = []
    for _lead, started_at, direction, missed, answered, handler, weekday, hour in rows:
        day = cal.local_date(started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC))
        inbound = int(direction == "inbound")
        out.append(
            (
                "rollup_calls",
                day,
                (int(weekday), int(hour)),
                tuple(sign * v for v in (1, inbound, int(inbound and bool(missed)), 0, 0)),
            )
        )
        if answered and handler is not None:
            out.append(("rollup_staff", day, (int(handler),), (sign, 0, 0)))
    return out


def _apply(session: Session) -> None:
    if session.in_nested_transaction():
        # ``before_commit`` fires for a SAVEPOINT's release too (intake's phone-key insert, the
        # settings row): recounting there and again at the real commit doubled the work. The
        # marks stay until the outermost commit, which recounts them once.
        return
    session.flush()
    leads, moments, calls = session.info.pop(_KEY, (set(), set(), set()))
    created, moved = _check_calls(session, leads, moments, calls)
    if calls:
        moments |= set(session.scalars(sa.select(Call.started_at).where(Call.id.in_(calls))))
    if not leads and not moments and not created and not moved:
        return
    cal = load_calendar()
    days = {cal.local_date(m if m.tzinfo else m.replace(tzinfo=UTC)) for m in moments}
    changes = _created_calls([row for _id, row in created], cal)
    changes += _created_calls([before for before, _ in moved], cal, sign=-1)
    changes += _created_calls([after for _, after in moved], cal)
    # A call whose day is recounted anyway is counted there.
    extra = [c for c in changes if c[1] not in days]
    # Read after the last marks (the flush, the calls' check): a marked lead is no longer declared.
    declared = session.info.pop(_DECLARED, {})
    refresh(leads, days, cal, extra, declared)
    for key in (_KEY, _CHECK, _CREATED, _DECLARED):  # the roll-up writes mark nothing that matters
        session.info.pop(key, None)


def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        for key in (_KEY, _CHECK, _CREATED, _DECLARED):
            session.info.pop(key, None)


def _undeclare(session: Session, previous_transaction: Any) -> None:
    """A rollback (to a savepoint too) may have taken declared leads' rows back: read them instead."""
    declared = session.info.get(_DECLARED)
    if declared:
        declared.clear()


def install() -> None:
    """Attach the hooks to every SQLAlchemy session (idempotent)."""
    for name, fn in (
        ("after_flush", _collect_orm),
        ("do_orm_execute", _collect_core),
        ("before_commit", _apply),
        ("after_transaction_end", _forget),
        ("after_soft_rollback", _undeclare),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)

"""Dashboard numbers (PRODUCT §8), computed in SQL: plain functions (period, filters) → numbers.

Every function runs a fixed number of aggregate statements whatever the data size and never
loops over rows in Python; what comes back is already grouped (one row per stage, source,
staff member or hour × weekday cell) or bounded (a percentile's neighbours, the oldest
stalled leads).

Definitions shared by all functions:

- **Period**: ``[start, end)`` in UTC (``Period``). A lead belongs to a period's **cohort**
  when it was *created* in it; calls and stage moves count when they *happened* in it.
- **Excluded leads**: a lead merged into another (``merged_into_id`` set: its history lives
  on in the survivor's) and a lead marked "not a patient" never count anywhere.
- **Filters** (``Filters``) narrow the cohort: ``source`` and ``campaign`` equal the lead's,
  ``tag`` is an *active* tag on the lead, ``owner_id`` its owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil, floor
from typing import Any

import sqlalchemy as sa
from flask import g, has_request_context

from crm.extensions import db
from crm.models import STAGES, Call, Lead, LeadTag, StageChange, User
from crm.settings import get_settings

# The funnel's stages, in order (closed is an exit, not a step).
FUNNEL_STAGES = STAGES[: STAGES.index("closed")]
ORDER = {stage: i for i, stage in enumerate(FUNNEL_STAGES)}
CONSULT = ORDER["consult_scheduled"]
SURGERY = ORDER["surgery_scheduled"]
BY_COLUMNS = ("source", "campaign", "tag")
STALLED_LIMIT = 100


@dataclass(frozen=True)
class Period:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Filters:
    """What narrows a cohort of leads; ``None`` means no filter."""

    source: str | None = None
    campaign: str | None = None
    tag: str | None = None
    owner_id: int | None = None


NO_FILTERS = Filters()


def _counted() -> sa.ColumnElement[bool]:
    """Leads that count at all: not merged away, not "not a patient"."""
    return sa.and_(Lead.merged_into_id.is_(None), Lead.not_a_patient.is_(False))


def _filtered(filters: Filters) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [_counted()]
    if filters.source:
        where.append(Lead.source == filters.source)
    if filters.campaign:
        where.append(Lead.campaign == filters.campaign)
    if filters.owner_id:
        where.append(Lead.owner_id == filters.owner_id)
    if filters.tag:
        where.append(
            Lead.id.in_(
                sa.select(LeadTag.lead_id).where(LeadTag.code == filters.tag, LeadTag.state == "active")
            )
        )
    return where


def _cohort(period: Period, filters: Filters) -> list[sa.ColumnElement[bool]]:
    return [Lead.created_at >= period.start, Lead.created_at < period.end, *_filtered(filters)]


def _order_of(column: Any) -> sa.ColumnElement[int]:
    """The funnel position of a stage column; -1 for closed (an exit reaches nothing)."""
    return sa.case(ORDER, value=column, else_=-1)


def _reach_rows(period: Period, filters: Filters, *extra: Any) -> sa.Subquery:
    """One row per cohort lead: ``lead_id``, ``reached`` (its furthest funnel position), extras.

    ``reached`` is the highest position among its history's ``to_stage`` values and its
    current stage, and at least ``new``. The current stage counts too (an imported lead may
    start past ``new`` with no history row); it never lowers the maximum, so a lead that went
    back keeps what it reached. The history is aggregated in a grouped subquery first, so
    SQLite evaluates it once per lead (an inlined correlated subquery ran once per use).
    """
    grouped = (
        sa.select(
            Lead.id.label("lead_id"),
            sa.func.coalesce(sa.func.max(_order_of(StageChange.to_stage)), 0).label("history"),
            _order_of(Lead.stage).label("current"),
            *extra,
        )
        .outerjoin(StageChange, StageChange.lead_id == Lead.id)
        .where(*_cohort(period, filters))
        .group_by(Lead.id, Lead.stage, *extra)
        .subquery()
    )
    h, c = grouped.c.history, grouped.c.current
    return sa.select(
        grouped.c.lead_id,
        sa.case((h >= c, h), else_=c).label("reached"),
        *(grouped.c[e.name] for e in extra),
    ).subquery()


def funnel_and_sources(
    period: Period, filters: Filters = NO_FILTERS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``funnel(...)`` and ``conversion_by("source", ...)`` from one pass over the cohort.

    The cohort is grouped by source with a count per funnel stage (at most six rows); the
    funnel is their sum, so both charts cost one query.
    """
    rows = _reach_rows(period, filters, Lead.source.label("group"))
    reached = [sa.func.sum(sa.case((rows.c.reached >= i, 1), else_=0)) for i in ORDER.values()]
    groups: list[Any] = db.session.execute(  # type: ignore[assignment]
        sa.select(rows.c.group, *reached).group_by(rows.c.group)
    ).all()
    totals = [sum(int(g[i + 1]) for g in groups) for i in range(len(FUNNEL_STAGES))]
    by_source = [_conversion_row(g[0], int(g[1]), int(g[1 + CONSULT]), int(g[1 + SURGERY])) for g in groups]
    by_source.sort(key=lambda r: (-r["leads"], r["group"]))
    return _funnel_rows(totals), by_source


def funnel(period: Period, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Count the period's cohort by the furthest stage each lead ever reached.

    A lead *reached* a stage when its stage history ever moved it to that stage **or any
    later one** (a skipped stage counts as reached; going back or closing never un-reaches
    anything; a reopened lead keeps what it had reached). Every lead of the cohort reached
    ``new``. Returns one row per funnel stage (``closed`` is not a step): ``stage``,
    ``leads`` (how many reached it), ``of_previous`` (share of the previous step's leads, a
    fraction, ``None`` for the first step or when the previous step is 0) and ``of_total``.
    """
    return funnel_and_sources(period, filters)[0]


def _funnel_rows(counts: list[int]) -> list[dict[str, Any]]:
    total = counts[0]
    out: list[dict[str, Any]] = []
    for i, stage in enumerate(FUNNEL_STAGES):
        previous = counts[i - 1] if i else None
        out.append(
            {
                "stage": stage,
                "leads": counts[i],
                "of_previous": (counts[i] / previous) if previous else None,
                "of_total": (counts[i] / total) if total else None,
            }
        )
    return out


def _conversion_row(group: str, leads: int, consults: int, surgeries: int) -> dict[str, Any]:
    return {
        "group": group,
        "leads": leads,
        "consults": consults,
        "surgeries": surgeries,
        "consult_rate": consults / leads,
        "surgery_rate": surgeries / leads,
    }


def conversion_by(by: str, period: Period, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Share of the cohort that reached ``consult_scheduled`` and ``surgery_scheduled``, by group.

    ``by`` is ``source``, ``campaign`` (``None`` shown as ``"(none)"``) or ``tag`` (each active
    tag on a lead; a lead with two tags counts in both groups, one without tags in none).
    "Reached" is the funnel's definition. Rows: ``group``, ``leads``, ``consults``,
    ``surgeries``, ``consult_rate``, ``surgery_rate``; most leads first.
    """
    if by not in BY_COLUMNS:
        raise ValueError(f"unknown grouping: {by}")
    if by == "source":
        return funnel_and_sources(period, filters)[1]
    if by == "tag":
        rows = _reach_rows(period, filters)
        group: Any = LeadTag.code
        base = sa.select(group.label("group"), rows.c.reached).join_from(
            rows, LeadTag, sa.and_(LeadTag.lead_id == rows.c.lead_id, LeadTag.state == "active")
        )
        inner = base.subquery()
    else:
        column = sa.func.coalesce(Lead.campaign, "(none)")
        inner = _reach_rows(period, filters, column.label("group"))
    leads = sa.func.count()
    consults = sa.func.sum(sa.case((inner.c.reached >= CONSULT, 1), else_=0))
    surgeries = sa.func.sum(sa.case((inner.c.reached >= SURGERY, 1), else_=0))
    result: list[Any] = db.session.execute(  # type: ignore[assignment]
        sa.select(inner.c.group, leads, consults, surgeries)
        .group_by(inner.c.group)
        .order_by(leads.desc(), inner.c.group)
    ).all()
    return [_conversion_row(g, n, int(c), int(s)) for g, n, c, s in result]


def _minutes(later: Any, earlier: Any) -> sa.ColumnElement[Any]:
    """Wall-clock minutes between two UTC datetime columns, on SQLite and PostgreSQL."""
    if db.engine.dialect.name == "sqlite":
        return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 1440.0
    return sa.func.extract("epoch", later - earlier) / 60.0


def _percentile(ranked: list[tuple[int, float]], n: int, p: float) -> float:
    """Interpolate the p-th percentile as ``percentile_cont`` does, from the ranked neighbours."""
    at = (n - 1) * p
    by_rank = dict(ranked)
    lo, hi = by_rank[floor(at)], by_rank[ceil(at)]
    return lo + (hi - lo) * (at - floor(at))


def speed_to_lead(period: Period, filters: Filters = NO_FILTERS) -> dict[str, Any]:
    """Median and 90th percentile *wall-clock* minutes from a lead's creation to its first contact.

    The cohort is the period's leads that were contacted (``first_contact_at`` set, by the
    intake's rule: an answered call or a move to ``contacted``); ``waiting`` counts those not
    yet contacted. Percentiles are exact and the same on both databases: ``percentile_cont``'s
    linear interpolation between the values ranked ``floor((n-1)p)`` and ``ceil((n-1)p)``,
    found by a window-ranked query that returns only those few rows. Wall minutes, not
    business minutes: the clinic's target is in business minutes and is enforced in the
    queue; a night lead's wall time here includes the night.
    """
    minutes = _minutes(Lead.first_contact_at, Lead.created_at).label("m")
    contacted = (
        sa.select(minutes).where(*_cohort(period, filters), Lead.first_contact_at.is_not(None)).subquery()
    )
    ranked = sa.select(
        contacted.c.m,
        (sa.func.row_number().over(order_by=contacted.c.m) - 1).label("i"),
        sa.func.count().over().label("n"),
    ).subquery()
    at50, at90 = (ranked.c.n - 1) * 0.5, (ranked.c.n - 1) * 0.9
    near = sa.or_(sa.between(ranked.c.i, at50 - 1, at50 + 1), sa.between(ranked.c.i, at90 - 1, at90 + 1))
    rows = db.session.execute(sa.select(ranked.c.i, ranked.c.m, ranked.c.n).where(near)).all()
    waiting = db.session.scalar(
        sa.select(sa.func.count()).where(*_cohort(period, filters), Lead.first_contact_at.is_(None))
    )
    if not rows:
        return {"contacted": 0, "waiting": waiting or 0, "median": None, "p90": None}
    n = rows[0].n
    ranks = [(r.i, float(r.m)) for r in rows]
    return {
        "contacted": n,
        "waiting": waiting or 0,
        "median": round(_percentile(ranks, n, 0.5), 1),
        "p90": round(_percentile(ranks, n, 0.9), 1),
    }


def calls(period: Period) -> dict[str, Any]:
    """Call volume by clinic-local weekday × hour, and the missed-call rate.

    Every call on a clinic line that *started* in the period counts in the volume grid,
    inbound and outbound, by the clinic-local hour and weekday stored at insert (so the grid
    is right across daylight-saving changes; Monday = 0). Lead filters do not apply: a call
    may have no lead yet.

    **Missed-call rate** = inbound calls marked ``missed`` ÷ inbound calls, both in the
    period. ``missed`` is the intake's rule: status no-answer/busy/failed/canceled, or a
    voicemail that no staff leg answered. Outbound attempts are never missed calls (nobody
    was calling us) and are left out of both sides.
    """
    grid: dict[tuple[int, int], int] = {}
    inbound = missed = 0
    for weekday, hour, is_inbound, is_missed, _contact_by, n in _call_groups(period):
        grid[(weekday, hour)] = grid.get((weekday, hour), 0) + n
        inbound += n if is_inbound else 0
        missed += n if is_missed else 0
    cells = [{"weekday": w, "hour": h, "calls": n} for (w, h), n in sorted(grid.items())]
    return {
        "cells": cells,
        "total": sum(grid.values()),
        "inbound": inbound,
        "missed": missed,
        "missed_rate": (missed / inbound) if inbound else None,
    }


def _call_groups(period: Period) -> list[tuple[int, int, bool, bool, int | None, int]]:
    """Count the period's calls by weekday, hour, inbound, missed and who made contact.

    One pass over the calls serves both ``calls()`` and ``staff()``; at most 7 × 24 × 4 ×
    (staff + 1) rows come back. Within a request the answer is kept on ``g`` (the data
    cannot change under a page being rendered), so the dashboard scans the calls once.
    """
    key = ("metrics_call_groups", period)
    if has_request_context() and key in g.setdefault("metrics_cache", {}):
        cached: list[tuple[int, int, bool, bool, int | None, int]] = g.metrics_cache[key]
        return cached
    inbound_col = sa.case((Call.direction == "inbound", 1), else_=0)
    missed_col = sa.case((sa.and_(Call.direction == "inbound", Call.missed.is_(True)), 1), else_=0)
    contact_col = sa.case((Call.answered.is_(True), Call.handled_by_id), else_=None)
    rows: list[Any] = db.session.execute(  # type: ignore[assignment]
        sa.select(Call.local_weekday, Call.local_hour, inbound_col, missed_col, contact_col, sa.func.count())
        .where(Call.started_at >= period.start, Call.started_at < period.end)
        .group_by(Call.local_weekday, Call.local_hour, inbound_col, missed_col, contact_col)
    ).all()
    groups = [(int(w), int(h), bool(i), bool(m), c, int(n)) for w, h, i, m, c, n in rows]
    if has_request_context():
        g.metrics_cache[key] = groups
    return groups


def stage_aging(
    filters: Filters = NO_FILTERS, *, now: datetime, limit: int = STALLED_LIMIT
) -> dict[str, Any]:
    """Open leads sitting in their stage longer than the clinic's limit for it, oldest first.

    Open = not closed (and counted: not merged away, not "not a patient"). A lead is stalled
    when ``now - stage_entered_at`` exceeds ``ClinicSettings.stage_aging_days[stage]``; stages
    with no limit never stall. Returns ``by_stage`` (stage → stalled count, every stalled lead)
    and ``leads`` (the ``limit`` oldest: id, name, stage, entered, days).
    """
    limits = {s: d for s, d in (get_settings().stage_aging_days or {}).items() if s in ORDER and d}
    if not limits:
        return {"by_stage": {}, "leads": [], "limits": {}}
    stalled = sa.or_(
        *(
            sa.and_(Lead.stage == s, Lead.stage_entered_at < now - timedelta(days=d))
            for s, d in sorted(limits.items())
        )
    )
    # ``stage IN (...)`` lets the (stage, created_at) index skip closed leads.
    where = [Lead.stage.in_(sorted(limits)), stalled, *_filtered(filters)]
    by_stage = dict(
        db.session.execute(sa.select(Lead.stage, sa.func.count()).where(*where).group_by(Lead.stage)).all()
    )
    oldest = db.session.execute(
        sa.select(Lead.id, Lead.first_name, Lead.last_name, Lead.stage, Lead.stage_entered_at)
        .where(*where)
        .order_by(Lead.stage_entered_at, Lead.id)
        .limit(limit)
    ).all()
    return {
        "by_stage": by_stage,
        "limits": limits,
        "leads": [
            {
                "id": r.id,
                "name": f"{r.first_name} {r.last_name}".strip(),
                "stage": r.stage,
                "entered": r.stage_entered_at,
                "days": (now - r.stage_entered_at).days,
            }
            for r in oldest
        ],
    }


def staff(period: Period) -> list[dict[str, Any]]:
    """Contacts made, leads moved and conversions per staff member in the period.

    Credit goes to whoever acted, never to the lead's owner:

    - **contacts**: calls in the period handled by the person (``Call.handled_by_id``) that
      reached the patient (``answered``), inbound or outbound;
    - **moves**: stage moves the person made (``StageChange.actor_id``), counted per move;
    - **conversions**: moves the person made *to* ``surgery_scheduled``.

    Moves of merged-away or not-a-patient leads do not count; system moves (no actor) are
    nobody's. Rows for staff with any credit, most contacts first.
    """
    in_period = sa.and_(StageChange.at >= period.start, StageChange.at < period.end)
    moves: list[Any] = db.session.execute(  # type: ignore[assignment]
        sa.select(
            StageChange.actor_id,
            sa.func.count(),
            sa.func.sum(sa.case((StageChange.to_stage == "surgery_scheduled", 1), else_=0)),
        )
        .join(Lead, Lead.id == StageChange.lead_id)
        # ``actor_id IN (staff)`` lets the (actor_id, at) index serve the period's range.
        .where(in_period, StageChange.actor_id.in_(sa.select(User.id)), _counted())
        .group_by(StageChange.actor_id)
    ).all()
    credit: dict[int, list[int]] = {}
    for *_cell, contact_by, n in _call_groups(period):
        if contact_by is not None:
            credit.setdefault(contact_by, [0, 0, 0])[0] += n
    for actor_id, n, conversions in moves:
        entry = credit.setdefault(actor_id, [0, 0, 0])
        entry[1], entry[2] = int(n), int(conversions)
    if not credit:
        return []
    people = db.session.execute(sa.select(User.id, User.name, User.role).where(User.id.in_(credit))).all()
    rows: list[dict[str, Any]] = [
        {"user_id": i, "name": n, "role": r, "contacts": c[0], "moves": c[1], "conversions": c[2]}
        for i, n, r in people
        for c in [credit[i]]
    ]
    rows.sort(key=lambda r: (-r["contacts"], -r["moves"], r["name"]))
    return rows


def surgeon_numbers(surgeon_id: int, period: Period) -> dict[str, int]:
    """A surgeon's own referrals in the period: received, accepted, declined.

    - **received**: moves *into* ``surgical_review`` in the period of leads now assigned to
      this surgeon;
    - **accepted**: the surgeon's own moves from ``surgical_review`` to ``consult_scheduled``;
    - **declined**: the surgeon's own moves from ``surgical_review`` to ``closed`` or back to
      ``conservative_care``.

    Merged-away and not-a-patient leads are excluded.
    """
    in_period = sa.and_(StageChange.at >= period.start, StageChange.at < period.end)
    from_review = sa.and_(StageChange.from_stage == "surgical_review", StageChange.actor_id == surgeon_id)
    row = db.session.execute(
        sa.select(
            sa.func.sum(
                sa.case(
                    (sa.and_(StageChange.to_stage == "surgical_review", Lead.surgeon_id == surgeon_id), 1),
                    else_=0,
                )
            ),
            sa.func.sum(
                sa.case((sa.and_(from_review, StageChange.to_stage == "consult_scheduled"), 1), else_=0)
            ),
            sa.func.sum(
                sa.case(
                    (sa.and_(from_review, StageChange.to_stage.in_(("closed", "conservative_care"))), 1),
                    else_=0,
                )
            ),
        )
        .join(Lead, Lead.id == StageChange.lead_id)
        .where(in_period, _counted())
    ).one()
    return {"received": int(row[0] or 0), "accepted": int(row[1] or 0), "declined": int(row[2] or 0)}

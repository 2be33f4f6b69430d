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

**Roll-ups.** When a period is whole clinic-local days (every dashboard range is) and the
filters are ones a roll-up table is keyed by, a function reads the roll-ups of
``crm.rollups`` (the same numbers, pre-grouped and kept in step with every write) instead of
the raw tables: whole months (or weeks) from the coarse rows, the days at either end from
the day rows. Source and campaign (together too) are keys of ``rollup_leads``; any one filter
alone is a key of ``rollup_filter_leads`` / ``rollup_filter_speed``; several filters are
matched on ``rollup_lead_facts`` (one row per lead, no join to the raw tables). Otherwise
it runs the raw query. ``tests/test_rollups.py`` checks both agree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from math import ceil, floor
from typing import Any

import sqlalchemy as sa
from flask import g, has_request_context
from sqlalchemy.orm import aliased

from crm.extensions import db
from crm.models import (
    STAGES,
    Call,
    Lead,
    LeadTag,
    RollupLeadFacts,
    StageChange,
    Task,
    User,
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
from crm.rollups import bucket, filter_key, speed_bin
from crm.settings import clinic_tz, get_settings

# The funnel's stages, in order (closed is an exit, not a step).
FUNNEL_STAGES = STAGES[: STAGES.index("closed")]
ORDER = {stage: i for i, stage in enumerate(FUNNEL_STAGES)}
CONSULT = ORDER["consult_scheduled"]
SURGERY = ORDER["surgery_scheduled"]
BY_COLUMNS = ("source", "campaign", "tag", "landing_page", "practice")
# ``rollup_filter_leads.kind`` of each grouping.
KINDS = {
    "source": "source",
    "campaign": "campaign",
    "tag": "tag",
    "landing_page": "landing",
    "practice": "practice",
}
STALLED_LIMIT = 25  # stalled leads per page of the stage-aging list
STALLED_PAGES = 40  # the list goes no deeper than this many pages (the counts cover every lead)


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


def _filtered(filters: Filters, *, walked: bool = False) -> list[sa.ColumnElement[bool]]:
    """The filters as conditions on ``Lead``.

    ``walked``: the query walks leads by an index of its own (stage aging, oldest first), so
    the tag is checked per lead (``EXISTS``) rather than as a list of the tag's leads, which
    SQLite otherwise reads whole and looks each one up.
    """
    where: list[sa.ColumnElement[bool]] = [_counted()]
    if filters.source:
        where.append(Lead.source == filters.source)
    if filters.campaign:
        where.append(Lead.campaign == filters.campaign)
    if filters.owner_id:
        where.append(Lead.owner_id == filters.owner_id)
    if filters.tag and walked:
        where.append(
            sa.exists().where(
                LeadTag.lead_id == Lead.id, LeadTag.code == filters.tag, LeadTag.state == "active"
            )
        )
    elif filters.tag:
        where.append(
            Lead.id.in_(
                sa.select(LeadTag.lead_id).where(LeadTag.code == filters.tag, LeadTag.state == "active")
            )
        )
    return where


def _cohort(period: Period, filters: Filters) -> list[sa.ColumnElement[bool]]:
    return [Lead.created_at >= period.start, Lead.created_at < period.end, *_filtered(filters)]


USE_ROLLUPS = True  # tests turn it off to compare the roll-ups with the raw queries


def _local_days(period: Period) -> tuple[date, date] | None:
    """Return ``[first, end)`` clinic-local dates when the period is whole local days, else None."""
    if not USE_ROLLUPS:
        return None
    tz = clinic_tz()
    first, end = period.start.astimezone(tz), period.end.astimezone(tz)
    if first.time() != time() or end.time() != time() or end <= first:
        return None
    return first.date(), end.date()


def _in_buckets(table: sa.Table, days: tuple[date, date], coarse: str) -> sa.ColumnElement[bool]:
    """Select a roll-up's rows covering ``[first, end)``: whole coarse buckets, then day rows."""
    first, end = days
    whole: list[date] = []
    cursor = bucket(first, coarse)
    if cursor < first:
        cursor = _next_bucket(cursor, coarse)
    lo = cursor
    while _next_bucket(cursor, coarse) <= end:
        whole.append(cursor)
        cursor = _next_bucket(cursor, coarse)
    if not whole:
        return sa.and_(table.c.grain == "d", table.c.bucket >= first, table.c.bucket < end)
    # The days at either end are listed, not ranged: with a key after ``bucket`` (a filter)
    # each is one index seek, where a range read every filter's rows of those days.
    edges = [first + timedelta(days=i) for i in range((lo - first).days)]
    edges += [cursor + timedelta(days=i) for i in range((end - cursor).days)]
    if not edges:
        return sa.and_(table.c.grain == coarse, table.c.bucket.in_(whole))
    return sa.or_(
        sa.and_(table.c.grain == coarse, table.c.bucket.in_(whole)),
        sa.and_(table.c.grain == "d", table.c.bucket.in_(edges)),
    )


def _next_bucket(day: date, grain: str) -> date:
    if grain == "w":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _lead_rollup_rows(days: tuple[date, date], filters: Filters) -> list[tuple[str, str, int, int]]:
    """``(source, campaign, reached, leads)`` of the cohort from ``rollup_leads`` (source/campaign filters).

    The funnel, conversion by source and by campaign all read this one grouped answer; within
    a request it is kept on ``g`` (the data cannot change under a page being rendered).
    """
    key = ("metrics_lead_rollup", days, filters.source, filters.campaign)
    if has_request_context() and key in g.setdefault("metrics_cache", {}):
        cached: list[tuple[str, str, int, int]] = g.metrics_cache[key]
        return cached
    t = rollup_leads
    where = [_in_buckets(t, days, "m")]
    if filters.source:
        where.append(t.c.source == filters.source)
    if filters.campaign:
        where.append(t.c.campaign == filters.campaign)
    rows = [
        (src, camp, int(r), int(n))
        for src, camp, r, n in db.session.execute(
            sa.select(t.c.source, t.c.campaign, t.c.reached, sa.func.sum(t.c.leads))
            .where(*where)
            .group_by(t.c.source, t.c.campaign, t.c.reached)
        )
    ]
    if has_request_context():
        g.metrics_cache[key] = rows
    return rows


def _single_filter(filters: Filters) -> str | None:
    """Name the one filter set (``rollup_filter_*``'s ``filter`` key); None for none or several."""
    named = [
        filter_key(kind, value)
        for kind, value in (
            ("source", filters.source),
            ("campaign", filters.campaign),
            ("owner", filters.owner_id),
            ("tag", filters.tag),
        )
        if value
    ]
    return named[0] if len(named) == 1 else None


def _kind_rows(days: tuple[date, date], filters: Filters) -> list[tuple[str, str, int, int]]:
    """``(kind, value, reached, leads)`` of a filtered cohort: the funnel and every conversion chart.

    One filter is a key of ``rollup_filter_leads``; several are matched on the lead facts
    (one row per lead, what ``crm.rollups.contributions`` adds up), grouped here the same
    way. Kept on ``g`` for the request, as ``_lead_rollup_rows``.
    """
    cache_key = ("metrics_kind_rows", days, filters)
    if has_request_context() and cache_key in g.setdefault("metrics_cache", {}):
        cached: list[tuple[str, str, int, int]] = g.metrics_cache[cache_key]
        return cached
    key = _single_filter(filters)
    rows: list[tuple[str, str, int, int]]
    if key:
        t = rollup_filter_leads
        rows = [
            (kind, value, int(r), int(n))
            for kind, value, r, n in db.session.execute(
                sa.select(t.c.kind, t.c.value, t.c.reached, sa.func.sum(t.c.leads))
                .where(_in_buckets(t, days, "m"), t.c.filter == key)
                .group_by(t.c.kind, t.c.value, t.c.reached)
            )
        ]
    else:
        f = RollupLeadFacts
        counts: dict[tuple[str, str, int], int] = defaultdict(int)
        for source, campaign, landing, practice, tags, reached, n in db.session.execute(
            sa.select(f.source, f.campaign, f.landing_page, f.practice_id, f.tags, f.reached, sa.func.count())
            .where(*_facts_cohort(days, filters))
            .group_by(f.source, f.campaign, f.landing_page, f.practice_id, f.tags, f.reached)
        ):
            groups = [("source", source), ("campaign", campaign)]
            groups += [("tag", tag) for tag in tags.split(",") if tag]
            groups += [("landing", landing)] if landing else []
            groups += [("practice", str(practice))] if practice else []
            for kind, value in groups:
                counts[kind, value, int(reached)] += int(n)
        rows = [(kind, value, r, n) for (kind, value, r), n in counts.items()]
    if has_request_context():
        g.metrics_cache[cache_key] = rows
    return rows


def _facts_cohort(days: tuple[date, date], filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The filtered cohort as conditions on the lead facts (``crm.rollups``' copy of each lead)."""
    f = RollupLeadFacts
    where = [f.counted.is_(True), f.day >= days[0], f.day < days[1]]
    if filters.source:
        where.append(f.source == filters.source)
    if filters.campaign:
        where.append(f.campaign == filters.campaign)
    if filters.owner_id:
        where.append(f.owner_id == filters.owner_id)
    if filters.tag:  # ``tags`` is the sorted, comma-separated list of active tags
        where.append((sa.literal(",") + f.tags + ",").contains(f",{filters.tag},", autoescape=True))
    return where


def _reach_counts(rows: list[Any]) -> dict[Any, list[int]]:
    """Turn ``(group, reached, leads)`` rows into group → leads reaching each funnel step."""
    out: dict[Any, list[int]] = {}
    for group, reached, n in rows:
        counts = out.setdefault(group, [0] * len(FUNNEL_STAGES))
        for i in range(min(int(reached), len(FUNNEL_STAGES) - 1) + 1):
            counts[i] += int(n)
    return out


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
    days = _local_days(period)
    if days and not filters.tag and not filters.owner_id:
        counted = _reach_counts([(src, r, n) for src, _c, r, n in _lead_rollup_rows(days, filters)])
        groups: list[Any] = [(g, *c) for g, c in counted.items() if c[0]]
    elif days:
        rows_ = [(v, r, n) for k, v, r, n in _kind_rows(days, filters) if k == "source"]
        groups = [(g, *c) for g, c in _reach_counts(rows_).items() if c[0]]
    else:
        rows = _reach_rows(period, filters, Lead.source.label("group"))
        reached = [sa.func.sum(sa.case((rows.c.reached >= i, 1), else_=0)) for i in ORDER.values()]
        groups = db.session.execute(  # type: ignore[assignment]
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

    ``by`` is ``source``, ``campaign`` (``None`` shown as ``"(none)"``), ``tag`` (each active
    tag on a lead; a lead with two tags counts in both groups, one without tags in none),
    ``landing_page`` or ``practice`` (the referring practice's id; leads without one are left
    out of these two).
    "Reached" is the funnel's definition. Rows: ``group``, ``leads``, ``consults``,
    ``surgeries``, ``consult_rate``, ``surgery_rate``; most leads first.
    """
    if by not in BY_COLUMNS:
        raise ValueError(f"unknown grouping: {by}")
    if by == "source":
        return funnel_and_sources(period, filters)[1]
    rolled = _conversion_from_rollups(by, period, filters)
    if rolled is not None:
        return rolled
    if by == "tag":
        rows = _reach_rows(period, filters)
        group: Any = LeadTag.code
        base = sa.select(group.label("group"), rows.c.reached).join_from(
            rows, LeadTag, sa.and_(LeadTag.lead_id == rows.c.lead_id, LeadTag.state == "active")
        )
        inner = base.subquery()
    elif by == "campaign":
        column = sa.func.coalesce(Lead.campaign, "(none)")
        inner = _reach_rows(period, filters, column.label("group"))
    else:
        column = Lead.landing_page if by == "landing_page" else Lead.referring_practice_id
        rows = _reach_rows(period, filters, column.label("group"))
        present = rows.c.group.is_not(None)
        inner = (
            sa.select(rows).where(present, rows.c.group != "" if by == "landing_page" else present).subquery()
        )
    leads = sa.func.count()
    consults = sa.func.sum(sa.case((inner.c.reached >= CONSULT, 1), else_=0))
    surgeries = sa.func.sum(sa.case((inner.c.reached >= SURGERY, 1), else_=0))
    result: list[Any] = db.session.execute(  # type: ignore[assignment]
        sa.select(inner.c.group, leads, consults, surgeries)
        .group_by(inner.c.group)
        .order_by(leads.desc(), inner.c.group)
    ).all()
    out = [_conversion_row(str(g), n, int(c), int(s)) for g, n, c, s in result]
    out.sort(key=lambda r: (-r["leads"], r["group"]))
    return out


def _conversion_from_rollups(by: str, period: Period, filters: Filters) -> list[dict[str, Any]] | None:
    """Read ``conversion_by`` from the roll-ups, or None when they cannot answer it."""
    days = _local_days(period)
    if days is None:
        return None
    rows: list[Any]
    if by == "campaign" and not filters.tag and not filters.owner_id:
        rows = [(c or "(none)", r, n) for _s, c, r, n in _lead_rollup_rows(days, filters)]
    elif filters != NO_FILTERS:
        kind = KINDS[by]
        rows = [
            (v or "(none)" if by == "campaign" else v, r, n)
            for k, v, r, n in _kind_rows(days, filters)
            if k == kind
        ]
    else:
        if by == "tag":
            t = rollup_lead_tags
            where, group = [_in_buckets(t, days, "m")], t.c.tag
        else:
            t = rollup_lead_origins
            where = [_in_buckets(t, days, "m"), t.c.kind == KINDS[by]]
            group = t.c.value
        rows = db.session.execute(  # type: ignore[assignment]
            sa.select(group, t.c.reached, sa.func.sum(t.c.leads)).where(*where).group_by(group, t.c.reached)
        ).all()
    counted = _reach_counts(rows)
    out = [_conversion_row(group_, c[0], c[CONSULT], c[SURGERY]) for group_, c in counted.items() if c[0]]
    out.sort(key=lambda r: (-r["leads"], r["group"]))
    return out


def speed_to_lead(period: Period, filters: Filters = NO_FILTERS) -> dict[str, Any]:
    """Business minutes from a lead's creation to its first contact: median, 90th percentile, share in target.

    The cohort is the period's leads (filters apply); ``contacted`` are those with a first
    contact (``first_contact_at``, the intake's rule: an answered call or a move to
    ``contacted``), ``waiting`` the others. Minutes are **business minutes** of the clinic's
    calendar (opening hours, holidays; ``crm.business_hours``), so a lead that came in on
    Friday night and was called at 8:10 on Monday took 10 minutes; each lead's figure is
    rounded *up* to the whole minute, so "within target" (``within``, a share of the
    contacted) means at most ``target`` (``ClinicSettings.speed_to_lead_minutes``) real
    business minutes. Median and 90th percentile interpolate as ``percentile_cont`` does,
    over this whole-minute histogram (the same on SQLite, which has no ``percentile_cont``,
    and PostgreSQL).

    Also returns ``by_week`` (the clinic-local Monday of the lead's creation) and ``by_staff``
    (who made the first contact: the handler of the lead's first answered call, else whoever
    moved it to ``contacted``; "(unknown)" for neither, user id 0).
    """
    target = get_settings().speed_to_lead_minutes
    by_day, by_person = _speed_histograms(period, filters)
    overall: dict[int, int] = defaultdict(int)
    weeks: dict[date, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    staff_hist: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    waiting = 0
    for day, minutes, n in by_day:
        if minutes < 0:
            waiting += n
            continue
        overall[minutes] += n
        weeks[bucket(day, "w")][minutes] += n
    for contact_by, minutes, n in by_person:
        staff_hist[contact_by][minutes] += n
    names = dict(
        db.session.execute(
            sa.select(User.id, User.name).where(User.id.in_([u for u in staff_hist if u]))
        ).all()
    )
    by_staff = [
        {"user_id": u, "name": names.get(u, "(unknown)"), **_summary(h, target)}
        for u, h in staff_hist.items()
    ]
    by_staff.sort(key=lambda r: (-r["contacted"], r["name"]))
    return {
        "target": target,
        "waiting": waiting,
        **_summary(overall, target),
        "by_week": [{"week": w, **_summary(h, target)} for w, h in sorted(weeks.items())],
        "by_staff": by_staff,
    }


def _speed_histograms(
    period: Period, filters: Filters
) -> tuple[list[tuple[date, int, int]], list[tuple[int, int, int]]]:
    """Return ``(day, minutes, leads)`` and ``(contact_by, minutes, leads)`` rows of the cohort.

    ``minutes`` is the binned business minutes (``crm.rollups.speed_bin``), -1 not contacted.
    """
    days = _local_days(period)
    key = _single_filter(filters)
    if days and (filters == NO_FILTERS or key):
        t, u = rollup_speed, rollup_speed_staff
        only: list[Any] = []
        if key:  # one table under each filter: its week rows for the weeks, month rows for staff
            t = u = rollup_filter_speed
            only = [t.c.filter == key]
        by_day = db.session.execute(
            sa.select(t.c.bucket, t.c.minutes, sa.func.sum(t.c.leads))
            .where(_in_buckets(t, days, "w"), *only)
            .group_by(t.c.bucket, t.c.minutes)
        ).all()
        by_person = db.session.execute(
            sa.select(u.c.contact_by, u.c.minutes, sa.func.sum(u.c.leads))
            .where(_in_buckets(u, days, "m"), u.c.minutes >= 0, *only)
            .group_by(u.c.contact_by, u.c.minutes)
        ).all()
        return (  # a bin that went back to 0 leads is still a row: leave it out
            [(d, int(m), int(n)) for d, m, n in by_day if n],
            [(int(c), int(m), int(n)) for c, m, n in by_person if n],
        )
    f = RollupLeadFacts
    minutes = sa.func.coalesce(f.speed_minutes, -1)
    select = sa.select(f.day, f.contact_by, minutes, sa.func.count())
    if days:  # several filters: matched on the lead facts alone
        select = select.where(*_facts_cohort(days, filters))
    else:
        select = select.join(Lead, Lead.id == f.lead_id).where(*_cohort(period, filters))
    rows = db.session.execute(select.group_by(f.day, f.contact_by, minutes)).all()
    binned = [(d, int(c), speed_bin(int(m)) if m >= 0 else -1, int(n)) for d, c, m, n in rows]
    return [(d, m, n) for d, _c, m, n in binned], [(c, m, n) for _d, c, m, n in binned if m >= 0]


def _summary(histogram: dict[int, int], target: int) -> dict[str, Any]:
    """Count, median, 90th percentile and share within target of a minute → leads histogram."""
    n = sum(histogram.values())
    if not n:
        return {"contacted": 0, "median": None, "p90": None, "within": None}
    ordered = sorted(histogram.items())

    def at(rank: int) -> float:
        seen = 0
        for value, count in ordered:
            seen += count
            if rank < seen:
                return float(value)
        return float(ordered[-1][0])

    def percentile(p: float) -> float:
        rank = (n - 1) * p
        lo, hi = at(floor(rank)), at(ceil(rank))
        return round(lo + (hi - lo) * (rank - floor(rank)), 1)

    within = sum(c for v, c in ordered if v <= target)
    return {"contacted": n, "median": percentile(0.5), "p90": percentile(0.9), "within": within / n}


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

    **Call-backs within target**: of the period's missed inbound calls that got a call-back
    task (the intake makes one per missed call), ``callbacks_on_time`` were done by the task's
    due time (the clinic's call-back target, in business minutes, set when the task was made);
    ``callback_rate`` is their share.
    """
    days = _local_days(period)
    if days:
        t = rollup_calls
        sums = [sa.func.sum(t.c[v]) for v in ("calls", "inbound", "missed", "callbacks", "callbacks_on_time")]
        cell_rows = db.session.execute(
            sa.select(t.c.weekday, t.c.hour, *sums)
            .where(_in_buckets(t, days, "m"))
            .group_by(t.c.weekday, t.c.hour)
        ).all()
        cells = [{"weekday": int(r[0]), "hour": int(r[1]), "calls": int(r[2])} for r in cell_rows if r[2]]
        inbound, missed, callbacks, on_time = (sum(int(r[i]) for r in cell_rows) for i in (3, 4, 5, 6))
        return _calls_result(cells, inbound, missed, callbacks, on_time)
    grid: dict[tuple[int, int], int] = {}
    inbound = missed = 0
    for weekday, hour, is_inbound, is_missed, _contact_by, n in _call_groups(period):
        grid[(weekday, hour)] = grid.get((weekday, hour), 0) + n
        inbound += n if is_inbound else 0
        missed += n if is_missed else 0
    cells = [{"weekday": w, "hour": h, "calls": n} for (w, h), n in sorted(grid.items())]
    missed_in_period = sa.and_(
        Call.started_at >= period.start, Call.started_at < period.end, Call.missed.is_(True)
    )
    callbacks, on_time = db.session.execute(
        sa.select(
            sa.func.count(Task.id),
            sa.func.sum(
                sa.case((sa.and_(Task.done_at.is_not(None), Task.done_at <= Task.due_at), 1), else_=0)
            ),
        )
        .select_from(Call)
        .join(Task, sa.and_(Task.call_id == Call.id, Task.kind == "callback"))
        .where(missed_in_period)
    ).one()
    return _calls_result(cells, inbound, missed, int(callbacks or 0), int(on_time or 0))


def _calls_result(
    cells: list[dict[str, Any]], inbound: int, missed: int, callbacks: int, on_time: int
) -> dict[str, Any]:
    return {
        "cells": sorted(cells, key=lambda c: (c["weekday"], c["hour"])),
        "total": sum(c["calls"] for c in cells),
        "inbound": inbound,
        "missed": missed,
        "missed_rate": (missed / inbound) if inbound else None,
        "callbacks": callbacks,
        "callbacks_on_time": on_time,
        "callback_rate": (on_time / callbacks) if callbacks else None,
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
    filters: Filters = NO_FILTERS, *, now: datetime, limit: int = STALLED_LIMIT, page: int = 1
) -> dict[str, Any]:
    """Open leads sitting in their stage longer than the clinic's limit for it, oldest first.

    Open = not closed (and counted: not merged away, not "not a patient"). A lead is stalled
    when ``now - stage_entered_at`` exceeds ``ClinicSettings.stage_aging_days[stage]``; stages
    with no limit never stall. Returns ``by_stage`` (stage → stalled count, every stalled lead)
    and ``leads`` (page ``page`` of ``limit`` leads, oldest first: id, name, stage, entered,
    days); pages stop at ``STALLED_PAGES``.
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
    where = [Lead.stage.in_(sorted(limits)), stalled, *_filtered(filters, walked=True)]
    by_stage = dict(
        db.session.execute(sa.select(Lead.stage, sa.func.count()).where(*where).group_by(Lead.stage)).all()
    )
    # Each stage's oldest by the (stage, stage_entered_at) index, then merged: one sort of a
    # few hundred rows instead of every stalled lead.
    skip = limit * (min(max(page, 1), STALLED_PAGES) - 1)
    columns = (Lead.id, Lead.first_name, Lead.last_name, Lead.stage, Lead.stage_entered_at)
    parts = [
        sa.select(
            sa.select(*columns)
            .where(
                Lead.stage == s,
                Lead.stage_entered_at < now - timedelta(days=d),
                *_filtered(filters, walked=True),
            )
            .order_by(Lead.stage_entered_at, Lead.id)
            .limit(skip + limit)
            .subquery()
        )
        for s, d in sorted(limits.items())
    ]
    merged = sa.union_all(*parts).subquery()
    oldest = db.session.execute(
        sa.select(merged).order_by(merged.c.stage_entered_at, merged.c.id).limit(limit).offset(skip)
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
    days = _local_days(period)
    credit: dict[int, list[int]] = {}
    if days:
        t = rollup_staff
        for user_id, c, m, v in db.session.execute(
            sa.select(
                t.c.user_id, sa.func.sum(t.c.contacts), sa.func.sum(t.c.moves), sa.func.sum(t.c.conversions)
            )
            .where(_in_buckets(t, days, "m"))
            .group_by(t.c.user_id)
        ):
            if c or m or v:
                credit[int(user_id)] = [int(c), int(m), int(v)]
        return _staff_rows(credit)
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
    for *_cell, contact_by, n in _call_groups(period):
        if contact_by is not None:
            credit.setdefault(contact_by, [0, 0, 0])[0] += n
    for actor_id, n, conversions in moves:
        entry = credit.setdefault(actor_id, [0, 0, 0])
        entry[1], entry[2] = int(n), int(conversions)
    return _staff_rows(credit)


def _staff_rows(credit: dict[int, list[int]]) -> list[dict[str, Any]]:
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


def surgeon_numbers(surgeon_id: int, period: Period) -> dict[str, Any]:
    """A surgeon's own numbers in the period.

    - **received**: moves *into* ``surgical_review`` in the period of leads now assigned to
      this surgeon;
    - **accepted**: the surgeon's own moves from ``surgical_review`` to ``consult_scheduled``;
    - **declined**: the surgeon's own moves from ``surgical_review`` to ``closed`` or back to
      ``conservative_care``;
    - **days to decision** (``decision_days_median``, ``decision_days_max``): for each of those
      decisions, days (fractional, wall clock) since the lead last entered
      ``surgical_review`` before it; median interpolated as ``percentile_cont``;
    - **consults → surgery**: ``consults`` = leads now assigned to this surgeon moved to
      ``consult_completed`` in the period; ``to_surgery`` = how many of them have (ever) been
      moved to ``surgery_scheduled`` after that.

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
    entered = aliased(StageChange)
    since = (
        sa.select(sa.func.max(entered.at))
        .where(
            entered.lead_id == StageChange.lead_id,
            entered.to_stage == "surgical_review",
            entered.at <= StageChange.at,
        )
        .scalar_subquery()
    )
    decided = sa.and_(
        from_review, StageChange.to_stage.in_(("consult_scheduled", "closed", "conservative_care"))
    )
    waits = sorted(
        (at - start).total_seconds() / 86400
        for at, start in db.session.execute(
            sa.select(StageChange.at, since)
            .join(Lead, Lead.id == StageChange.lead_id)
            .where(in_period, decided, _counted())
        )
        if start is not None
    )
    later = aliased(StageChange)
    to_surgery = sa.exists().where(
        later.lead_id == StageChange.lead_id,
        later.to_stage == "surgery_scheduled",
        later.at >= StageChange.at,
    )
    consults, surgeries = db.session.execute(
        sa.select(
            sa.func.count(sa.distinct(StageChange.lead_id)),
            sa.func.count(sa.distinct(sa.case((to_surgery, StageChange.lead_id), else_=None))),
        )
        .join(Lead, Lead.id == StageChange.lead_id)
        .where(
            in_period, StageChange.to_stage == "consult_completed", Lead.surgeon_id == surgeon_id, _counted()
        )
    ).one()
    median = None
    if waits:
        at = (len(waits) - 1) * 0.5
        median = waits[floor(at)] + (waits[ceil(at)] - waits[floor(at)]) * (at - floor(at))
    return {
        "received": int(row[0] or 0),
        "accepted": int(row[1] or 0),
        "declined": int(row[2] or 0),
        "decisions": len(waits),
        "decision_days_median": None if median is None else round(median, 1),
        "decision_days_max": round(waits[-1], 1) if waits else None,
        "consults": int(consults or 0),
        "to_surgery": int(surgeries or 0),
    }

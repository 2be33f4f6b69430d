"""The front-desk queue (PRODUCT §4): its order, filters, search, and the actions taken from it.

The queue is four groups, each lead in the first one it fits:

1. urgent, oldest first;
2. overdue for first contact, most overdue first;
3. a task due today (clinic-local) or overdue, earliest due first;
4. the rest, newest first.

A page is **one** statement: a ``UNION ALL`` of the four groups, each a small query on its own
index (``ix_leads_queue_*``) with its own ``LIMIT`` of a page and one row, so it costs the same
at 100 leads and at 100,000. Pages after the first are reached by a keyset cursor
(``after=<group>:<sort key in epoch µs>:<id>``), never by OFFSET. The number of leads is a
capped count (``1,000+``), never a COUNT over the whole table.

Pages and the API call :func:`fetch_page`; the views never build the query themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, load_only

from crm import audit, phones
from crm.authz import MAX_ID
from crm.extensions import db
from crm.models import Lead, LeadSearchTerm, LeadTag, User
from crm.text import fold, name_terms

PAGE_SIZE = 50
COUNT_CAP = 500
CALLING_EXPIRES = timedelta(minutes=15)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

URGENT, OVERDUE, TASK_DUE, REST = 1, 2, 3, 4
GROUP_LABELS = {URGENT: "Urgent", OVERDUE: "Overdue", TASK_DUE: "Task due", REST: "Newest"}


class BadCursor(ValueError):
    """An ``after=`` cursor that cannot be read (a hand-edited address): start from the top."""


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after this lead in this group."""

    group: int
    key: datetime
    lead_id: int

    def encode(self) -> str:
        micros = (self.key - EPOCH) // timedelta(microseconds=1)
        return f"{self.group}:{micros}:{self.lead_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            group, micros, lead_id = (int(part) for part in text.split(":"))
        except ValueError as error:
            raise BadCursor(text) from error
        if group not in GROUP_LABELS or not 0 < lead_id <= MAX_ID:
            raise BadCursor(text)
        try:
            return cls(group, EPOCH + timedelta(microseconds=micros), lead_id)
        except OverflowError as error:  # a moment past the calendar's ends
            raise BadCursor(text) from error


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters, as the query string gives them (all optional)."""

    stage: str | None = None
    tag: str | None = None
    source: str | None = None
    campaign: str | None = None
    owner: int | str | None = None  # a user id, "me" (resolved by the caller) or "none"
    created_from: date | None = None  # clinic-local dates, inclusive
    created_to: date | None = None
    q: str | None = None
    include_closed: bool = False

    @property
    def narrowed(self) -> bool:
        """Tell whether any filter or search narrows the queue."""
        return any(
            (
                self.stage,
                self.tag,
                self.source,
                self.campaign,
                self.owner,
                self.created_from,
                self.created_to,
                self.q,
            )
        )


@dataclass
class QueuePage:
    """One page of the queue: its leads (with their group), the next cursor and a capped count."""

    rows: list[tuple[int, Lead]]
    next_cursor: str | None
    count: int
    count_capped: bool
    search: Search | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    tags: dict[int, list[str]] = field(default_factory=dict)  # each shown lead's active tag codes

    @property
    def leads(self) -> list[Lead]:
        return [lead for _group, lead in self.rows]


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Search:
    """What a ``?q=`` was read as: a name, an email, a whole phone, or its last 7 or 4 digits."""

    kind: str  # name | email | phone | last7 | last4 | none
    value: str | tuple[str, ...]

    @property
    def description(self) -> str:
        return {
            "name": "name",
            "email": "email",
            "phone": "phone number",
            "last7": "last 7 digits of the phone",
            "last4": "last 4 digits of the phone",
            "none": "nothing searchable",
        }[self.kind]


PHONE_CHARS = set("0123456789 +-().")


def read_search(q: str) -> Search:
    """Decide what a search text is: an email, a phone written any way, or words of a name."""
    text = q.strip()
    if "@" in text:
        return Search("email", text.lower())
    if text and set(text) <= PHONE_CHARS and any(ch.isdigit() for ch in text):
        digits = phones.digits(text)
        if len(digits) in (10, 11) or text.startswith("+"):
            e164 = phones.normalize(text)
            return Search("phone", e164) if e164 else Search("none", digits)
        if len(digits) == 7:
            return Search("last7", digits)
        if len(digits) == 4:
            return Search("last4", digits)
        return Search("none", digits)
    words = tuple(name_terms(text))
    return Search("name", words) if words else Search("none", "")


def _prefix_range(column: Any, prefix: str) -> sa.ColumnElement[bool]:
    """``column >= prefix AND column < prefix_next``: a prefix as an index range on both databases.

    Both databases compare these folded words byte-wise (SQLite's BINARY collation; the
    PostgreSQL database is created with the C collation), so the range holds exactly the
    values starting with ``prefix``.
    """
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(column >= prefix, column < upper)


def search_clause(search: Search) -> sa.ColumnElement[bool]:
    """Return the WHERE clause of a search, each form served by its own index."""
    if search.kind == "email":
        return _prefix_range(Lead.email, str(search.value))  # ix_leads_email
    if search.kind == "phone":
        return Lead.phone == search.value  # ix_leads_phone
    if search.kind == "last7":
        return Lead.phone_last7 == search.value  # ix_leads_phone_last7
    if search.kind == "last4":
        return Lead.phone_last4 == search.value  # ix_leads_phone_last4
    if search.kind == "name":
        # Every word typed must start some word of the name (ix_lead_search_terms_term_lead).
        return sa.and_(
            *[
                Lead.id.in_(
                    sa.select(LeadSearchTerm.lead_id).where(_prefix_range(LeadSearchTerm.term, fold(w)))
                )
                for w in search.value
            ]
        )
    return sa.false()


# --------------------------------------------------------------------------- the query


def end_of_local_day(now: datetime, tz: ZoneInfo) -> datetime:
    """Return the last moment of the clinic-local day of ``now``, in UTC."""
    local = now.astimezone(tz)
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return tomorrow.astimezone(UTC) - timedelta(microseconds=1)


def local_day_start(day: date, tz: ZoneInfo) -> datetime:
    """Return the first moment of a clinic-local date, in UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def filter_clauses(
    filters: QueueFilters, tz: ZoneInfo, *, wide: bool = False, checked_per_row: bool = False
) -> list[sa.ColumnElement[bool]]:
    """Return the WHERE clauses of the filters and the search (without the queue's groups).

    ``wide``: the filter matches many leads (the capped count was reached), so each group is
    best read from its own index, the tag checked per row; otherwise (a few hundred leads at
    most) the tag's own index gives the set and the database sorts that small set.
    ``checked_per_row``: stage, source, campaign and owner are written so that their indexes
    cannot serve them (for the urgent group, see :func:`page_statement`).
    """
    clauses: list[sa.ColumnElement[bool]] = []

    def text(column: Any) -> Any:
        # ``checked_per_row``: the same test, written so that no index of the filter can serve it.
        return column.concat("") if checked_per_row else column

    if filters.stage:
        clauses.append(text(Lead.stage) == filters.stage)
    if filters.source:
        clauses.append(text(Lead.source) == filters.source)
    if filters.campaign:
        clauses.append(text(Lead.campaign) == filters.campaign)
    if filters.owner == "none":
        clauses.append(Lead.owner_id.is_(None))
    elif isinstance(filters.owner, int):
        clauses.append((Lead.owner_id + 0 if checked_per_row else Lead.owner_id) == filters.owner)
    if filters.created_from:
        clauses.append(Lead.created_at >= local_day_start(filters.created_from, tz))
    if filters.created_to:
        clauses.append(Lead.created_at < local_day_start(filters.created_to + timedelta(days=1), tz))
    if filters.tag:
        having = sa.and_(LeadTag.code == filters.tag, LeadTag.state == "active")
        if wide:  # many leads have it: walk the group's index, probing uq_lead_tags_lead_code per row
            clauses.append(sa.exists().where(LeadTag.lead_id == Lead.id, having))
        else:  # a few hundred at most: read them from ix_lead_tags_code_state_lead, sort that set
            clauses.append(Lead.id.in_(sa.select(LeadTag.lead_id).where(having)))
    if filters.q:
        clauses.append(search_clause(read_search(filters.q)))
    return clauses


def _groups(now: datetime, eod: datetime) -> dict[int, tuple[sa.ColumnElement[bool], Any, bool]]:
    """Return each group's condition, its sort column and whether it sorts newest first.

    The conditions are disjoint (a lead fits only its first group); each is written so that
    its group's index serves it as a range: ``in_queue = true AND <sort column> <range>``.
    """
    queued = Lead.in_queue == sa.true()
    overdue = sa.and_(Lead.first_contact_due_at < now, Lead.first_contact_at.is_(None))
    not_overdue = sa.or_(
        Lead.first_contact_due_at.is_(None),
        Lead.first_contact_due_at >= now,
        Lead.first_contact_at.is_not(None),
    )
    not_urgent = Lead.urgent == sa.false()
    return {
        URGENT: (sa.and_(queued, Lead.urgent == sa.true()), Lead.created_at, False),
        OVERDUE: (sa.and_(queued, overdue, not_urgent), Lead.first_contact_due_at, False),
        TASK_DUE: (
            sa.and_(queued, Lead.next_task_due_at <= eod, not_urgent, not_overdue),
            Lead.next_task_due_at,
            False,
        ),
        REST: (
            sa.and_(
                queued,
                not_urgent,
                not_overdue,
                sa.or_(Lead.next_task_due_at.is_(None), Lead.next_task_due_at > eod),
            ),
            Lead.created_at,
            True,
        ),
    }


def page_statement(
    scope: sa.ColumnElement[bool],
    filters: QueueFilters,
    *,
    now: datetime,
    tz: ZoneInfo,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
    wide: bool = False,
) -> sa.CompoundSelect:
    """Build the one statement of a page: each group's next ``limit + 1`` ids, by its own index.

    Rows are ``(grp, key, id)``; the caller orders them by group, then each group's key.
    """
    eod = end_of_local_day(now, tz)
    where = [scope, *filter_clauses(filters, tz, wide=wide)]
    # Urgent and overdue leads are few by design (the desk works them down first), and a view
    # is only "wide" when the filter matches hundreds: those groups, and the tasks due today
    # when the filter is wide, walk their own index and check the filter per row. Otherwise
    # SQLite's planner, which cannot know these groups are small, reads every lead of the
    # stage by the filter's index and sorts them (2,400 leads of a stage at full size: 5-15 ms
    # a group, against 0.3-2.4 ms walked).
    per_row = [scope, *filter_clauses(filters, tz, wide=wide, checked_per_row=True)]
    walked = {URGENT, OVERDUE, TASK_DUE} if wide else {URGENT}
    branches = []
    for group, (condition, key, newest_first) in _groups(now, eod).items():
        if after is not None and group < after.group:
            continue
        if group == REST and filters.include_closed:
            # Closed and not-a-patient leads join the last group: everything outside groups 1–3,
            # newest first by ix_leads_created_at (a CAST, so no OR of two index ranges to sort).
            condition = sa.or_(sa.cast(Lead.in_queue, sa.Integer) == 0, condition)
        clauses = [condition, *(per_row if group in walked else where)]
        if after is not None and group == after.group:
            if newest_first:
                clauses.append(sa.and_(key <= after.key, sa.or_(key < after.key, Lead.id < after.lead_id)))
            else:
                clauses.append(sa.and_(key >= after.key, sa.or_(key > after.key, Lead.id > after.lead_id)))
        order = (key.desc(), Lead.id.desc()) if newest_first else (key.asc(), Lead.id.asc())
        branch = (
            sa.select(sa.literal(group).label("grp"), key.label("key"), Lead.id.label("id"))
            .where(*clauses)
            .order_by(*order)
            .limit(limit + 1)
        )
        # A subquery per branch, so each keeps its own ORDER BY and LIMIT inside UNION ALL.
        sub = branch.subquery(f"g{group}")
        branches.append(sa.select(sub.c.grp, sub.c.key, sub.c.id))
    return sa.union_all(*branches)


def count_statement(scope: sa.ColumnElement[bool], filters: QueueFilters, *, tz: ZoneInfo) -> sa.Select[Any]:
    """Count the leads a view holds, up to ``COUNT_CAP + 1``: bounded work, however many there are."""
    base = [scope, *filter_clauses(filters, tz)]
    if not filters.include_closed:
        base.append(Lead.in_queue == sa.true())
    capped = (
        sa.select(sa.literal(1).label("one")).select_from(Lead).where(*base).limit(COUNT_CAP + 1).subquery()
    )
    return sa.select(sa.func.count()).select_from(capped)


def narrow_statement(
    scope: sa.ColumnElement[bool], filters: QueueFilters, *, now: datetime, tz: ZoneInfo
) -> sa.Select[Any]:
    """Read a narrowed view whole, up to ``COUNT_CAP + 1`` rows of ``(grp, key, id)``: one statement.

    A filter or search that matches a few hundred leads at most is best read once, by the
    filter's own index, with each lead's group and sort key computed from the same conditions
    as the groups' queries (:func:`_groups`); the page is then cut from that small set. Its
    length is also the count. More rows than the cap: the caller reads the page by the
    groups' indexes instead (:func:`page_statement`).
    """
    eod = end_of_local_day(now, tz)
    groups = _groups(now, eod)
    grp = sa.case(
        *[(condition, group) for group, (condition, _k, _n) in groups.items() if group != REST], else_=REST
    )
    key = sa.case(
        *[(condition, k) for group, (condition, k, _n) in groups.items() if group != REST],
        else_=groups[REST][1],
    )
    where = [scope, *filter_clauses(filters, tz)]
    if not filters.include_closed:
        where.append(Lead.in_queue == sa.true())
    return (
        sa.select(grp.label("grp"), key.label("key"), Lead.id.label("id")).where(*where).limit(COUNT_CAP + 1)
    )


def _in_order(rows: Sequence[Any], after: Cursor | None) -> list[tuple[int, datetime, int]]:
    """Put ``(grp, key, id)`` rows in the queue's order, keeping only those after the cursor."""
    by_group: dict[int, list[tuple[datetime, int]]] = {}
    for grp, key, lead_id in rows:
        by_group.setdefault(int(grp), []).append((_aware(key), int(lead_id)))
    ordered: list[tuple[int, datetime, int]] = []
    for group in sorted(by_group):
        if after is not None and group < after.group:
            continue
        newest_first = group == REST
        for key, lead_id in sorted(by_group[group], reverse=newest_first):
            if after is not None and group == after.group:
                past = (
                    (key, lead_id) < (after.key, after.lead_id)
                    if newest_first
                    else (key, lead_id)
                    > (
                        after.key,
                        after.lead_id,
                    )
                )
                if not past:
                    continue
            ordered.append((group, key, lead_id))
    return ordered


class WideViews:
    """Remember, per process, which filtered views matched more than ``COUNT_CAP`` leads.

    A filtered view is first read whole (``narrow_statement``), which is the fastest way for
    the few hundred leads most filters match. A filter that matches thousands (a stage, a
    source, an owner) would pay for that capped read of ``COUNT_CAP + 1`` rows on every page
    before reading the page by the groups' indexes; once seen to be wide, it is counted by the
    capped count instead (an index walk, no rows brought back) for ``ttl``. This only chooses
    the statements: the count and the rows are exact either way. Searches are always read
    whole (a search matching hundreds is rare).
    """

    def __init__(self, ttl: timedelta = timedelta(minutes=5), size: int = 512) -> None:
        self.ttl, self.size = ttl, size
        self._seen: dict[tuple[str, QueueFilters], datetime] = {}

    @staticmethod
    def key(scope: sa.ColumnElement[bool], filters: QueueFilters) -> tuple[str, QueueFilters]:
        return str(scope.compile(compile_kwargs={"literal_binds": True})), filters

    def holds(self, key: tuple[str, QueueFilters] | None) -> bool:
        until = self._seen.get(key) if key is not None else None
        return until is not None and until > datetime.now(UTC)

    def remember(self, key: tuple[str, QueueFilters] | None) -> None:
        if key is None:
            return
        if len(self._seen) >= self.size:
            self._seen.clear()
        self._seen[key] = datetime.now(UTC) + self.ttl

    def forget(self, key: tuple[str, QueueFilters] | None) -> None:
        if key is not None:
            self._seen.pop(key, None)


WIDE_VIEWS = WideViews()


# The columns a queue row shows (templates/leads/_queue_rows.html); the rest stay unread.
ROW_COLUMNS = (
    Lead.first_name,
    Lead.last_name,
    Lead.phone,
    Lead.consent_phone,
    Lead.stage,
    Lead.urgent,
    Lead.not_a_patient,
    Lead.owner_id,
    Lead.calling_user_id,
    Lead.calling_since,
    Lead.created_at,
    Lead.first_contact_due_at,
    Lead.first_contact_at,
    Lead.next_task_due_at,
    Lead.preferred_time,
    Lead.language,
)


def fetch_page(
    scope: sa.ColumnElement[bool],
    filters: QueueFilters,
    *,
    now: datetime,
    tz: ZoneInfo,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> QueuePage:
    """Return one page of the queue in its order, with tags, owner and caller loaded.

    Two or three statements whatever the data size: the page's ids — a narrowed view read
    whole when it holds at most ``COUNT_CAP`` leads (its length is the count), else the capped
    count and one UNION ALL of the four groups —, then the leads by id with their owner and
    caller joined and their active tag codes aggregated.
    """
    found: Sequence[Any] | None = None
    known_wide = WIDE_VIEWS.key(scope, filters) if filters.narrowed and not filters.q else None
    if filters.narrowed and not WIDE_VIEWS.holds(known_wide):
        found = db.session.execute(narrow_statement(scope, filters, now=now, tz=tz)).all()
        count = len(found)
        if count > COUNT_CAP:
            found = None
            WIDE_VIEWS.remember(known_wide)
    else:
        count = db.session.scalar(count_statement(scope, filters, tz=tz)) or 0
        if count <= COUNT_CAP:
            WIDE_VIEWS.forget(known_wide)  # narrow again: read it whole next time
    if found is None:
        # A filter known to be wide stays on this path even if it just shrank: the groups'
        # statement is right for any view, the narrowed read is only faster for a small one.
        wide = count > COUNT_CAP or known_wide is not None
        found = db.session.execute(
            page_statement(scope, filters, now=now, tz=tz, after=after, limit=limit, wide=wide)
        ).all()
    ordered = _in_order(found, after)
    shown, more = ordered[:limit], len(ordered) > limit
    leads: dict[int, Lead] = {}
    tags: dict[int, list[str]] = {}
    if shown:
        # Each lead's active tag codes ride along as one aggregated column (uq_lead_tags_lead_code):
        # the row shows only the codes, so no tag objects and no second statement.
        codes = (
            sa.select(sa.func.aggregate_strings(LeadTag.code, " "))
            .where(LeadTag.lead_id == Lead.id, LeadTag.state == "active")
            .scalar_subquery()
        )
        for lead, joined in db.session.execute(
            sa.select(Lead, codes)
            .where(Lead.id.in_([lead_id for _g, _k, lead_id in shown]))
            .options(
                load_only(*ROW_COLUMNS),
                joinedload(Lead.owner).load_only(User.name),
                joinedload(Lead.calling_user).load_only(User.name),
            )
        ):
            leads[lead.id] = lead
            tags[lead.id] = sorted(joined.split()) if joined else []
    next_cursor = Cursor(*shown[-1]).encode() if more and shown else None
    return QueuePage(
        rows=[(g, leads[i]) for g, _k, i in shown if i in leads],
        tags=tags,
        next_cursor=next_cursor,
        count=min(count, COUNT_CAP),
        count_capped=count > COUNT_CAP,
        search=read_search(filters.q) if filters.q else None,
        now=now,
    )


def _aware(value: datetime | str) -> datetime:
    """Read a sort key back from a UNION (SQLite hands back text there, without the column type)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- what a row shows


def overdue_minutes(lead: Lead, now: datetime) -> int | None:
    """Return how many minutes a lead is past its first-contact due time, or None.

    A closed or "not a patient" lead is due nothing, whenever it was closed (the queue's
    overdue group holds only queued leads too).
    """
    due = lead.first_contact_due_at
    if due is None or lead.first_contact_at is not None or due >= now:
        return None
    if lead.stage == "closed" or lead.not_a_patient:
        return None
    return int((now - due).total_seconds() // 60)


def overdue_label(lead: Lead, now: datetime) -> str | None:
    """Say how long a lead is overdue for first contact ("12 min", "3 h 5 min", "2 d"), or None."""
    minutes = overdue_minutes(lead, now)
    if minutes is None:
        return None
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def caller_of(lead: Lead, now: datetime) -> User | None:
    """Return who is calling the lead right now (a claim older than 15 minutes has expired)."""
    if lead.calling_user_id is None or lead.calling_since is None:
        return None
    if now - lead.calling_since > CALLING_EXPIRES:
        return None
    return lead.calling_user


# --------------------------------------------------------------------------- actions


class QueueRefused(Exception):
    """An action from the queue that cannot be done, with the message to show."""


def claim(lead: Lead, *, user: User, now: datetime, ip: str | None) -> None:
    """Make an unassigned lead the user's own; refuse if someone else took it first.

    A conditional UPDATE, so two people claiming at once cannot both win.

    :raises QueueRefused: the lead already has an owner.
    """
    done = db.session.execute(
        sa.update(Lead)
        .where(Lead.id == lead.id, Lead.owner_id.is_(None))
        .values(owner_id=user.id, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise QueueRefused("Someone else has already claimed this lead.")
    audit.record("lead_claim", user_id=user.id, lead_id=lead.id, detail={"owner_id": user.id}, ip=ip)


def set_calling(lead: Lead, *, user: User, calling: bool, now: datetime) -> None:
    """Show (or stop showing) that the user is calling the lead now.

    Written without a version bump: saying "I'm calling" is not an edit of the lead, and must
    not refuse someone's save of the lead page.
    """
    if calling:
        values: dict[str, Any] = {"calling_user_id": user.id, "calling_since": now}
        where = [Lead.id == lead.id]
    else:
        values = {"calling_user_id": None, "calling_since": None}
        where = [Lead.id == lead.id, Lead.calling_user_id == user.id]  # stop only one's own call
    db.session.execute(
        sa.update(Lead).where(*where).values(**values).execution_options(synchronize_session=False)
    )


def bulk_reassign(
    lead_ids: Sequence[int],
    *,
    owner: User | None,
    actor: User | None,
    now: datetime,
    ip: str | None,
    via: str = "web",
) -> int:
    """Give many leads to one owner (or to nobody), auditing each lead; return how many."""
    ids = list(dict.fromkeys(lead_ids))
    db.session.execute(
        sa.update(Lead)
        .where(Lead.id.in_(ids))
        .values(owner_id=owner.id if owner else None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for lead_id in ids:
        audit.record(
            "lead_reassign",
            user_id=actor.id if actor else None,
            lead_id=lead_id,
            detail={"owner_id": owner.id if owner else None},
            ip=ip,
            via=via,
        )
    return len(ids)


def bulk_not_a_patient(lead_ids: Sequence[int], *, actor: User, now: datetime, ip: str | None) -> int:
    """Mark many leads "not a patient": they leave the queue and the metrics but are kept."""
    ids = list(dict.fromkeys(lead_ids))
    db.session.execute(
        sa.update(Lead)
        .where(Lead.id.in_(ids))
        .values(
            not_a_patient=True, in_queue=False, not_a_patient_reason="Marked from the queue", updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    for lead_id in ids:
        audit.record("lead_not_a_patient", user_id=actor.id, lead_id=lead_id, ip=ip)
    return len(ids)


def with_owner(filters: QueueFilters, owner: int | str | None) -> QueueFilters:
    """Return the filters with the owner resolved (``me`` becomes the user's id)."""
    return replace(filters, owner=owner)

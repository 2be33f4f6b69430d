"""The speed-to-lead clock: business minutes in the clinic's time zone (PRODUCT §4).

Times come in and go out as UTC-aware datetimes; opening hours and holidays are the
clinic's local wall clock. A business minute is a real elapsed minute inside opening
hours, so a day on which the clocks change is still counted right: each day's opening and
closing are placed on the wall clock of that day, then converted to UTC.

The functions are pure: they take a ``BusinessCalendar`` (built from the settings row and
the holidays by ``load_calendar()`` once per request, or by ``BusinessCalendar.build`` in
tests) and never read the database or the clock themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import g, has_app_context
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from crm.extensions import db
from crm.models import ClinicSettings, Holiday
from crm.settings import get_settings

DEFAULT_TZ = "America/Chicago"
DEFAULT_HOURS: dict[str, list[str]] = {str(d): ["08:00", "17:00"] for d in range(5)}
DEFAULT_TARGET_MINUTES = 15
# How far ahead to look for an opening before giving up (a calendar with no open day at all).
_HORIZON_DAYS = 400


class SettingsLike(Protocol):
    """What the clock needs of ``ClinicSettings``."""

    timezone: str
    business_hours: dict[str, list[str]]
    speed_to_lead_minutes: int


@dataclass(frozen=True)
class BusinessCalendar:
    """The clinic's opening hours by weekday (Monday = 0), its holidays and its target."""

    tz: ZoneInfo
    hours: Mapping[int, tuple[time, time | None]] = field(default_factory=dict)  # None close = midnight
    holidays: frozenset[date] = frozenset()
    target_minutes: int = DEFAULT_TARGET_MINUTES

    @classmethod
    def build(
        cls,
        *,
        timezone: str | None = DEFAULT_TZ,
        business_hours: Mapping[str, Sequence[str]] | None = None,
        holidays: Iterable[date] = (),
        target_minutes: int | None = DEFAULT_TARGET_MINUTES,
    ) -> BusinessCalendar:
        """Build a calendar from the settings' own shapes ({"0": ["08:00", "17:00"], ...})."""
        hours: dict[int, tuple[time, time | None]] = {}
        for key, span in (DEFAULT_HOURS if business_hours is None else business_hours).items():
            if not span or len(span) != 2:
                continue
            opens, closes = _parse_time(span[0]), _parse_time(span[1])
            if opens is None or (closes is not None and closes <= opens):
                continue  # an empty or inverted span means closed that day
            hours[int(key)] = (opens, closes)
        return cls(
            tz=ZoneInfo(timezone or DEFAULT_TZ),
            hours=hours,
            holidays=frozenset(holidays),
            target_minutes=DEFAULT_TARGET_MINUTES if target_minutes is None else target_minutes,
        )

    @classmethod
    def from_settings(cls, settings: SettingsLike, holidays: Iterable[date] = ()) -> BusinessCalendar:
        """Build a calendar from a ``ClinicSettings`` row and the holiday dates."""
        return cls.build(
            timezone=settings.timezone,
            business_hours=settings.business_hours,
            holidays=holidays,
            target_minutes=settings.speed_to_lead_minutes,
        )

    def local(self, moment: datetime) -> datetime:
        """Show a UTC moment on the clinic's wall clock."""
        return _aware(moment).astimezone(self.tz)

    def local_date(self, moment: datetime) -> date:
        """Return the clinic's local date at a moment (the tagger's "today")."""
        return self.local(moment).date()

    def opening(self, day: date) -> tuple[datetime, datetime] | None:
        """Return the day's opening and closing as UTC moments, or None when closed."""
        if day in self.holidays or day.weekday() not in self.hours:
            return None
        opens, closes = self.hours[day.weekday()]
        start = datetime.combine(day, opens, tzinfo=self.tz)
        end = (
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
            if closes is None
            else datetime.combine(day, closes, tzinfo=self.tz)
        )
        return start.astimezone(UTC), end.astimezone(UTC)

    def spans_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Yield the open spans (UTC) that end after ``moment``, in order."""
        first = self.local_date(moment) - timedelta(days=1)  # a span may start the day before
        for offset in range(_HORIZON_DAYS):
            span = self.opening(first + timedelta(days=offset))
            if span is not None and span[1] > moment:
                yield span

    def is_open(self, moment: datetime) -> bool:
        """Tell whether the clinic is open at a moment."""
        moment = _aware(moment)
        return any(start <= moment < end for start, end in self._spans_around(moment))

    def _spans_around(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        today = self.local_date(moment)
        for day in (today - timedelta(days=1), today):
            span = self.opening(day)
            if span is not None:
                yield span


def _parse_time(text: str) -> time | None:
    """Read "HH:MM"; "24:00" means midnight at the end of the day (returned as None)."""
    hours, _, minutes = text.strip().partition(":")
    h, m = int(hours), int(minutes or 0)
    if (h, m) == (24, 0):
        return None
    return time(h, m)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the business clock takes aware datetimes")
    return moment.astimezone(UTC)


def add_business_minutes(start: datetime, minutes: float, calendar: BusinessCalendar) -> datetime:
    """Return the moment ``minutes`` of opening hours after ``start`` (UTC).

    Outside opening hours the count starts at the next opening, so zero minutes gives the
    next opening (or ``start`` itself when the clinic is open). A calendar with no open day
    falls back to plain elapsed time.
    """
    cursor = _aware(start)
    remaining = timedelta(minutes=minutes)
    for opens, closes in calendar.spans_from(cursor):
        begin = max(cursor, opens)
        available = closes - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    return _aware(start) + timedelta(minutes=minutes)


def business_minutes_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> float:
    """Count the minutes of opening hours between two moments (negative when b < a)."""
    a, b = _aware(a), _aware(b)
    if b < a:
        return -business_minutes_between(b, a, calendar)
    total = timedelta(0)
    for opens, closes in calendar.spans_from(a):
        if opens >= b:
            break
        total += min(closes, b) - max(opens, a)
    return total.total_seconds() / 60


def next_opening(moment: datetime, calendar: BusinessCalendar) -> datetime:
    """Return ``moment`` when the clinic is open, else its next opening."""
    return add_business_minutes(moment, 0, calendar)


def first_contact_due(
    arrived_at_utc: datetime,
    settings: SettingsLike | BusinessCalendar,
    holidays: Iterable[date] = (),
) -> datetime:
    """Return when a lead arriving now must have been contacted: the target in business minutes."""
    calendar = (
        settings
        if isinstance(settings, BusinessCalendar)
        else BusinessCalendar.from_settings(settings, holidays)
    )
    return add_business_minutes(arrived_at_utc, calendar.target_minutes, calendar)


_HOLIDAYS = "crm_holidays"


def load_calendar() -> BusinessCalendar:
    """Read the clinic's settings and holidays and build its calendar.

    The settings' three values and the holidays are read once per transaction (a webhook's
    intake and its roll-ups both need the calendar); a write to either through the session
    forgets that copy (``install``), and so does the transaction's end. A request that holds
    the settings row reads it instead (an admin's unsaved edit counts). The calendar built
    from those values is kept for the process (``_BUILT``): every value it depends on is read
    again in each transaction, so a change made by another worker counts at once.
    """
    info = db.session.info
    if _HOLIDAYS not in info:
        info[_HOLIDAYS] = (db.session.execute(_settings_statement()).first(), _holidays())
    stored, days = info[_HOLIDAYS]
    row = db.session.identity_map.get(_SETTINGS_KEY)
    if row is None and (stored is None or None in stored):
        row = _settings_row()  # the row made with its defaults
    if row is not None:  # loaded in this session: its unsaved edits count
        stored = (row.timezone, row.business_hours, row.speed_to_lead_minutes)
    timezone, hours, target = stored
    key = (timezone, repr(hours), target, days)
    calendar = _BUILT.get(key)
    if calendar is None:
        calendar = BusinessCalendar.build(
            timezone=timezone, business_hours=hours, holidays=days, target_minutes=target
        )
        if len(_BUILT) >= 8:
            _BUILT.clear()
        _BUILT[key] = calendar
    return calendar


# (time zone, hours, target minutes, holidays) -> the calendar built from them, per process.
_BUILT: dict[tuple[Any, ...], BusinessCalendar] = {}
_SETTINGS_KEY = identity_key(ClinicSettings, 1)


@cache
def _settings_statement() -> sa.Select[Any]:
    s = ClinicSettings
    return sa.select(s.timezone, s.business_hours, s.speed_to_lead_minutes).where(s.id == 1)


def _holidays() -> tuple[date, ...]:
    return tuple(db.session.scalars(sa.select(Holiday.day)))


_CALENDAR_ROWS = (Holiday, ClinicSettings)
_CALENDAR_TABLES = frozenset(model.__tablename__ for model in _CALENDAR_ROWS)


def _forget_holidays(session: Session, *_: Any) -> None:
    session.info.pop(_HOLIDAYS, None)


def _on_flush(session: Session, _context: Any) -> None:
    if any(isinstance(obj, _CALENDAR_ROWS) for obj in [*session.new, *session.dirty, *session.deleted]):
        _forget_holidays(session)


def _on_execute(state: Any) -> None:
    if state.is_select:
        return
    table = getattr(state.statement, "table", None)
    if table is None or table.name in _CALENDAR_TABLES:  # raw SQL might touch them too
        _forget_holidays(state.session)


def _on_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        _forget_holidays(session)


def install() -> None:
    """Attach the holiday cache's invalidation to every SQLAlchemy session (idempotent)."""
    for name, fn in (
        ("after_flush", _on_flush),
        ("do_orm_execute", _on_execute),
        ("after_soft_rollback", _forget_holidays),
        ("after_transaction_end", _on_end),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def _settings_row() -> SettingsLike:
    """Return the settings row; two first uses at once must not fail on creating it."""
    if has_app_context() and "clinic_settings" in g:  # read already: no SAVEPOINT needed
        return get_settings()
    try:
        with db.session.begin_nested():
            return get_settings()
    except IntegrityError:  # another request created row 1 first
        return get_settings()

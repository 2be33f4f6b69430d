"""The speed-to-lead clock: business minutes across nights, weekends, holidays and DST."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask

from crm.business_hours import (
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    first_contact_due,
    load_calendar,
    next_opening,
)
from crm.extensions import db
from crm.models import ClinicSettings, Holiday
from tests.conftest import utc

CHICAGO = ZoneInfo("America/Chicago")
THANKSGIVING = date(2026, 11, 26)


def local(*args: int) -> datetime:
    """A Chicago wall-clock moment (what the front desk sees)."""
    return datetime(*args, tzinfo=CHICAGO)  # type: ignore[misc]


@pytest.fixture
def cal() -> BusinessCalendar:
    return BusinessCalendar.build(holidays=[THANKSGIVING])


@pytest.mark.parametrize(
    ("arrived", "due"),
    [
        # Open: 15 minutes later.
        (local(2026, 3, 3, 10, 0), local(2026, 3, 3, 10, 15)),
        # Before opening on a weekday: 15 minutes after 8:00.
        (local(2026, 3, 3, 2, 0), local(2026, 3, 3, 8, 15)),
        # Just before closing: 10 minutes on Friday, 5 on Monday.
        (local(2026, 2, 27, 16, 50), local(2026, 3, 2, 8, 5)),
        # Saturday: Monday 8:15.
        (local(2026, 2, 28, 11, 0), local(2026, 3, 2, 8, 15)),
        # The evening before Thanksgiving: Friday 8:15.
        (local(2026, 11, 25, 19, 0), local(2026, 11, 27, 8, 15)),
        # Friday night before the spring change (Sunday March 8): Monday 8:15 CDT.
        (local(2026, 3, 6, 18, 0), local(2026, 3, 9, 8, 15)),
        # Friday night before the autumn change (Sunday November 1): Monday 8:15 CST.
        (local(2026, 10, 30, 20, 0), local(2026, 11, 2, 8, 15)),
    ],
)
def test_first_contact_due_counts_business_minutes(
    cal: BusinessCalendar, arrived: datetime, due: datetime
) -> None:
    assert first_contact_due(arrived.astimezone(ZoneInfo("UTC")), cal) == due


def test_due_time_is_in_utc_and_follows_the_clinic_offset_across_dst(cal: BusinessCalendar) -> None:
    # 8:15 in Chicago is 14:15 UTC in winter and 13:15 UTC in summer.
    assert first_contact_due(utc(2026, 3, 7, 0, 0), cal) == utc(2026, 3, 9, 13, 15)
    assert first_contact_due(utc(2026, 10, 31, 1, 0), cal) == utc(2026, 11, 2, 14, 15)
    assert first_contact_due(utc(2026, 3, 7, 0, 0), cal).tzinfo is not None


def test_first_contact_due_takes_the_settings_row_and_holidays() -> None:
    settings = SimpleNamespace(
        timezone="America/Chicago",
        business_hours={str(d): ["09:00", "12:00"] for d in range(5)},
        speed_to_lead_minutes=30,
    )
    due = first_contact_due(local(2026, 11, 25, 11, 50), settings, [THANKSGIVING])
    assert due == local(2026, 11, 27, 9, 20)


def test_business_minutes_between_skips_nights_and_weekends(cal: BusinessCalendar) -> None:
    assert business_minutes_between(local(2026, 3, 6, 16, 0), local(2026, 3, 9, 9, 0), cal) == 120
    assert business_minutes_between(local(2026, 3, 9, 9, 0), local(2026, 3, 6, 16, 0), cal) == -120
    assert business_minutes_between(local(2026, 2, 28, 9, 0), local(2026, 3, 1, 17, 0), cal) == 0


def test_business_minutes_between_skips_a_holiday(cal: BusinessCalendar) -> None:
    minutes = business_minutes_between(local(2026, 11, 25, 16, 0), local(2026, 11, 27, 9, 0), cal)
    assert minutes == 120


@pytest.mark.parametrize(("day", "real_minutes"), [(date(2026, 3, 8), 300), (date(2026, 11, 1), 420)])
def test_a_day_on_which_the_clocks_change_counts_real_minutes(day: date, real_minutes: int) -> None:
    # A clinic open 00:00–06:00 on Sundays: the spring day loses an hour, the autumn day gains one.
    sunday = BusinessCalendar.build(business_hours={"6": ["00:00", "06:00"]})
    start = datetime.combine(day, datetime.min.time(), tzinfo=CHICAGO)
    end = datetime.combine(day, datetime.min.time().replace(hour=12), tzinfo=CHICAGO)
    assert business_minutes_between(start, end, sunday) == real_minutes
    assert add_business_minutes(start, real_minutes, sunday) == local(day.year, day.month, day.day, 6, 0)


def test_add_and_between_agree(cal: BusinessCalendar) -> None:
    start = utc(2026, 3, 5, 20, 30)
    for minutes in (0, 1, 29, 540, 541, 2000):
        end = add_business_minutes(start, minutes, cal)
        assert business_minutes_between(start, end, cal) == minutes


def test_next_opening_and_is_open(cal: BusinessCalendar) -> None:
    assert next_opening(local(2026, 3, 7, 12, 0), cal) == local(2026, 3, 9, 8, 0)
    assert next_opening(local(2026, 3, 9, 12, 0), cal) == local(2026, 3, 9, 12, 0)
    assert cal.is_open(local(2026, 3, 9, 8, 0))
    assert not cal.is_open(local(2026, 3, 9, 17, 0))
    assert not cal.is_open(local(2026, 11, 26, 10, 0))


def test_a_calendar_with_no_open_day_falls_back_to_elapsed_time() -> None:
    closed = BusinessCalendar.build(business_hours={})
    assert add_business_minutes(utc(2026, 3, 9, 12, 0), 15, closed) == utc(2026, 3, 9, 12, 15)


def test_naive_datetimes_are_refused(cal: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        add_business_minutes(datetime(2026, 3, 9, 12, 0), 15, cal)


def test_load_calendar_reads_settings_and_holidays(app: Flask) -> None:
    db.session.add(
        ClinicSettings(
            id=1,
            timezone="America/New_York",
            business_hours={"0": ["07:00", "15:00"]},
            speed_to_lead_minutes=5,
        )
    )
    db.session.add(Holiday(day=date(2026, 3, 9), name="Closed for training"))
    db.session.commit()
    calendar = load_calendar()
    assert calendar.target_minutes == 5
    # Monday 9 March is a holiday: due on Monday 16 March, 7:05 New York time.
    due = first_contact_due(utc(2026, 3, 7, 0, 0), calendar)
    assert due == datetime(2026, 3, 16, 7, 5, tzinfo=ZoneInfo("America/New_York"))


def test_load_calendar_creates_default_settings(app: Flask) -> None:
    calendar = load_calendar()
    assert calendar.tz == CHICAGO
    assert calendar.target_minutes == 15
    assert sorted(calendar.hours) == [0, 1, 2, 3, 4]


def test_load_calendar_sees_another_workers_change(app: Flask) -> None:
    """The calendar is kept per process, yet a change written elsewhere counts at the next transaction."""
    db.session.add(ClinicSettings(id=1, speed_to_lead_minutes=15))
    db.session.commit()
    assert load_calendar().target_minutes == 15
    db.session.commit()
    # Another worker's writes: plain SQL on its own connection, not through this session.
    with db.engine.begin() as conn:
        conn.execute(sa.update(ClinicSettings).values(speed_to_lead_minutes=30, timezone="America/Denver"))
        conn.execute(sa.insert(Holiday).values(day=date(2026, 3, 9), name="Closed"))
    calendar = load_calendar()
    assert (calendar.target_minutes, calendar.tz) == (30, ZoneInfo("America/Denver"))
    assert calendar.holidays == frozenset({date(2026, 3, 9)})
    db.session.commit()
    with db.engine.begin() as conn:
        conn.execute(sa.delete(Holiday))
    assert load_calendar().holidays == frozenset()


def test_load_calendar_sees_an_unsaved_edit(app: Flask) -> None:
    db.session.add(ClinicSettings(id=1, speed_to_lead_minutes=15))
    db.session.commit()
    assert load_calendar().target_minutes == 15
    db.session.get(ClinicSettings, 1).speed_to_lead_minutes = 45  # not flushed
    assert load_calendar().target_minutes == 45

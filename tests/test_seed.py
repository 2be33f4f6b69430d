"""seed-demo: the shape of the demo data (PRODUCT §2–§4, issue 3), checked at a small size."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask

from crm.business_hours import add_business_minutes, load_calendar
from crm.extensions import db
from crm.models import (
    STAGES,
    Call,
    Lead,
    LeadSearchTerm,
    LeadTag,
    Note,
    StageChange,
    Task,
    User,
)
from crm.passwords import check_policy, verify_password
from crm.phones import normalize
from crm.seed import DEMO_LOGINS, seed_demo
from crm.text import search_terms

CHICAGO = ZoneInfo("America/Chicago")
N_LEADS = 400
N_CALLS = 3000
NOW = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)


@pytest.fixture
def seeded(app: Flask, frozen_clock: Callable[[datetime], None]) -> str:
    """The test's database with 400 leads and 3,000 calls, as of a fixed "now"."""
    frozen_clock(NOW)
    return seed_demo(n_leads=N_LEADS, n_calls=N_CALLS, seed=5457, echo=lambda _line: None)


def _all(stmt: Any) -> list[Any]:
    return list(db.session.execute(stmt))


def test_it_makes_the_requested_counts(seeded: str) -> None:
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == N_LEADS
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == N_CALLS
    assert f"{N_LEADS:,} leads" in seeded and f"{N_CALLS:,} calls" in seeded


def test_demo_logins_exist_one_per_role_and_pass_the_policy(seeded: str) -> None:
    roles = {role for _, role, _, _ in DEMO_LOGINS}
    assert roles == {"front_desk", "surgeon", "manager", "admin"}
    for email, role, name, password in DEMO_LOGINS:
        check_policy(password, email=email, name=name)
        user = db.session.scalar(sa.select(User).where(User.email == email))
        assert user is not None and user.role == role and user.active
        assert verify_password(user.password_hash, password)
    counts = Counter(db.session.scalars(sa.select(User.role)))
    assert counts["front_desk"] >= 3 and counts["surgeon"] >= 2


def test_about_a_fifth_of_calls_are_missed(seeded: str) -> None:
    missed = db.session.scalar(sa.select(sa.func.count()).where(Call.missed))
    assert 0.17 <= missed / N_CALLS <= 0.23


def test_missed_flag_matches_direction_status_and_voicemail(seeded: str) -> None:
    rows = _all(sa.select(Call.direction, Call.status, Call.answered, Call.voicemail, Call.missed))
    for direction, status, answered, voicemail, missed in rows:
        unanswered = status in ("no-answer", "busy", "failed", "canceled") or (voicemail and not answered)
        assert missed == (direction == "inbound" and unanswered)
        assert not (answered and voicemail)


def _red_flag_leads() -> set[int]:
    return set(
        db.session.scalars(
            sa.select(LeadTag.lead_id).where(LeadTag.code.like("red_flag:%"), LeadTag.state == "active")
        )
    )


def test_about_one_percent_of_leads_have_a_red_flag(seeded: str) -> None:
    urgent = db.session.scalar(sa.select(sa.func.count()).where(Lead.urgent))
    assert 1 <= len(_red_flag_leads()) <= 0.03 * N_LEADS
    assert urgent <= len(_red_flag_leads())


def test_urgent_leads_have_a_red_flag_and_a_cleared_flag_has_its_note(seeded: str) -> None:
    red = _red_flag_leads()
    urgent = set(db.session.scalars(sa.select(Lead.id).where(Lead.urgent)))
    assert urgent <= red
    cleared_notes = set(
        db.session.scalars(sa.select(Note.lead_id).where(Note.body.like("Urgent flag cleared:%")))
    )
    assert red - urgent == cleared_notes


def test_about_five_percent_are_repeat_callers(seeded: str) -> None:
    inbound = Counter(
        db.session.scalars(
            sa.select(Call.lead_id).where(Call.direction == "inbound", Call.lead_id.is_not(None))
        )
    )
    repeat = sum(1 for n in inbound.values() if n >= 2)
    assert 0.025 * N_LEADS <= repeat <= 0.08 * N_LEADS


def test_most_calls_belong_to_a_lead(seeded: str) -> None:
    linked = db.session.scalar(sa.select(sa.func.count()).where(Call.lead_id.is_not(None)))
    assert linked > N_CALLS / 2


def test_every_stage_is_present(seeded: str) -> None:
    present = set(db.session.scalars(sa.select(Lead.stage).distinct()))
    assert present == set(STAGES)


def test_the_funnel_narrows(seeded: str) -> None:
    pairs = _all(sa.select(StageChange.lead_id, StageChange.to_stage).distinct())
    ever = Counter(stage for _lead, stage in pairs)
    assert (
        ever["contacted"]
        > ever["surgical_review"]
        > ever["consult_scheduled"]
        >= ever["surgery_scheduled"]
        > 0
    )


def test_each_stage_history_starts_at_new_and_ends_at_the_current_stage(seeded: str) -> None:
    history: dict[int, list[Any]] = defaultdict(list)
    for row in _all(sa.select(StageChange).order_by(StageChange.lead_id, StageChange.id)):
        history[row[0].lead_id].append(row[0])
    leads = _all(sa.select(Lead.id, Lead.stage, Lead.stage_entered_at, Lead.created_at))
    assert len(history) == len(leads)
    for lead_id, stage, entered, created in leads:
        changes = history[lead_id]
        assert changes[0].from_stage is None and changes[0].to_stage == "new"
        assert changes[0].at == created
        assert changes[-1].to_stage == stage and changes[-1].at == entered
        for before, after in pairwise(changes):
            assert after.from_stage == before.to_stage
            assert after.at > before.at


def test_histories_include_skips_moves_back_and_reopenings(seeded: str) -> None:
    order = {stage: i for i, stage in enumerate(STAGES)}
    moves = _all(sa.select(StageChange.from_stage, StageChange.to_stage, StageChange.reason))
    skips = [
        m for m in moves if m[0] and m[1] != "closed" and m[0] != "closed" and order[m[1]] > order[m[0]] + 1
    ]
    back = [m for m in moves if m[0] and m[0] != "closed" and m[1] != "closed" and order[m[1]] < order[m[0]]]
    reopen = [m for m in moves if m[0] == "closed"]
    assert skips and back and reopen
    assert all(m[2] for m in back + reopen), "going back and reopening need a reason"


def test_closed_leads_have_close_reasons(seeded: str) -> None:
    closed = _all(
        sa.select(Lead.id, Lead.close_reason, Lead.closed_from_stage, Lead.in_queue).where(
            Lead.stage == "closed"
        )
    )
    assert closed
    for _id, reason, closed_from, in_queue in closed:
        assert reason is not None and closed_from not in (None, "closed") and not in_queue
    closings = _all(sa.select(StageChange.close_reason).where(StageChange.to_stage == "closed"))
    assert all(reason for (reason,) in closings)
    open_with_reason = db.session.scalar(
        sa.select(sa.func.count()).where(Lead.stage != "closed", Lead.close_reason.is_not(None))
    )
    assert open_with_reason == 0


def test_open_phone_key_is_the_phone_of_open_primary_leads_only(seeded: str) -> None:
    rows = _all(
        sa.select(
            Lead.phone, Lead.open_phone_key, Lead.stage, Lead.merged_into_id, Lead.possible_duplicate_of_id
        )
    )
    for phone, key, stage, merged, possible in rows:
        primary_open = stage != "closed" and merged is None and possible is None
        assert key == (phone if primary_open else None)


def test_surgical_review_and_beyond_pass_the_gate(seeded: str) -> None:
    beyond = ("surgical_review", "consult_scheduled", "consult_completed", "surgery_scheduled")
    tags: dict[int, set[str]] = defaultdict(set)
    for lead_id, code in _all(sa.select(LeadTag.lead_id, LeadTag.code).where(LeadTag.state == "active")):
        tags[lead_id].add(code)
    overridden = set(db.session.scalars(sa.select(StageChange.lead_id).where(StageChange.override)))
    leads = db.session.scalars(sa.select(Lead).where(Lead.stage.in_(beyond))).all()
    assert leads
    for lead in leads:
        t = tags[lead.id]
        assert (
            "history:failed_pt" in t
            or any(c.startswith("red_flag:") for c in t)
            or (t & {"condition:herniated_disc", "condition:stenosis"} and lead.imaging_type)
            or lead.conservative_care_helped is False
            or lead.id in overridden
        ), f"lead {lead.id} passed the surgical-review gate without a reason"
        if lead.stage != "surgical_review":
            assert lead.surgeon_id is not None


def test_first_contact_due_is_set_until_contact_in_business_minutes(seeded: str) -> None:
    clock = load_calendar()
    rows = _all(sa.select(Lead.created_at, Lead.first_contact_at, Lead.first_contact_due_at))
    uncontacted = [r for r in rows if r[1] is None]
    assert uncontacted
    for created, contact, due in rows:
        if contact is None:
            assert due == add_business_minutes(created, clock.target_minutes, clock)
        else:
            assert due is None and contact >= created


def test_first_attempt_is_the_first_outbound_call(seeded: str) -> None:
    first_out = dict(
        _all(
            sa.select(Call.lead_id, sa.func.min(Call.started_at))
            .where(Call.direction == "outbound", Call.lead_id.is_not(None))
            .group_by(Call.lead_id)
        )
    )
    for lead_id, attempt in _all(sa.select(Lead.id, Lead.first_attempt_at)):
        assert attempt == first_out.get(lead_id)


def test_call_sids_are_unique_twilio_style(seeded: str) -> None:
    sids = list(db.session.scalars(sa.select(Call.call_sid)))
    assert len(sids) == len(set(sids)) == N_CALLS
    assert all(re.fullmatch(r"CA[0-9a-f]{32}", sid) for sid in sids)


def test_phones_are_valid_e164(seeded: str) -> None:
    phones = set(db.session.scalars(sa.select(Lead.phone)))
    calls = _all(sa.select(Call.from_number, Call.to_number))
    numbers = phones | {n for pair in calls for n in pair if n is not None}
    assert all(normalize(n) == n for n in numbers)
    lead_rows = _all(sa.select(Lead.phone, Lead.phone_last7, Lead.phone_last4))
    assert all(p[-7:] == l7 and p[-4:] == l4 for p, l7, l4 in lead_rows)


def test_clinic_lines_are_on_the_right_side_of_each_call(seeded: str) -> None:
    lines = {"+19724995457", "+12145550100"}
    for direction, frm, to, line in _all(
        sa.select(Call.direction, Call.from_number, Call.to_number, Call.line)
    ):
        assert line in lines
        assert (to if direction == "inbound" else frm) == line


def test_every_lead_has_its_name_search_terms(seeded: str) -> None:
    terms: dict[int, set[str]] = defaultdict(set)
    for lead_id, term in _all(sa.select(LeadSearchTerm.lead_id, LeadSearchTerm.term)):
        terms[lead_id].add(term)
    nameless = 0
    for lead_id, first, last in _all(sa.select(Lead.id, Lead.first_name, Lead.last_name)):
        assert terms[lead_id] == set(search_terms(first, last))
        nameless += not terms[lead_id]
    assert nameless == 3  # this morning's voicemails: callers who left no name yet


def test_local_hour_and_weekday_match_started_at_in_chicago(seeded: str) -> None:
    for started, hour, weekday in _all(sa.select(Call.started_at, Call.local_hour, Call.local_weekday)):
        local = started.astimezone(CHICAGO)
        assert (local.hour, local.weekday()) == (hour, weekday)


def test_calls_are_mostly_in_business_hours(seeded: str) -> None:
    rows = _all(sa.select(Call.local_hour, Call.local_weekday))
    business = sum(1 for hour, day in rows if 8 <= hour < 17 and day < 5)
    weekend = sum(1 for _, day in rows if day >= 5)
    assert 0.8 <= business / len(rows) <= 0.97
    assert weekend > 0


def test_calls_spread_over_eighteen_months_in_both_dst_offsets(seeded: str) -> None:
    starts = list(db.session.scalars(sa.select(Call.started_at)))
    assert max(starts) <= NOW and min(starts) <= NOW - timedelta(days=500)
    offsets = {s.astimezone(CHICAGO).utcoffset() for s in starts}
    assert offsets == {timedelta(hours=-5), timedelta(hours=-6)}
    months = {(s.year, s.month) for s in starts}
    assert len(months) >= 18


def test_missed_calls_have_one_callback_task_each(seeded: str) -> None:
    missed = set(db.session.scalars(sa.select(Call.id).where(Call.missed)))
    tasks = Counter(db.session.scalars(sa.select(Task.call_id).where(Task.kind == "callback")))
    assert set(tasks) == missed and set(tasks.values()) == {1}


def test_rerunning_adds_data_without_breaking_uniqueness(seeded: str) -> None:
    again = seed_demo(n_leads=100, n_calls=500, seed=5457, echo=lambda _line: None)
    assert "100 leads" in again
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == N_LEADS + 100
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 9


def test_seed_demo_command_exits_zero(runner: Any) -> None:
    result = runner.invoke(args=["seed-demo", "--leads", "50", "--calls", "200"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 50
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 200

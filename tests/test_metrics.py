"""Dashboard numbers on small hand-built histories whose right answers are worked out here."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm import metrics
from crm.extensions import db
from crm.models import Call, StageChange
from tests.conftest import utc

MARCH = metrics.Period(utc(2026, 3, 1), utc(2026, 4, 1))  # UTC midnights: the raw queries answer


def local_days(first: date, end: date) -> metrics.Period:
    """Whole clinic-local days ``[first, end)``: the roll-ups answer."""
    tz = ZoneInfo("America/Chicago")
    return metrics.Period(datetime.combine(first, time(), tz), datetime.combine(end, time(), tz))


LOCAL_MARCH = local_days(date(2026, 3, 1), date(2026, 4, 1))
IN_MARCH = utc(2026, 3, 10, 15, 0)


def history(lead, *stages, actor=None, start=IN_MARCH):
    """Write a lead's stage history: one move per step, a minute apart, starting at ``start``."""
    previous = "new"
    for i, stage in enumerate(stages):
        db.session.add(
            StageChange(
                lead_id=lead.id,
                from_stage=previous,
                to_stage=stage,
                actor_id=actor.id if actor else None,
                at=start + timedelta(minutes=i + 1),
            )
        )
        previous = stage
    lead.stage = stages[-1] if stages else "new"
    db.session.commit()


def call(**values):
    """Add one call (inbound, completed, Monday 9:00 clinic time, in March unless told)."""
    row = Call(
        **{
            "direction": "inbound",
            "status": "completed",
            "started_at": IN_MARCH,
            "local_weekday": 0,
            "local_hour": 9,
            **values,
        }
    )
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture
def pipeline_cohort(make_lead):
    """Five March leads that count, two that don't, one from February.

    skipper: new → contacted → evaluation (skipped conservative care and PT): reached 4 (evaluation)
    goes_back: → contacted → conservative_care → contacted:                    reached 2
    reopened: → contacted → closed → contacted:                                reached 1
    untouched: no history:                                                     reached 0
    surgical: → contacted → surgical_review → consult_scheduled → consult_completed
              → surgery_scheduled:                                             reached 8
    merged (into surgical) and not_a_patient: all the way, but excluded; february: outside.
    """
    leads = {
        "skipper": make_lead(source="phone", created_at=IN_MARCH, tags=["condition:stenosis"]),
        "goes_back": make_lead(source="phone", created_at=IN_MARCH, tags=["region:lower"]),
        "reopened": make_lead(source="web_form", created_at=IN_MARCH),
        "untouched": make_lead(source="web_form", created_at=IN_MARCH),
        "surgical": make_lead(source="referral", created_at=IN_MARCH, tags=["condition:stenosis"]),
        "february": make_lead(source="referral", created_at=utc(2026, 2, 20)),
    }
    leads["merged"] = make_lead(source="referral", created_at=IN_MARCH, merged_into_id=leads["surgical"].id)
    leads["not_a_patient"] = make_lead(source="referral", created_at=IN_MARCH, not_a_patient=True)
    history(leads["skipper"], "contacted", "evaluation")
    history(leads["goes_back"], "contacted", "conservative_care", "contacted")
    history(leads["reopened"], "contacted", "closed", "contacted")
    to_surgery = (
        "contacted",
        "surgical_review",
        "consult_scheduled",
        "consult_completed",
        "surgery_scheduled",
    )
    for name in ("surgical", "merged", "not_a_patient", "february"):
        history(leads[name], *to_surgery)
    return leads


def test_funnel_counts_skipped_stages_and_keeps_what_a_lead_reached(pipeline_cohort):
    rows = metrics.funnel(MARCH)

    leads = {r["stage"]: r["leads"] for r in rows}
    # By hand: reached positions are 4, 2, 1, 0, 8 → new 5, contacted 4 (all but untouched),
    # conservative care 3 (skipper by skipping, goes_back, surgical), PT 2, evaluation 2,
    # then only surgical.
    assert leads == {
        "new": 5,
        "contacted": 4,
        "conservative_care": 3,
        "physical_therapy": 2,
        "evaluation": 2,
        "surgical_review": 1,
        "consult_scheduled": 1,
        "consult_completed": 1,
        "surgery_scheduled": 1,
    }
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["new"]["of_previous"] is None
    assert by_stage["contacted"]["of_previous"] == pytest.approx(4 / 5)
    assert by_stage["conservative_care"]["of_previous"] == pytest.approx(3 / 4)
    assert by_stage["surgical_review"]["of_previous"] == pytest.approx(1 / 2)
    assert by_stage["surgery_scheduled"]["of_total"] == pytest.approx(1 / 5)


def test_funnel_filters_narrow_the_cohort(pipeline_cohort):
    by_source = {r["stage"]: r["leads"] for r in metrics.funnel(MARCH, metrics.Filters(source="phone"))}
    by_tag = {
        r["stage"]: r["leads"] for r in metrics.funnel(MARCH, metrics.Filters(tag="condition:stenosis"))
    }

    assert (by_source["new"], by_source["contacted"], by_source["evaluation"]) == (2, 2, 1)
    assert (by_tag["new"], by_tag["evaluation"], by_tag["surgery_scheduled"]) == (2, 2, 1)


def test_an_empty_period_gives_zeros_not_errors(pipeline_cohort):
    rows = metrics.funnel(metrics.Period(utc(2025, 1, 1), utc(2025, 2, 1)))

    assert [r["leads"] for r in rows] == [0] * 9
    assert all(r["of_previous"] is None for r in rows)


def test_conversion_by_source_and_by_tag(pipeline_cohort):
    by_source = {r["group"]: r for r in metrics.conversion_by("source", MARCH)}
    by_tag = {r["group"]: r for r in metrics.conversion_by("tag", MARCH)}

    # phone: skipper, goes_back (neither consulted); web_form: reopened, untouched; referral: surgical.
    assert {g: (r["leads"], r["consults"], r["surgeries"]) for g, r in by_source.items()} == {
        "phone": (2, 0, 0),
        "web_form": (2, 0, 0),
        "referral": (1, 1, 1),
    }
    assert by_source["referral"]["surgery_rate"] == 1.0
    # stenosis: skipper and surgical → half reached consult and surgery; lower: goes_back.
    assert (by_tag["condition:stenosis"]["leads"], by_tag["condition:stenosis"]["consult_rate"]) == (2, 0.5)
    assert by_tag["condition:stenosis"]["surgery_rate"] == 0.5
    assert (by_tag["region:lower"]["leads"], by_tag["region:lower"]["consult_rate"]) == (1, 0.0)


SPEED_KEYS = ("contacted", "waiting", "median", "p90", "within")


def speed(period, filters=metrics.NO_FILTERS):
    result = metrics.speed_to_lead(period, filters)
    return {k: result[k] for k in SPEED_KEYS}


def test_speed_to_lead_median_and_p90_interpolate_like_percentile_cont(make_lead):
    # IN_MARCH is Tuesday 10:00 in Chicago: the clinic is open, so business = wall minutes.
    for minutes in (40, 10, 100, 30, 20):
        make_lead(created_at=IN_MARCH, first_contact_at=IN_MARCH + timedelta(minutes=minutes))
    make_lead(created_at=IN_MARCH)  # not contacted yet
    other = make_lead(created_at=IN_MARCH)
    make_lead(created_at=IN_MARCH, first_contact_at=IN_MARCH + timedelta(minutes=1), merged_into_id=other.id)
    make_lead(created_at=utc(2026, 2, 2, 15), first_contact_at=utc(2026, 2, 2, 15, 1))  # February

    # Sorted: 10 20 30 40 100, n = 5. Median: rank (5-1)*0.5 = 2 → 30.
    # p90: rank (5-1)*0.9 = 3.6 → 40 + 0.6 * (100 - 40) = 76. Within 15 minutes: 10 only, 1 of 5.
    # 100 minutes falls in the 5-minute bins above 30 minutes (its bin is 100 itself).
    expected = {"contacted": 5, "waiting": 2, "median": 30.0, "p90": 76.0, "within": 0.2}
    assert speed(MARCH) == expected  # raw: the period is not whole clinic days
    assert speed(LOCAL_MARCH) == expected  # the roll-ups


def test_speed_to_lead_of_an_even_cohort_interpolates_the_median(make_lead):
    for minutes in (10, 20):
        make_lead(created_at=IN_MARCH, first_contact_at=IN_MARCH + timedelta(minutes=minutes))

    result = metrics.speed_to_lead(MARCH)

    # (2-1)*0.5 = 0.5 → 15; (2-1)*0.9 = 0.9 → 10 + 0.9*10 = 19.
    assert (result["median"], result["p90"]) == (15.0, 19.0)


def test_speed_to_lead_with_nobody_contacted(make_lead):
    make_lead(created_at=IN_MARCH)

    assert speed(MARCH) == {"contacted": 0, "waiting": 1, "median": None, "p90": None, "within": None}
    assert metrics.speed_to_lead(LOCAL_MARCH)["by_week"] == []


def test_speed_to_lead_counts_business_minutes_across_a_weekend_and_a_dst_change(make_user, make_lead):
    """Chicago moves its clocks forward on Sunday 8 March 2026 (CST, UTC-6 → CDT, UTC-5).

    Opening hours are the default Monday–Friday 8:00–17:00, and the target is 15 minutes.
    - friday: arrives Friday 6 March 16:50 CST (22:50 UTC), called Monday 9 March 8:10 CDT
      (13:10 UTC): 10 minutes on Friday + 10 on Monday = 20 (the wall clock says 3,740).
    - saturday: arrives Saturday 7 March 10:00 CST (16:00 UTC), reached Monday 9:00 CDT (14:00
      UTC): nothing counts until Monday 8:00, so 60.
    - tuesday: arrives Tuesday 10 March 10:00 CDT (15:00 UTC), called 10:05: 5.
    Median of 5, 20, 60 is 20; p90: rank 1.8 → 20 + 0.8 × (60 − 20) = 52; within 15: 1 of 3.
    Week of Monday 2 March: 20 and 60 → median 40, p90 rank 0.9 → 20 + 0.9 × 40 = 56, none in
    target. Week of Monday 9 March: 5 → all in target. Credit: Ana called the Friday lead (an
    answered call), Bo moved the Saturday one to contacted; the Tuesday one has neither.
    """
    ana, bo = make_user("front_desk", name="Ana"), make_user("front_desk", name="Bo")
    friday = make_lead(created_at=utc(2026, 3, 6, 22, 50), first_contact_at=utc(2026, 3, 9, 13, 10))
    saturday = make_lead(created_at=utc(2026, 3, 7, 16), first_contact_at=utc(2026, 3, 9, 14))
    make_lead(created_at=utc(2026, 3, 10, 15), first_contact_at=utc(2026, 3, 10, 15, 5))
    call(lead_id=friday.id, answered=True, handled_by_id=ana.id, started_at=utc(2026, 3, 9, 13, 10))
    history(saturday, "contacted", actor=bo, start=utc(2026, 3, 9, 13, 59))
    period = local_days(date(2026, 3, 2), date(2026, 3, 16))

    for p in (period, metrics.Period(utc(2026, 3, 2), utc(2026, 3, 16))):  # roll-ups, then raw
        result = metrics.speed_to_lead(p)
        assert {k: result[k] for k in SPEED_KEYS} == {
            "contacted": 3,
            "waiting": 0,
            "median": 20.0,
            "p90": 52.0,
            "within": 1 / 3,
        }
        weeks = [(r["week"], r["contacted"], r["median"], r["p90"], r["within"]) for r in result["by_week"]]
        assert weeks == [(date(2026, 3, 2), 2, 40.0, 56.0, 0.0), (date(2026, 3, 9), 1, 5.0, 5.0, 1.0)]
        staff = {r["name"]: (r["contacted"], r["median"]) for r in result["by_staff"]}
        assert staff == {"Ana": (1, 20.0), "Bo": (1, 60.0), "(unknown)": (1, 5.0)}


def test_missed_call_rate_counts_voicemails_and_leaves_outbound_attempts_out(app):
    call(answered=True)  # answered: Monday 9
    call(status="no-answer", missed=True)  # missed: Monday 9
    call(voicemail=True, missed=True, recording_url="https://x.test/r", local_weekday=1, local_hour=14)
    call(direction="outbound", status="no-answer", local_weekday=1, local_hour=14)  # an attempt
    call(started_at=utc(2026, 4, 2), status="no-answer", missed=True)  # April: outside

    result = metrics.calls(MARCH)

    # Inbound in March: 3, of which missed: the no-answer and the voicemail → 2/3.
    assert (result["inbound"], result["missed"]) == (3, 2)
    assert result["missed_rate"] == pytest.approx(2 / 3)
    # The grid counts every March call, outbound too.
    assert sorted((c["weekday"], c["hour"], c["calls"]) for c in result["cells"]) == [(0, 9, 2), (1, 14, 2)]
    assert result["total"] == 4


def test_staff_credit_goes_to_whoever_acted_not_the_owner(make_user, make_lead):
    ana, mo = make_user("front_desk", name="Ana"), make_user("manager", name="Mo")
    a, b = make_lead(owner_id=mo.id), make_lead(owner_id=mo.id)
    gone = make_lead(owner_id=mo.id, merged_into_id=a.id)
    history(a, "contacted", "surgical_review", actor=ana)
    history(b, "contacted", actor=mo)
    history(gone, "contacted", actor=mo)  # a merged-away lead's move counts for nobody
    db.session.add(
        StageChange(
            lead_id=a.id,
            from_stage="surgical_review",
            to_stage="surgery_scheduled",
            actor_id=ana.id,
            at=IN_MARCH + timedelta(hours=1),
        )
    )
    db.session.commit()
    call(handled_by_id=ana.id, answered=True, lead_id=a.id)
    call(handled_by_id=ana.id, answered=True, direction="outbound", lead_id=b.id)
    call(handled_by_id=ana.id, status="no-answer", direction="outbound")  # an attempt, not a contact
    call(handled_by_id=mo.id, answered=True, started_at=utc(2026, 5, 1))  # May: outside

    rows = {r["name"]: r for r in metrics.staff(MARCH)}

    assert (rows["Ana"]["contacts"], rows["Ana"]["moves"], rows["Ana"]["conversions"]) == (2, 3, 1)
    assert (rows["Mo"]["contacts"], rows["Mo"]["moves"], rows["Mo"]["conversions"]) == (0, 1, 0)


def test_stage_aging_lists_stalled_open_leads_oldest_first(make_lead):
    now = utc(2026, 3, 20, 12, 0)
    # Default limits: new 1 day, contacted 7 days.
    new_3d = make_lead(stage="new", stage_entered_at=now - timedelta(days=3))
    contacted_10d = make_lead(stage="contacted", stage_entered_at=now - timedelta(days=10))
    make_lead(stage="contacted", stage_entered_at=now - timedelta(days=2))  # within its limit
    make_lead(stage="closed", stage_entered_at=now - timedelta(days=90), in_queue=False)
    make_lead(stage="new", stage_entered_at=now - timedelta(days=5), merged_into_id=new_3d.id)

    result = metrics.stage_aging(now=now)

    assert [r["id"] for r in result["leads"]] == [contacted_10d.id, new_3d.id]
    assert [r["days"] for r in result["leads"]] == [10, 3]
    assert result["by_stage"] == {"contacted": 1, "new": 1}


def test_stage_aging_under_a_tag_filter_counts_and_lists_only_leads_with_the_tag_active(make_lead):
    now = utc(2026, 3, 20, 12, 0)
    tagged = make_lead(stage="contacted", stage_entered_at=now - timedelta(days=10), tags=["region:lower"])
    make_lead(stage="contacted", stage_entered_at=now - timedelta(days=12), tags=["region:upper"])
    removed = make_lead(stage="new", stage_entered_at=now - timedelta(days=4), tags=["region:lower"])
    removed.tags[0].state = "removed"
    db.session.commit()

    result = metrics.stage_aging(metrics.Filters(tag="region:lower"), now=now)

    assert [r["id"] for r in result["leads"]] == [tagged.id]
    assert result["by_stage"] == {"contacted": 1}


def test_a_surgeons_own_numbers(make_user, make_lead):
    me, other, desk = make_user("surgeon"), make_user("surgeon"), make_user("front_desk")
    accepted, declined, waiting = (make_lead(surgeon_id=me.id) for _ in range(3))
    theirs = make_lead(surgeon_id=other.id)
    for lead in (accepted, declined, waiting, theirs):
        history(lead, "contacted", "surgical_review", actor=desk)  # in review at IN_MARCH + 2 min
    for lead, to, days in ((accepted, "consult_scheduled", 1), (declined, "closed", 3)):
        db.session.add(
            StageChange(
                lead_id=lead.id,
                from_stage="surgical_review",
                to_stage=to,
                actor_id=me.id,
                at=IN_MARCH + timedelta(days=days),
            )
        )
    # Two of my consults completed in March; one went on to surgery. The other surgeon's doesn't count.
    operated, thinking, elsewhere = (
        make_lead(surgeon_id=me.id),
        make_lead(surgeon_id=me.id),
        make_lead(surgeon_id=other.id),
    )
    history(operated, "consult_completed", "surgery_scheduled", actor=desk)
    history(thinking, "consult_completed", actor=desk)
    history(elsewhere, "consult_completed", "surgery_scheduled", actor=desk)
    db.session.commit()

    # Received: my three (not the other surgeon's); accepted 1; declined 1.
    # Days to decision: 1 day − 2 minutes and 3 days − 2 minutes: median 2.0 (1.9986…), longest 3.0.
    assert metrics.surgeon_numbers(me.id, MARCH) == {
        "received": 3,
        "accepted": 1,
        "declined": 1,
        "decisions": 2,
        "decision_days_median": 2.0,
        "decision_days_max": 3.0,
        "consults": 2,
        "to_surgery": 1,
    }

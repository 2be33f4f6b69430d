"""The dashboard page and its CSV exports: roles, live numbers, empty states, audited exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm import pipeline
from crm.extensions import db
from crm.models import AuditEvent, Call
from tests.conftest import utc

NOW = utc(2026, 3, 18, 16, 0)  # a Wednesday, 11:00 in Chicago


@pytest.fixture(autouse=True)
def at_noon(frozen_clock):
    frozen_clock(NOW)


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, f"no #{element_id} in the page"
    return match.group(1).strip()


def funnel_row(html: str, stage: str) -> str:
    match = re.search(rf"<tr><td>{stage}</td><td>(\d+)</td>", html)
    assert match, f"no funnel row for {stage}"
    return match.group(1)


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/export/funnel.csv"])
def test_the_front_desk_is_refused(client, login_as, path):
    login_as("front_desk")

    assert client.get(path).status_code == 403


def test_a_surgeon_sees_only_their_own_numbers(client, login_as, make_user, make_lead):
    me = login_as("surgeon")
    desk, other = make_user("front_desk"), make_user("surgeon")
    mine, theirs = make_lead(surgeon_id=me.id), make_lead(surgeon_id=other.id)
    for lead in (mine, theirs):
        db.session.add_all(
            [
                pipeline_change(lead.id, "new", "contacted", desk.id, NOW - timedelta(days=2)),
                pipeline_change(lead.id, "contacted", "surgical_review", desk.id, NOW - timedelta(days=1)),
            ]
        )
    db.session.add(pipeline_change(mine.id, "surgical_review", "consult_scheduled", me.id, NOW))
    db.session.commit()

    html = client.get("/dashboard").get_data(as_text=True)

    assert (
        text_of(html, "mine-received"),
        text_of(html, "mine-accepted"),
        text_of(html, "mine-declined"),
    ) == (
        "1",
        "1",
        "0",
    )
    assert "Funnel" not in html and "plotly" not in html
    assert client.get("/dashboard/export/staff.csv").status_code == 403


def pipeline_change(lead_id, from_stage, to_stage, actor_id, at):
    from crm.models import StageChange

    return StageChange(lead_id=lead_id, from_stage=from_stage, to_stage=to_stage, actor_id=actor_id, at=at)


def test_a_new_call_and_a_stage_move_change_the_numbers(client, login_as, make_user, make_lead):
    login_as("manager")
    desk = make_user("front_desk")
    lead = make_lead(created_at=NOW - timedelta(days=3))
    before = client.get("/dashboard").get_data(as_text=True)
    assert text_of(before, "kpi-calls") == "0"
    assert text_of(before, "kpi-missed") == "No inbound calls"
    assert (funnel_row(before, "New"), funnel_row(before, "Contacted")) == ("1", "0")

    db.session.add(
        Call(
            direction="inbound",
            status="no-answer",
            missed=True,
            started_at=NOW - timedelta(hours=1),
            local_weekday=2,
            local_hour=10,
            lead_id=lead.id,
        )
    )
    pipeline.move(db.session.get(type(lead), lead.id), pipeline.MoveRequest(to="contacted"), actor=desk)
    db.session.commit()
    after = client.get("/dashboard").get_data(as_text=True)

    assert text_of(after, "kpi-calls") == "1"
    assert text_of(after, "kpi-missed") == "1 of 1 (100.0%)"
    assert (funnel_row(after, "New"), funnel_row(after, "Contacted")) == ("1", "1")
    assert 'id="fig-calls"' in after and 'data-figure="fig-funnel"' in after


def test_an_empty_period_shows_friendly_empty_states(client, login_as):
    login_as("admin")

    html = client.get("/dashboard?range=custom&from=2020-01-01&to=2020-01-31").get_data(as_text=True)

    assert "No leads were created in this period" in html
    assert "No calls in this period." in html
    assert "data-figure" not in html
    assert 'value="2020-01-01"' in html and 'value="2020-01-31"' in html


def test_filters_live_in_the_url(client, login_as, make_lead):
    login_as("manager")
    make_lead(source="phone", created_at=NOW - timedelta(days=1))
    make_lead(source="web_form", created_at=NOW - timedelta(days=1), tags=["condition:stenosis"])

    by_source = client.get("/dashboard?source=web_form").get_data(as_text=True)
    by_tag = client.get("/dashboard?tag=condition:stenosis&range=quarter").get_data(as_text=True)

    assert text_of(by_source, "kpi-leads") == "1"
    assert '<option value="web_form" selected>' in by_source
    assert text_of(by_tag, "kpi-leads") == "1"
    assert '<option value="quarter" selected>' in by_tag
    # Calls are not narrowed by a lead filter, and the page says so beside them.
    assert "(all calls: the filters narrow leads)" in by_tag
    assert "(all calls: the filters narrow leads)" not in client.get("/dashboard").get_data(as_text=True)
    # The complaint filter is a list of the tagger's labels, its choice kept in the URL.
    assert '<option value="condition:stenosis" selected>Spinal stenosis</option>' in by_tag
    assert '<option value="red_flag:weakness">RED FLAG: weakness</option>' in by_tag


def test_complaint_tags_are_named_by_their_labels_in_the_table_chart_and_csv(client, login_as, make_lead):
    login_as("manager")
    make_lead(created_at=NOW - timedelta(days=1), tags=["condition:stenosis", "region:lower"])

    html = client.get("/dashboard?range=quarter").get_data(as_text=True)
    rows = list(
        csv.reader(io.StringIO(client.get("/dashboard/export/tags.csv?range=quarter").get_data(as_text=True)))
    )

    assert sorted(r[0] for r in rows[1:]) == ["Lower back", "Spinal stenosis"]
    assert "<td>Spinal stenosis</td>" in html and "<td>Lower back</td>" in html
    assert "condition:stenosis</td>" not in html
    figure = re.search(r'id="fig-tags"[^>]*>(.*?)</script>', html, re.S)
    assert figure is not None and "Spinal stenosis" in figure.group(1), html


def test_the_csv_export_neutralises_formulas_and_is_audited(client, login_as, make_user, make_lead):
    manager = login_as("manager")
    names = ['=HYPERLINK("http://x.test")', "+1+1", "-2", "@SUM(A1)"]
    for name in names:
        actor = make_user("front_desk", name=name)
        lead = make_lead()
        db.session.add(pipeline_change(lead.id, "new", "contacted", actor.id, NOW - timedelta(hours=2)))
    db.session.commit()

    response = client.get("/dashboard/export/staff.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["staff", "contacts", "stage_moves", "conversions"]
    assert sorted(r[0] for r in rows[1:]) == sorted("'" + n for n in names)
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dashboard_export")).one()
    assert event.user_id == manager.id
    assert event.detail["chart"] == "staff" and event.detail["rows"] == 4


def test_an_unknown_chart_is_not_found(client, login_as):
    login_as("manager")

    assert client.get("/dashboard/export/nope.csv").status_code == 404


def test_stage_aging_rows_link_to_the_leads(client, login_as, make_lead):
    login_as("manager")
    stalled = make_lead(
        stage="new", created_at=NOW - timedelta(days=4), stage_entered_at=NOW - timedelta(days=4)
    )

    html = client.get("/dashboard").get_data(as_text=True)

    assert f'href="/leads/{stalled.id}"' in html
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dashboard_view")).one()
    assert event.detail["lead_ids"] == [stalled.id]


def test_the_page_issues_a_fixed_number_of_statements(client, login_as, make_lead, count_queries):
    login_as("manager")
    client.get("/dashboard")  # first use creates the settings row
    counts = []
    for _ in range(2):
        for _ in range(3):
            make_lead(created_at=NOW - timedelta(days=1), first_contact_at=NOW - timedelta(hours=20))
        with count_queries() as q:
            assert client.get("/dashboard").status_code == 200
        counts.append(len(q))

    assert counts[0] == counts[1]


def test_every_chart_offers_its_csv(client, login_as, make_lead):
    login_as("manager")
    make_lead(created_at=NOW - timedelta(days=1), tags=["condition:stenosis"])

    html = client.get("/dashboard?range=quarter").get_data(as_text=True)

    for chart in ("funnel", "sources", "tags", "aging"):
        assert f'href="/dashboard/export/{chart}.csv?range=quarter"' in html


def test_a_label_cannot_break_out_of_the_embedded_figure(client, login_as, make_lead):
    login_as("manager")
    make_lead(created_at=NOW - timedelta(days=1), tags=["</script><img src=x>"])

    html = client.get("/dashboard").get_data(as_text=True)

    assert 'id="fig-tags"' in html
    assert "</script><img" not in html
    assert "\\u003cimg src=x\\u003e" in html  # the tag is still there, escaped


def test_campaign_and_owner_filters_narrow_the_cohort(client, login_as, make_user, make_lead):
    login_as("manager")
    ana = make_user("front_desk", name="Ana")
    make_lead(created_at=NOW - timedelta(days=1), campaign="spring-mailer", owner_id=ana.id)
    make_lead(created_at=NOW - timedelta(days=1), campaign="spring-mailer")
    make_lead(created_at=NOW - timedelta(days=1))

    by_campaign = client.get("/dashboard?campaign=spring-mailer").get_data(as_text=True)
    by_owner = client.get(f"/dashboard?campaign=spring-mailer&owner={ana.id}").get_data(as_text=True)

    assert text_of(by_campaign, "kpi-leads") == "2"
    assert text_of(by_owner, "kpi-leads") == "1"
    assert f'<option value="{ana.id}" selected>Ana</option>' in by_owner


def test_the_stage_aging_list_is_paged_oldest_first(client, login_as, make_lead):
    login_as("manager")
    # 30 leads stuck in "new" (limit 1 day) for 2 to 31 days: the oldest is the last made.
    stalled = [
        make_lead(stage="new", created_at=NOW - timedelta(days=d), stage_entered_at=NOW - timedelta(days=d))
        for d in range(2, 32)
    ]
    oldest_first = [lead.id for lead in reversed(stalled)]

    first = client.get("/dashboard").get_data(as_text=True)
    second = client.get("/dashboard?aging_page=2").get_data(as_text=True)

    assert "Leads 1–25 of 30 stalled, oldest first" in first
    assert re.findall(r'href="/leads/(\d+)"', first) == [str(i) for i in oldest_first[:25]]
    assert 'rel="next" href="/dashboard?aging_page=2#h-aging"' in first and 'rel="prev"' not in first
    assert "Leads 26–30 of 30 stalled" in second
    assert re.findall(r'href="/leads/(\d+)"', second) == [str(i) for i in oldest_first[25:]]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    rows = list(csv.reader(io.StringIO(client.get("/dashboard/export/aging.csv").get_data(as_text=True))))
    assert len(rows) == 31  # the export has every stalled lead (up to the list's cap), not one page


def test_this_week_runs_from_monday(client, login_as, make_lead):
    login_as("manager")
    make_lead(created_at=utc(2026, 3, 16, 14))  # Monday of NOW's week, 9:00 in Chicago
    make_lead(created_at=utc(2026, 3, 15, 14))  # the Sunday before

    html = client.get("/dashboard?range=week").get_data(as_text=True)

    assert text_of(html, "kpi-leads") == "1"
    assert '<option value="week" selected>This week</option>' in html
    assert "Mar 16, 2026 – Mar 18, 2026" in html


@pytest.mark.parametrize(
    ("chart", "head"),
    [
        ("campaigns", ["campaign", "leads", "consults", "surgeries", "consult_rate", "surgery_rate"]),
        ("landing_pages", ["landing_page", "leads", "consults", "surgeries", "consult_rate", "surgery_rate"]),
        (
            "speed_week",
            [
                "week_starting",
                "contacted",
                "median_business_minutes",
                "p90_business_minutes",
                "within_target",
            ],
        ),
        (
            "callbacks",
            ["missed_inbound_calls", "with_callback_task", "done_within_target", "share_within_target"],
        ),
    ],
)
def test_the_new_charts_export_their_numbers_neutralised_and_audited(
    client, login_as, make_lead, chart, head
):
    login_as("manager")
    # Wednesday 10:00 in Chicago, contacted 12 business minutes later.
    make_lead(
        created_at=NOW - timedelta(hours=1),
        first_contact_at=NOW - timedelta(minutes=48),
        campaign="=HYPERLINK(1)",
        landing_page="-/back",
    )

    rows = list(csv.reader(io.StringIO(client.get(f"/dashboard/export/{chart}.csv").get_data(as_text=True))))

    assert rows[0] == head
    expected = {
        "campaigns": [["'=HYPERLINK(1)", "1", "0", "0", "0.0%", "0.0%"]],
        "landing_pages": [["'-/back", "1", "0", "0", "0.0%", "0.0%"]],
        "speed_week": [["2026-03-16", "1", "12.0", "12.0", "100.0%"]],
        "callbacks": [["0", "0", "0", ""]],
    }[chart]
    assert rows[1:] == expected
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dashboard_export")).one()
    assert (event.detail["chart"], event.detail["rows"]) == (chart, len(expected))


def test_new_charts_show_friendly_empty_states(client, login_as):
    login_as("manager")

    html = client.get("/dashboard?range=week").get_data(as_text=True)

    for text in (
        "No lead of this period came through a landing page.",
        "No lead of this period was referred by a practice.",
        "No missed inbound call in this period.",
    ):
        assert text in html
    assert "data-figure" not in html


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "—"), (0, "0 min"), (13.4, "13 min"), (150, "2.5 h"), (3611.7, "60 h")]
)
def test_speed_reads_in_minutes_or_hours(value, shown):
    from crm.templating import minutes

    assert minutes(value) == shown

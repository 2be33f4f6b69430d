"""The front-desk queue: order, filters, search, pagination, actions, statement counts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.models import AuditEvent, Lead, LeadSearchTerm
from crm.text import search_terms
from tests.conftest import csrf_token, utc

NOW = utc(2026, 3, 10, 15, 0)  # Tuesday 10:00 in Chicago


@pytest.fixture
def now(frozen_clock):
    frozen_clock(NOW)
    return NOW


@pytest.fixture
def lead(make_lead, now):
    """Create a lead with its search words stored, as intake does."""

    def make(**kw):
        made = make_lead(**kw)
        for term in search_terms(made.first_name, made.last_name):
            db.session.add(LeadSearchTerm(lead_id=made.id, term=term))
        db.session.commit()
        return made

    return make


def shown_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="[^"]*" id="lead-(\d+)"', html)]


def get_ids(client, url: str = "/leads") -> list[int]:
    response = client.get(url)
    assert response.status_code == 200
    return shown_ids(response.get_data(as_text=True))


# "/leads" reads each group by its own index; a filter matching at most 500 leads is read whole
# and ordered from the same group conditions: both must give the same order and the same pages.
@pytest.mark.parametrize("url", ["/leads", "/leads?source=phone"])
def test_queue_order_puts_each_lead_once_in_its_first_group(client, login_as, lead, now, url):
    login_as("front_desk")
    rest_old = lead(created_at=now - timedelta(days=3))
    rest_new = lead(created_at=now - timedelta(hours=1))
    task = lead(created_at=now - timedelta(days=5), next_task_due_at=now + timedelta(hours=2))
    overdue_less = lead(created_at=now - timedelta(hours=2), first_contact_due_at=now - timedelta(minutes=5))
    overdue_more = lead(created_at=now - timedelta(hours=1), first_contact_due_at=now - timedelta(minutes=40))
    # Urgent AND overdue AND a task due: shown once, in the first group (urgent).
    urgent_both = lead(
        urgent=True,
        created_at=now - timedelta(days=1),
        first_contact_due_at=now - timedelta(hours=3),
        next_task_due_at=now,
    )
    urgent_older = lead(urgent=True, created_at=now - timedelta(days=2))
    tomorrow_task = lead(created_at=now - timedelta(days=9), next_task_due_at=now + timedelta(days=1))
    closed = lead(stage="closed", in_queue=False, urgent=True)

    ids = get_ids(client, url)

    assert ids == [
        urgent_older.id,
        urgent_both.id,
        overdue_more.id,
        overdue_less.id,
        task.id,
        rest_new.id,
        rest_old.id,
        tomorrow_task.id,
    ]
    assert closed.id not in ids


def test_overdue_badge_says_by_how_much(client, login_as, lead, now):
    login_as("front_desk")
    lead(first_contact_due_at=now - timedelta(minutes=12))
    assert "Overdue 12 min" in client.get("/leads").get_data(as_text=True)


def test_a_closed_or_not_a_patient_lead_is_not_shown_overdue(client, login_as, lead, now):
    login_as("front_desk")
    late = now - timedelta(days=2)
    lead(stage="closed", in_queue=False, close_reason="no_response", first_contact_due_at=late)
    lead(not_a_patient=True, in_queue=False, first_contact_due_at=late)
    waiting = lead(first_contact_due_at=late)
    html = client.get("/leads?include=closed").get_data(as_text=True)
    assert html.count("Overdue 2 d") == 1
    assert "Overdue 2 d" in html[html.index(f'id="lead-{waiting.id}"') :]


def test_closed_and_not_a_patient_hidden_unless_asked(client, login_as, lead):
    login_as("front_desk")
    open_lead = lead()
    closed = lead(stage="closed", in_queue=False, close_reason="no_response")
    spam = lead(not_a_patient=True, in_queue=False)

    assert get_ids(client) == [open_lead.id]
    assert set(get_ids(client, "/leads?include=closed")) == {open_lead.id, closed.id, spam.id}
    # Asking for the closed stage is asking to see closed leads; the form says so.
    page = client.get("/leads?stage=closed")
    assert get_ids(client, "/leads?stage=closed") == [closed.id]
    assert '<option selected value="closed">Also closed and not a patient</option>' in page.get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("query", "match", "miss"),
    [
        ("stage=evaluation", {"stage": "evaluation"}, {"stage": "new"}),
        ("source=referral", {"source": "referral"}, {"source": "phone"}),
        ("campaign=google-ads", {"campaign": "google-ads"}, {"campaign": "main"}),
        ("tag=region:lower", {"tags": ["region:lower"]}, {"tags": ["region:upper"]}),
        (
            "created_from=2026-03-01&created_to=2026-03-05",
            {"created_at": utc(2026, 3, 6, 5, 59)},
            {"created_at": utc(2026, 3, 6, 6, 0)},
        ),
    ],
)
def test_each_filter_narrows_the_queue(client, login_as, lead, query, match, miss):
    login_as("front_desk")
    wanted = lead(**match)
    lead(**miss)
    assert get_ids(client, f"/leads?{query}") == [wanted.id]


def test_owner_filter_me_none_and_id(client, login_as, lead, make_user):
    me = login_as("front_desk")
    other = make_user("front_desk")
    mine = lead(owner_id=me.id)
    theirs = lead(owner_id=other.id)
    nobody = lead()
    assert get_ids(client, "/leads?owner=me") == [mine.id]
    assert get_ids(client, "/leads?owner=none") == [nobody.id]
    assert get_ids(client, f"/leads?owner={other.id}") == [theirs.id]


@pytest.mark.parametrize(
    "q",
    [
        "jos",
        "José",
        "JOSE",
        "garc",
        "maria jos",
        "jose@example.com",
        "JOSE@EXAMPLE",
        "(214) 555-0142",
        "214.555.0142",
        "+1 214 555 0142",
        "12145550142",
        "555-0142",
        "5550142",
        "0142",
    ],
)
def test_search_finds_by_name_start_email_and_phone_any_way(client, login_as, lead, q):
    login_as("front_desk")
    wanted = lead(
        first_name="José",
        last_name="García-Maria",
        email="jose@example.com",
        phone="+12145550142",
        phone_last7="5550142",
        phone_last4="0142",
    )
    lead(
        first_name="Ana",
        last_name="Lopez",
        email="ana@example.com",
        phone="+12145559999",
        phone_last7="5559999",
        phone_last4="9999",
    )
    assert get_ids(client, f"/leads?q={q}") == [wanted.id]


@pytest.mark.parametrize("q", ["obrien", "O'Brien", "o’brien", "OBri", "brien", "mary obrien"])
def test_search_finds_a_joined_name_typed_with_or_without_its_apostrophe(client, login_as, lead, q):
    login_as("front_desk")
    wanted = lead(first_name="Mary", last_name="O'Brien")
    lead(first_name="Brian", last_name="Oakes")
    assert get_ids(client, f"/leads?q={q}") == [wanted.id]


def test_intake_stores_the_joined_words_of_a_name(app, now):
    from crm.intake import ContactIn, find_or_create_lead

    found = find_or_create_lead(
        ContactIn(source="web_form", first_name="Ana", last_name="Smith-Jones", phone="+12145550188"), now=now
    )
    db.session.commit()
    terms = set(
        db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == found.lead.id))
    )
    assert terms == {"ana", "smith", "jones", "smithjones"}


@pytest.mark.parametrize("q", ["ose", "arcia", "jose@exam.org", "4555014", "99990142"])
def test_search_does_not_match_middles_or_other_numbers(client, login_as, lead, q):
    login_as("front_desk")
    lead(
        first_name="José",
        last_name="García",
        email="jose@example.com",
        phone="+12145550142",
        phone_last7="5550142",
        phone_last4="0142",
    )
    assert get_ids(client, f"/leads?q={q}") == []


@pytest.mark.parametrize("start", ["/leads", "/leads?source=phone", "/leads?source=phone&include=closed"])
def test_pages_reach_every_lead_exactly_once(client, login_as, lead, now, start):
    login_as("front_desk")
    made = set()
    for i in range(120):
        kw = {"created_at": now - timedelta(minutes=i % 7)}  # ties on the sort key, broken by id
        if i % 10 == 0:
            kw["urgent"] = True
        elif i % 10 == 1:
            kw["first_contact_due_at"] = now - timedelta(minutes=i % 3 + 1)
        elif i % 10 == 2:
            kw["next_task_due_at"] = now - timedelta(minutes=i % 2)
        made.add(lead(**kw).id)
    seen: list[int] = []
    url = start
    for _ in range(5):
        html = client.get(url).get_data(as_text=True)
        seen += shown_ids(html)
        nxt = re.search(r'href="(/leads\?after=[^"]+)" rel="next"', html)
        if not nxt:
            break
        url = nxt.group(1).replace("&amp;", "&")
    assert len(seen) == 120
    assert set(seen) == made


def test_the_page_audits_the_ids_it_showed(client, login_as, lead):
    user = login_as("front_desk")
    a, b = lead(), lead()
    client.get("/leads")
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "lead_list")).one()
    assert event.user_id == user.id
    assert sorted(event.detail["lead_ids"]) == sorted([a.id, b.id])


def test_a_bad_cursor_starts_from_the_top(client, login_as, lead):
    login_as("front_desk")
    one = lead()
    assert get_ids(client, "/leads?after=nonsense") == [one.id]


# --------------------------------------------------------------------------- actions


def test_claim_makes_an_unassigned_lead_mine_and_audits_it(client, login_as, lead):
    me = login_as("front_desk")
    target = lead()
    token = csrf_token(client.get("/leads").get_data(as_text=True))
    response = client.post(f"/leads/{target.id}/claim", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Lead, target.id).owner_id == me.id
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "lead_claim")) == 1


def test_claim_refuses_a_lead_someone_already_owns(client, login_as, lead, make_user):
    login_as("front_desk")
    other = make_user("front_desk")
    target = lead(owner_id=other.id)
    token = csrf_token(client.get("/leads").get_data(as_text=True))
    client.post(f"/leads/{target.id}/claim", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(Lead, target.id).owner_id == other.id


def test_claim_without_csrf_is_refused(client, login_as, lead):
    login_as("front_desk")
    target = lead()
    assert client.post(f"/leads/{target.id}/claim").status_code == 400
    db.session.expire_all()
    assert db.session.get(Lead, target.id).owner_id is None


def test_calling_shows_who_is_calling_and_expires(client, login_as, lead, make_user, frozen_clock, now):
    ana = make_user("front_desk", name="Ana Ruiz")
    target = lead(calling_user_id=ana.id, calling_since=now - timedelta(minutes=3))
    login_as("front_desk")
    assert "Ana Ruiz is calling" in client.get("/leads").get_data(as_text=True)
    frozen_clock(now + timedelta(minutes=13))
    assert "Ana Ruiz is calling" not in client.get("/leads").get_data(as_text=True)
    assert target.id in get_ids(client)


def test_calling_start_and_stop(client, login_as, lead):
    me = login_as("front_desk")
    target = lead(phone="+12145550142")
    token = csrf_token(client.get("/leads").get_data(as_text=True))
    client.post(f"/leads/{target.id}/calling", data={"csrf_token": token, "action": "start"})
    db.session.expire_all()
    row = db.session.get(Lead, target.id)
    assert (row.calling_user_id, row.version) == (me.id, 1)  # not an edit: no version bump
    assert "You are calling" in client.get("/leads").get_data(as_text=True)
    client.post(f"/leads/{target.id}/calling", data={"csrf_token": token, "action": "stop"})
    db.session.expire_all()
    assert db.session.get(Lead, target.id).calling_user_id is None


def test_logging_the_call_ends_my_calling_but_not_someone_elses(client, login_as, lead, make_user, now):
    me = login_as("front_desk")
    ana = make_user("front_desk", name="Ana Ruiz")
    mine = lead(phone="+12145550142", calling_user_id=me.id, calling_since=now - timedelta(minutes=2))
    hers = lead(phone="+12145550143", calling_user_id=ana.id, calling_since=now - timedelta(minutes=2))
    for target in (mine, hers):
        token = csrf_token(client.get(f"/leads/{target.id}").get_data(as_text=True))
        data = {"csrf_token": token, "direction": "outbound", "outcome": "answered", "notes": "Spoke"}
        assert client.post(f"/leads/{target.id}/calls", data=data).status_code == 302
    html = client.get("/leads").get_data(as_text=True)
    assert "You are calling" not in html
    assert "Ana Ruiz is calling" in html
    db.session.expire_all()
    assert db.session.get(Lead, mine.id).calling_user_id is None


def test_bulk_reassign_and_not_a_patient(client, login_as, lead, make_user):
    login_as("front_desk")
    other = make_user("front_desk")
    a, b, c = lead(), lead(), lead()
    token = csrf_token(client.get("/leads").get_data(as_text=True))

    client.post(
        "/leads/bulk",
        data={
            "csrf_token": token,
            "action": "reassign",
            "owner": str(other.id),
            "lead_id": [str(a.id), str(b.id)],
        },
    )
    client.post(
        "/leads/bulk",
        data={"csrf_token": token, "action": "not_a_patient", "owner": "", "lead_id": [str(c.id)]},
    )

    db.session.expire_all()
    assert [db.session.get(Lead, i).owner_id for i in (a.id, b.id, c.id)] == [other.id, other.id, None]
    spam = db.session.get(Lead, c.id)
    assert (spam.not_a_patient, spam.in_queue) == (True, False)
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.lead_id.is_not(None))).all()
    assert sorted(actions) == ["lead_not_a_patient", "lead_reassign", "lead_reassign"]
    assert get_ids(client) == sorted([a.id, b.id], reverse=True)


def test_bulk_without_csrf_is_refused(client, login_as, lead):
    login_as("front_desk")
    a = lead()
    response = client.post("/leads/bulk", data={"action": "not_a_patient", "lead_id": [str(a.id)]})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Lead, a.id).in_queue is True


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/leads/bulk"), ("post", "/leads/{id}/claim"), ("post", "/leads/{id}/calling")],
)
def test_surgeons_may_not_act_from_the_queue(client, login_as, lead, method, path):
    login_as("surgeon")
    a = lead(stage="surgical_review")
    token = csrf_token(client.get("/leads").get_data(as_text=True))
    data = {"csrf_token": token, "action": "not_a_patient", "lead_id": [str(a.id)]}
    response = getattr(client, method)(path.format(id=a.id), data=data)
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Lead, a.id).in_queue is True


def test_queue_needs_sign_in(client):
    assert client.get("/leads").status_code == 302


# --------------------------------------------------------------------------- statement counts


@pytest.mark.parametrize(("url", "expected"), [("/leads", 8), ("/leads?stage=new&tag=region:lower&q=pat", 7)])
def test_statement_count_does_not_grow_with_data(client, login_as, lead, count_queries, url, expected):
    """Statements of one /leads page, at 3 and at 60 leads (a page of 50 stays 8):

    1 the sign-in session (with its user), 2 the staff who may own leads (filter and bulk
    choices), 3 clinic settings (the local day), 4 the capped count, 5 the page's ids (one
    UNION ALL of the four groups), 6 the leads (owner and caller joined, active tag codes
    aggregated), 7 unread notifications, 8 the audit row. A narrowed view of at most 500
    leads is read whole in one statement, which is also its count: 7.
    """
    login_as("front_desk")
    client.get(url)  # the first request after sign-in also touches the session row

    def measure() -> int:
        with count_queries() as q:
            assert client.get(url).status_code == 200
        return len(q)

    for _ in range(3):
        lead(tags=["region:lower"])
    small = measure()
    for _ in range(57):
        lead(tags=["region:lower"], owner_id=None)
    large = measure()
    assert small == large == expected


# --------------------------------------------------------------------------- wide views


@pytest.fixture
def small_cap(monkeypatch):
    """A cap of 5 leads (500 in the clinic), and no view yet known to be wide."""
    from crm import queue

    monkeypatch.setattr(queue, "COUNT_CAP", 5)
    monkeypatch.setattr(queue, "WIDE_VIEWS", queue.WideViews())
    return queue


def test_a_wide_filter_is_counted_not_read_whole_and_shows_the_same_page(
    client, login_as, lead, now, count_queries, small_cap
):
    """A filter seen to match more than the cap skips the whole read next time; the page is the same.

    The narrowed read brings back every matching lead (up to the cap and one) to order them in
    Python; a wide one then reads the page by the groups' indexes anyway. Once known wide, the
    view is counted (capped) instead. What the desk sees must not change: the same leads in the
    same order and "5+ leads"; and when the view shrinks below the cap its count is exact again.
    """
    login_as("front_desk")
    made = [lead(source="referral", created_at=now - timedelta(hours=i)) for i in range(8)]
    made[3].urgent = True
    made[5].first_contact_due_at = now - timedelta(minutes=20)
    db.session.commit()
    lead(source="phone")
    url = "/leads?source=referral"

    def visit() -> tuple[list[int], str, list[str]]:
        with count_queries() as q:
            response = client.get(url)
        html = response.get_data(as_text=True)
        count = re.search(r'<p class="muted" id="queue-count">([^<]*)</p>', html)
        return shown_ids(html), count.group(1).split(" · ")[0].strip() if count else "", q.statements

    first_ids, first_count, first_sql = visit()
    second_ids, second_count, second_sql = visit()
    expected = [made[3].id, made[5].id] + [m.id for i, m in enumerate(made) if i not in (3, 5)]
    assert first_ids == second_ids == expected
    assert first_count == second_count == "5+ leads"
    assert any("CASE WHEN" in s for s in first_sql)  # read whole the first time
    assert not any("CASE WHEN" in s for s in second_sql)  # counted the second
    assert len(second_sql) == len(first_sql)  # one statement swapped for another

    for m in made[:5]:  # five of them close: three referrals left in the queue
        m.in_queue = False
        m.stage = "closed"
    db.session.commit()
    third_ids, third_count, _ = visit()
    assert third_ids == [made[5].id, made[6].id, made[7].id] and third_count == "3 leads"
    _, _, fourth_sql = visit()
    assert any("CASE WHEN" in s for s in fourth_sql)  # narrow again: read whole

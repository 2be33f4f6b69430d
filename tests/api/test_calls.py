"""The calls resource: create through the webhook's intake, list with every filter."""

from __future__ import annotations

import sqlalchemy as sa

from crm.extensions import db
from crm.models import AuditEvent, Call

LINE = "+19724995457"  # a clinic line in TestConfig.CLINIC_LINES
CALLER = "+12025550143"


def call(sid: str, **overrides):
    body = {
        "call_sid": sid,
        "from_number": CALLER,
        "to_number": LINE,
        "direction": "inbound",
        "status": "completed",
        "started_at": "2026-03-02T15:00:00+00:00",
        "duration": 65,
    }
    body.update(overrides)
    return body


def test_create_call_goes_through_intake_and_retries_do_not_duplicate(make_caller, client):
    caller = make_caller("front_desk")
    first = client.post("/api/v1/calls", json=call("CA1"), headers=caller.headers)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["call_sid"] == "CA1" and body["duration"] == 65 and body["lead_id"] is not None
    again = client.post("/api/v1/calls", json=call("CA1"), headers=caller.headers)
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 1
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "call_api"))
    assert (event.user_id, event.via) == (caller.user.id, "api")


def test_create_call_on_a_line_not_the_clinics_is_422_with_intakes_reason(make_caller, client):
    response = client.post(
        "/api/v1/calls", json=call("CA2", to_number="+12145559999"), headers=make_caller().headers
    )
    assert response.status_code == 422
    assert "not one of the clinic's lines" in response.get_json()["error"]["message"]


def test_create_call_refuses_unknown_and_wrong_fields(make_caller, client):
    caller = make_caller()
    response = client.post("/api/v1/calls", json=call("CA3", CallStatus="x"), headers=caller.headers)
    assert response.status_code == 422 and "CallStatus" in response.get_json()["error"]["fields"]
    response = client.post("/api/v1/calls", json=call("CA3", status="answered"), headers=caller.headers)
    assert response.status_code == 422 and "status" in response.get_json()["error"]["fields"]


def test_read_token_and_surgeon_may_not_create_calls(make_caller, client):
    assert (
        client.post("/api/v1/calls", json=call("CA4"), headers=make_caller(scope="read").headers).status_code
        == 403
    )
    assert (
        client.post("/api/v1/calls", json=call("CA4"), headers=make_caller("surgeon").headers).status_code
        == 403
    )


def test_list_calls_filters(make_caller, client):
    caller = make_caller("manager")
    h = caller.headers
    a = client.post("/api/v1/calls", json=call("CA10"), headers=h).get_json()
    b = client.post(
        "/api/v1/calls",
        json=call("CA11", from_number="+12025550188", status="no-answer", started_at="2026-03-05T15:00:00Z"),
        headers=h,
    ).get_json()

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/calls?{query}", headers=h)
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    assert ids("") == [b["id"], a["id"]]
    assert ids("call_sid=CA10") == [a["id"]]
    assert ids(f"lead_id={b['lead_id']}") == [b["id"]]
    assert ids("status=no-answer") == [b["id"]]
    assert ids("from_number=%2B12025550143") == [a["id"]]
    assert ids(f"to_number=%2B{LINE[1:]}") == [b["id"], a["id"]]
    assert ids("started_from=2026-03-04") == [b["id"]]
    assert ids("started_to=2026-03-03") == [a["id"]]
    assert ids("started_from=2026-03-05T16:00:00Z") == []
    page = client.get("/api/v1/calls?per_page=1&page=2", headers=h).get_json()
    assert (page["total"], page["page"], page["pages"], len(page["items"])) == (2, 2, 2, 1)
    assert client.get("/api/v1/calls?status=bogus", headers=h).status_code == 422


def test_surgeon_sees_only_calls_of_leads_in_their_scope(make_caller, client):
    desk = make_caller("front_desk")
    surgeon = make_caller("surgeon")
    client.post("/api/v1/calls", json=call("CA20"), headers=desk.headers)
    body = client.get("/api/v1/calls", headers=surgeon.headers).get_json()
    assert body["total"] == 0  # the caller's lead is new: not a referral yet

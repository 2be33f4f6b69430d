"""Hostile values in every parameter of Twilio's voice status callback, each request signed.

Every request carries a correct ``X-Twilio-Signature`` computed by the twilio library's own
``RequestValidator`` over exactly the parameters sent (a parameter given twice included), so
what is tested is the validation behind the signature check, not the check itself. The
parameters are those the view reads (recorded as in ``test_fuzz_params``) plus the rest of
what Twilio sends. Each example starts from a genuine callback for a new call and puts hostile
values in one to four parameters. An answer is 200 (stored: the call exists, and the lead page
shows what was stored escaped) or 400 with a plain reason and the table checksum unchanged;
never a 5xx.
"""

from __future__ import annotations

import itertools
import uuid
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import sqlalchemy as sa
from flask import Request
from hypothesis import example, given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from crm.extensions import db
from crm.models import Call
from tests.conftest import sign_in, utc
from tests.dbstate import changed_tables, table_checksums
from tests.security import test_fuzz_params as params
from tests.security.hostile import Tally, hostile_text
from tests.security.test_fuzz_forms import assert_escaped
from tests.security.test_fuzz_params import Raw, RecordingRequest

PATH = "/webhooks/twilio/voice-status"
URL = "http://crm.test" + PATH
TOKEN = "test-twilio-auth-token"
NOW = utc(2026, 3, 9, 15, 0)
# What Twilio sends besides the fields the view reads (https://www.twilio.com/docs/voice/api/call-resource#statuscallback).
TWILIO_SENDS = (
    "AccountSid",
    "ApiVersion",
    "CallbackSource",
    "Called",
    "Caller",
    "CallerCity",
    "ForwardedFrom",
    "SipResponseCode",
    "StirVerstat",
)
DATES = (
    "Mon, 01 Jan 0001 00:00:00 +0000",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Fri, 31 Dec 9999 23:59:59 +0000",
    "Tue, 10 Mar 2026 25:61:61 +0000",
    "Tue, 10 Mar 2026 10:00:00 +9999",
    "10 Mar 2026",
)


def genuine(n: int) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": f"CA{uuid.UUID(int=n).hex}",
        "From": f"+1972555{n % 10000:04d}",
        "To": "+19724995457",
        "Direction": "inbound",
        "CallStatus": "completed",
        "CallDuration": "30",
        "SequenceNumber": "0",
        "Timestamp": format_datetime(NOW),
        "ApiVersion": "2010-04-01",
    }


def value_for() -> st.SearchStrategy[Any]:
    return st.one_of(
        hostile_text(),
        st.sampled_from(DATES),
        st.lists(hostile_text(huge=False), min_size=2, max_size=3),
        st.binary(min_size=1, max_size=12).map(lambda b: Raw(b"\xff" + b)),
    )


def body_and_signature(values: dict[str, Any]) -> tuple[bytes, str]:
    """Encode the body and sign what the server will read from it, as Twilio would."""
    pairs: list[tuple[str, str]] = []
    parts = []
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, Raw):
                parts.append(f"{quote(name, safe='')}={quote_from_bytes(one.data, safe='')}")
                pairs.append((name, one.data.decode("utf-8", "replace")))
            else:
                parts.append(f"{quote(name, safe='')}={quote(one, safe='')}")
                pairs.append((name, one))
    signature = RequestValidator(TOKEN).compute_signature(URL, MultiDict(pairs))
    return "&".join(parts).encode(), signature


def names_read(app: Any, client: Any) -> set[str]:
    """The form fields the webhook view reads, recorded while it takes a genuine callback."""
    body, signature = body_and_signature(genuine(999_999))
    app.request_class = RecordingRequest
    params.READ.clear()
    try:
        response = client.post(
            PATH,
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": signature},
        )
    finally:
        app.request_class = Request
    assert response.status_code == 200, response.get_data(as_text=True)
    return set(params.READ)


@pytest.mark.slow
def test_every_callback_parameter_is_validated_behind_a_good_signature(app, client, make_user, frozen_clock):
    frozen_clock(NOW)
    read = names_read(app, client)
    assert {"CallSid", "From", "To", "CallStatus", "Direction", "CallDuration", "Timestamp"} <= read, read
    names = sorted(read | set(TWILIO_SENDS))
    staff = app.test_client()
    assert sign_in(staff, make_user("front_desk").email).status_code == 302
    counter = itertools.count(1)
    tally = Tally(f"POST {PATH}")

    @example({"Timestamp": "Fri, 31 Dec 9999 23:59:59 -2359"})  # past the calendar's end once in UTC
    @example({"Timestamp": "Mon, 01 Jan 1900 00:00:00 +0000", "CallDuration": "999999999"})
    @example({"CallDuration": "9" * 30})
    @example({"SequenceNumber": "99999999999999999999"})
    @given(
        st.tuples(st.permutations(names), st.lists(value_for(), min_size=1, max_size=4)).map(
            lambda pv: dict(zip(pv[0], pv[1], strict=False))
        )
    )
    def throw(hostile: dict[str, Any]) -> None:
        tally.thrown(hostile)
        values: dict[str, Any] = {**genuine(next(counter)), **hostile}
        body, signature = body_and_signature(values)
        before = table_checksums()
        response = client.post(
            PATH,
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": signature},
        )
        status = response.status_code
        tally.outcomes[str(status)] += 1
        text = response.get_data(as_text=True)
        assert status < 500, (status, hostile)
        if any(
            isinstance(v, Raw) or (isinstance(v, list) and any(isinstance(x, Raw) for x in v))
            for v in hostile.values()
        ):
            # A body that is not UTF-8 is not what Twilio signed: refused as unsigned, or read.
            assert status in (200, 400, 403), (status, hostile)
        else:
            assert status in (200, 400), (status, text, hostile)
        if status != 200:
            assert text.strip() and response.mimetype == "text/plain", text
            assert not changed_tables(before, table_checksums()), hostile
            return
        sid = values["CallSid"][0] if isinstance(values["CallSid"], list) else values["CallSid"]
        call = db.session.scalar(sa.select(Call).where(Call.call_sid == str(sid).strip()))
        assert call is not None or values.get("ParentCallSid"), hostile  # a staff leg is not a call
        if call is not None and call.lead_id:
            page = staff.get(f"/leads/{call.lead_id}")
            assert page.status_code == 200
            assert_escaped(page.get_data(as_text=True), list(values.values()))

    throw()
    print("\n" + tally.report())
    assert tally.outcomes["200"] > 0 and tally.outcomes["400"] > 0

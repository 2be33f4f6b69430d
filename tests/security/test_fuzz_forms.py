"""Hostile values in every field of the public appointment form and of the sign-in form.

Each example starts from a submission a patient (or a staff member) could make and puts hostile
values in one to four of its fields — payloads, random text, huge strings, a field given twice,
or a body that is not UTF-8 at all. The fields are read from the form classes, not listed by
hand. An answer is one of: refused (4xx, the form shown again with a message, and the table
checksum unchanged), or taken (303 to the confirmation; the lead page then shows what was
stored, escaped). Never a 5xx.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st
from markupsafe import escape

from crm.auth.forms import LoginForm
from crm.extensions import db
from crm.models import AppointmentRequest, Lead
from crm.public.forms import AppointmentRequestForm
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in
from tests.dbstate import changed_tables, table_checksums
from tests.security.hostile import XSS_ATOMS, Tally, hostile_text, xss_atoms_in
from tests.security.test_fuzz_params import Raw

FORM = "/request-appointment"
EMBED = "https://www.advancedspinecenter.example"
# A refused post is still counted against the address's rate limit (PRODUCT §7), and a failed
# sign-in against the account and the address: these counters are meant to change.
COUNTERS = ("throttle_hits",)
# A refusal shows a message: an alert above the form, a note beside a field, or the CSRF page.
MESSAGES = ('role="alert"', 'class="field-error"', "This form has expired")


@pytest.fixture
def app_config(app_config: Any) -> Any:
    app_config.EMBED_ORIGINS = [EMBED]
    app_config.FORM_RATE_LIMIT = "100000 per hour"  # the limit has its own tests; here every post is read
    app_config.PUBLIC_FORM_MIN_SECONDS = 0
    return app_config


def field_names(form_class: type, app: Any) -> list[str]:
    with app.test_request_context():
        return [field.name for field in form_class(formdata=None, meta={"csrf": False})]


def encode(values: dict[str, Any]) -> bytes:
    """A urlencoded body, with ``Raw`` values sent as the bytes they are (not UTF-8)."""
    parts = []
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            data = quote_from_bytes(one.data, safe="") if isinstance(one, Raw) else quote(one, safe="")
            parts.append(f"{quote(name, safe='')}={data}")
    return "&".join(parts).encode()


def field_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        hostile_text(),
        st.lists(hostile_text(huge=False), min_size=2, max_size=3),  # the field given twice or more
        st.binary(min_size=1, max_size=12).map(lambda b: Raw(b"\xc3\x28" + b)),  # not UTF-8
    )


def some_fields(names: list[str], most: int) -> st.SearchStrategy[dict[str, Any]]:
    """Hostile values for 1 to ``most`` fields, the fields drawn evenly (a random permutation)."""
    return st.tuples(st.permutations(names), st.lists(field_value(), min_size=1, max_size=most)).map(
        lambda pv: dict(zip(pv[0], pv[1], strict=False))
    )


def assert_escaped(html: str, values: list[Any]) -> None:
    for atom in {*XSS_ATOMS, *xss_atoms_in(values)}:
        assert atom not in html, atom


@pytest.mark.slow
def test_the_public_form_refuses_or_stores_escaped_whatever_it_is_sent(app, client, make_user, make_lead):
    names = field_names(AppointmentRequestForm, app)
    assert {"first_name", "message", "email", "phone", "consent_sms", "utm_campaign", "form_token"} <= set(
        names
    )
    page = client.get(FORM).get_data(as_text=True)
    token = page.split('name="form_token" type="hidden" value="', 1)[1].split('"', 1)[0]
    staff = app.test_client()
    assert sign_in(staff, make_user("front_desk").email).status_code == 302
    phones = itertools.count(1000)
    tally = Tally(f"POST {FORM}")

    @given(some_fields(names, 4))
    def throw(hostile: dict[str, Any]) -> None:
        tally.thrown(hostile)
        values: dict[str, Any] = {
            "first_name": "Maria",
            "last_name": "Lopez",
            "phone": f"(469) 231-{next(phones):04d}",
            "message": "Lower back pain for three weeks, worse when sitting.",
            "consent_phone": "y",
            "red_flag_bladder": "no",
            "red_flag_weakness": "no",
            "preferred_time": "Any time",
            "language": "English",
            "form_token": token,
            **hostile,
        }
        before = table_checksums(skip=COUNTERS)
        last_request = db.session.scalar(sa.select(sa.func.max(AppointmentRequest.id))) or 0
        response = client.post(
            FORM,
            data=encode(values),
            content_type="application/x-www-form-urlencoded",
            headers={"Origin": EMBED},
        )
        status = response.status_code
        tally.outcomes[str(status)] += 1
        html = response.get_data(as_text=True)
        assert status < 500, (status, hostile)
        assert status in (303, 400, 422), (status, hostile)
        assert_escaped(html, list(values.values()))
        if status != 303:
            assert any(m in html for m in MESSAGES), f"refused without a message: {html[:300]}"
            assert not changed_tables(before, table_checksums(skip=COUNTERS)), hostile
            return
        honeypot = values.get("website", "")
        honeypot = honeypot[0] if isinstance(honeypot, list) else honeypot
        if isinstance(honeypot, Raw) or (isinstance(honeypot, str) and honeypot.strip()):
            # The honeypot was filled: thanked, nothing stored.
            assert not changed_tables(before, table_checksums(skip=COUNTERS)), hostile
            tally.outcomes["303 honeypot"] += 1
            return
        taken = db.session.scalar(
            sa.select(AppointmentRequest).order_by(AppointmentRequest.id.desc()).limit(1)
        )
        assert taken is not None and taken.id > last_request, hostile
        lead_id = taken.lead_id
        lead_page = staff.get(f"/leads/{lead_id}")
        assert lead_page.status_code == 200
        lead_html = lead_page.get_data(as_text=True)
        assert_escaped(lead_html, list(values.values()))
        lead = db.session.get(Lead, lead_id)
        for name in ("first_name", "last_name"):
            stored = getattr(lead, name)
            assert str(escape(stored)) in lead_html, (name, stored)

    throw()
    print("\n" + tally.report())
    assert tally.outcomes["303"] > 0 and tally.outcomes["422"] > 0  # both paths were reached


@pytest.mark.slow
def test_sign_in_refuses_whatever_it_is_sent_with_a_message_and_signs_no_one_in(app, client, make_user):
    names = [*field_names(LoginForm, app), "csrf_token"]  # the session's CSRF token is a field too
    assert {"email", "password"} <= set(names)
    user = make_user("front_desk")
    tally = Tally("POST /login")
    addresses = itertools.count(1)

    @example({"email": "nul\x00@clinic.test"})  # PostgreSQL refuses NUL in the throttle lookup
    @given(some_fields(names, 3))
    def throw(hostile: dict[str, Any]) -> None:
        tally.thrown(hostile)
        form = client.get("/login").get_data(as_text=True)
        values = {"email": user.email, "password": "not-" + DEFAULT_PASSWORD, "csrf_token": csrf_token(form)}
        values.update(hostile)
        before = table_checksums(skip=COUNTERS)
        # Each example from its own address: the address limit (tested elsewhere) must not
        # stop hostile values before they reach the account lookup.
        n = next(addresses)
        response = client.post(
            "/login",
            data=encode(values),
            content_type="application/x-www-form-urlencoded",
            environ_base={"REMOTE_ADDR": f"10.9.{n // 250}.{n % 250 + 1}"},
        )
        status = response.status_code
        tally.outcomes[str(status)] += 1
        html = response.get_data(as_text=True)
        assert status in (200, 400), (status, hostile)
        assert any(m in html for m in MESSAGES), html[:500]
        assert "Sign out" not in html
        assert_escaped(html, list(values.values()))
        assert not changed_tables(before, table_checksums(skip=COUNTERS)), hostile

    throw()
    print("\n" + tally.report())

"""The public appointment form: labels, validation, anti-forgery, rate limit, headers, intake."""

from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from crm import intake
from crm.extensions import db
from crm.models import AppointmentRequest, Consent, Lead, ThrottleHit
from tests.conftest import utc

FORM = "/request-appointment"
OWN_ORIGIN = "http://localhost"  # the test client's host
EMBED = "https://www.advancedspinecenter.example"
START = utc(2026, 3, 9, 15, 0)  # Monday 9 am in Plano


LABELS = [
    "First name",
    "Last name",
    "Phone",
    "Email",
    "Describe your symptoms",
    "Neck / upper back",
    "Mid back",
    "Lower back",
    "Left",
    "Right",
    "No",
    "Yes, it helped",
    "Yes, it did not help",
    "I&#39;m in PT now",
    "Best time to call",
    "Preferred language",
    "Phone calls",
    "Text messages (SMS)",
    "OK to leave a detailed voicemail",
    "Yes",
    "Leave this field empty",
]
LEGENDS = [
    "Where does it hurt?",
    "Which side?",
    "Have you tried physical therapy?",
    "Since this started, any new trouble controlling your bladder or bowels, or numbness between your legs?",
    "Any new weakness in a leg or foot?",
    "How may we contact you?",
]


@pytest.fixture
def app_config(app_config: Any) -> Any:
    app_config.EMBED_ORIGINS = [EMBED]
    return app_config


@pytest.fixture
def form_page(client: Any, frozen_clock: Any) -> Any:
    """GET the form at START, then let 45 s pass (a person filling it in); return the HTML."""

    def fetch(query: str = "", **kwargs: Any) -> str:
        frozen_clock(START)
        page = client.get(FORM + query, **kwargs)
        assert page.status_code == 200
        frozen_clock(START + timedelta(seconds=45))
        return page.get_data(as_text=True)

    return fetch


def token_in(page: str) -> str:
    match = re.search(r'name="form_token" type="hidden" value="([^"]+)"', page)
    assert match, "no form token in the page"
    return match.group(1)


def hidden_value(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', page)
    assert match, f"no hidden {name}"
    return htmllib.unescape(match.group(1))


def answers(**overrides: Any) -> dict[str, Any]:
    """A patient's complete, valid answers."""
    data: dict[str, Any] = {
        "first_name": "Maria",
        "last_name": "Gonzalez",
        "phone": "(469) 231-4567",
        "email": "maria.gonzalez@example.com",
        "message": "My lower back locks up and the pain shoots down my left leg. 6 weeks of PT, no better.",
        "where_it_hurts": ["lower"],
        "side": ["left"],
        "tried_pt": "did_not_help",
        "red_flag_bladder": "no",
        "red_flag_weakness": "no",
        "preferred_time": "Morning",
        "language": "Spanish",
        "consent_phone": "y",
        "consent_sms": "y",
        "consent_detailed_voicemail": "y",
        "website": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def submit(client: Any, form_page: Any) -> Any:
    """Fetch the form, then post answers with its token from the app's own origin."""

    def post(
        query: str = "", headers: dict[str, str] | None = None, token: str | None = None, **overrides: Any
    ) -> Any:
        page = form_page(query)
        data = answers(**overrides)
        data.setdefault("form_token", token if token is not None else token_in(page))
        for name in ("landing_page", "referrer", "utm_source", "utm_medium", "utm_campaign"):
            data.setdefault(name, hidden_value(page, name))
        return client.post(FORM, data=data, headers={"Origin": OWN_ORIGIN} if headers is None else headers)

    return post


def count(model: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def nothing_stored() -> bool:
    return count(Lead) == 0 and count(AppointmentRequest) == 0 and count(Consent) == 0


# --------------------------------------------------------------------------- the page


def test_it_shows_every_field_with_a_visible_label(client):
    response = client.get(FORM)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in LABELS:
        assert re.search(rf'<label for="[\w-]+">{re.escape(text)}</label>', page), text
    for text in LEGENDS:
        assert f"<legend>{text}</legend>" in page
    assert "CRM" not in page  # the patients' layout, not the staff one
    assert 'href="tel:+19724995457"' in page


def test_it_shows_the_consent_text(client):
    page = client.get(FORM).get_data(as_text=True)
    assert "By ticking a box you agree that Advanced Spine Center may contact you" in page


def test_it_sets_no_cookie_so_it_works_inside_another_site(client, submit):
    assert "Set-Cookie" not in client.get(FORM).headers
    assert "Set-Cookie" not in submit(first_name="").headers


def test_it_carries_the_embedding_pages_campaign_into_hidden_fields(form_page):
    page = form_page(
        "?landing_page=https://www.advancedspinecenter.example/back-spasms&utm_source=google"
        "&utm_medium=cpc&utm_campaign=" + "x" * 300,
        headers={"Referer": "https://www.google.com/"},
    )
    assert hidden_value(page, "landing_page") == "https://www.advancedspinecenter.example/back-spasms"
    assert hidden_value(page, "utm_source") == "google"
    assert hidden_value(page, "utm_medium") == "cpc"
    assert hidden_value(page, "utm_campaign") == "x" * 120
    assert hidden_value(page, "referrer") == "https://www.google.com/"


def test_its_own_address_is_not_kept_as_the_referrer(form_page):
    page = form_page(headers={"Referer": "http://localhost/request-appointment"})
    assert hidden_value(page, "referrer") == ""


# --------------------------------------------------------------------------- validation


def test_each_bad_field_gets_its_message_and_the_rest_is_kept(submit):
    response = submit(
        first_name="  ",
        phone="555",
        email="maria@",
        message="Spasms <b>every</b> morning",
        red_flag_weakness=None,
        tried_pt="sometimes",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p class="field-error" id="first_name-error">Please enter your first name.</p>' in page
    assert 'id="phone-error">We couldn&#39;t read this phone number.' in page
    assert 'id="email-error">Please check this email address' in page
    assert 'id="red_flag_weakness-error">Please answer yes or no.</p>' in page
    assert 'id="tried_pt-error">Please choose from the options shown.</p>' in page
    assert 'aria-describedby="phone-hint phone-error" aria-invalid="true"' in page
    # Everything else is kept as typed.
    assert 'value="Gonzalez"' in page
    assert "Spasms &lt;b&gt;every&lt;/b&gt; morning" in page
    assert 'id="where_it_hurts-2" name="where_it_hurts" type="checkbox" value="lower"' in page
    assert re.search(r'checked id="where_it_hurts-2"', page)
    assert re.search(r'checked id="red_flag_bladder-0"', page)
    assert re.search(r'checked id="consent_sms"', page)
    assert '<option selected value="Spanish">' in page
    assert nothing_stored()


def test_a_phone_or_an_email_is_required(submit):
    response = submit(phone="", email="", consent_phone=None, consent_sms=None, consent_email="y")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Please enter a phone number or an email address, so we can reach you." in page
    assert nothing_stored()


def test_at_least_one_way_to_contact_must_be_ticked(submit):
    response = submit(consent_phone=None, consent_sms=None, consent_email=None)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="consent-error">Please tick at least one way we may contact you.</p>' in page
    assert nothing_stored()


def test_a_ticked_channel_needs_its_address(submit):
    response = submit(email="", consent_email="y")
    assert "Please add an email address so we can write to you." in response.get_data(as_text=True)
    assert nothing_stored()


@pytest.mark.parametrize("field", ["first_name", "last_name", "phone", "email", "message"])
def test_nul_and_control_characters_are_refused_with_a_message(submit, field):
    response = submit(**{field: "Maria\x00\x07" if field != "email" else "maria\x00@example.com"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error">This contains hidden control characters. Please retype it.' in page
    assert "\x00" not in page
    assert nothing_stored()


def test_ten_thousand_characters_and_script_in_every_text_field_are_refused_and_escaped(submit):
    hostile = "<script>alert(1)</script>" + "x" * 10_000
    response = submit(first_name=hostile, last_name=hostile, phone=hostile, email=hostile, message=hostile)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for field, limit in (("first_name", 100), ("last_name", 100), ("phone", 40), ("message", 5000)):
        assert f'id="{field}-error">Please keep this under {limit:,} characters.' in page
    assert nothing_stored()


def test_hostile_campaign_values_are_trimmed_quietly(submit, client):
    query = "?utm_source=%00%3Cscript%3E&landing_page=" + "y" * 900
    response = submit(query, first_name="")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert hidden_value(page, "utm_source") == "<script>"
    assert hidden_value(page, "landing_page") == "y" * 500
    assert 'name="utm_source" type="hidden" value="&lt;script&gt;"' in page


def test_a_body_that_is_not_utf8_gets_a_clear_message_not_a_500(client, form_page):
    token = token_in(form_page())
    body = b"first_name=Mar\xff\xfeia&last_name=Gonzalez&phone=4692314567&form_token=" + token.encode()
    response = client.post(
        FORM, data=body, content_type="application/x-www-form-urlencoded", headers={"Origin": OWN_ORIGIN}
    )
    assert response.status_code == 400
    assert "We couldn't read what your browser sent" in response.get_data(as_text=True)
    assert nothing_stored()


def test_a_multipart_field_that_is_not_utf8_gets_its_message(client, form_page):
    data = {**answers(), "form_token": token_in(form_page())}
    boundary = "b0undary"
    parts = [(k, v) for k, v in data.items() if isinstance(v, str)]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode()
            + (b"Mar\xff\xfeia" if k == "first_name" else str(v).encode())
            + b"\r\n"
            for k, v in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = client.post(
        FORM,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"Origin": OWN_ORIGIN},
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="first_name-error">Some characters could not be read. Please retype them.' in page
    assert nothing_stored()


# --------------------------------------------------------------------------- anti-forgery


@pytest.mark.parametrize("token", ["", "not-a-token", "eyJ2IjoiMjAyNi0xMS12MSJ9.Zx0.forged"])
def test_a_missing_or_forged_token_is_refused_kindly_and_nothing_is_stored(submit, token):
    response = submit(token=token)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "We couldn't confirm this form came from our website." in page
    assert 'value="Maria"' in page  # what the patient typed is still there
    assert nothing_stored()


def test_a_token_signed_with_another_key_is_refused(submit, app):
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("someone-elses-key", salt="public-form").dumps({"v": "x"})
    assert submit(token=forged).status_code == 400
    assert nothing_stored()


def test_an_expired_token_asks_to_send_again_and_stores_nothing(client, form_page, frozen_clock):
    page = form_page()
    frozen_clock(START + timedelta(hours=2, seconds=5))
    response = client.post(
        FORM, data={**answers(), "form_token": token_in(page)}, headers={"Origin": OWN_ORIGIN}
    )
    assert response.status_code == 400
    assert "This page was open for a while" in response.get_data(as_text=True)
    assert nothing_stored()


def test_a_form_sent_faster_than_a_person_types_is_not_taken(client, frozen_clock):
    frozen_clock(START)
    page = client.get(FORM).get_data(as_text=True)
    response = client.post(
        FORM, data={**answers(), "form_token": token_in(page)}, headers={"Origin": OWN_ORIGIN}
    )
    assert response.status_code == 400
    assert "That was quicker than we expected." in response.get_data(as_text=True)
    assert nothing_stored()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
        {"Referer": "https://evil.example/page"},
    ],
)
def test_a_post_from_another_site_is_refused_and_nothing_is_stored(submit, headers):
    response = submit(headers=headers)
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "We couldn't accept this request" in page
    assert 'href="tel:+19724995457"' in page
    assert nothing_stored()


def test_a_filled_honeypot_looks_like_success_but_stores_nothing(client, submit):
    response = submit(website="http://cheap-pills.example", red_flag_bladder="yes")
    assert response.status_code == 303
    assert "/request-appointment/thanks?r=" in response.headers["Location"]
    thanks = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thank you, we have your request" in thanks
    assert nothing_stored()


def test_the_honeypot_is_hidden_from_people_and_keyboards(client):
    page = client.get(FORM).get_data(as_text=True)
    assert re.search(
        r'<div class="hp" aria-hidden="true">\s*<label for="website">Leave this field empty</label>', page
    )
    assert re.search(r'<input autocomplete="off" id="website" name="website" tabindex="-1"', page)


@pytest.fixture
def three_per_hour(app_config):
    app_config.FORM_RATE_LIMIT = "3 per hour"
    return app_config


def test_the_rate_limit_per_address_refuses_the_fourth_post_in_an_hour(
    three_per_hour, client, submit, frozen_clock
):
    for _ in range(3):
        assert submit(first_name="").status_code == 422
    refused = submit()
    page = refused.get_data(as_text=True)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    assert "We've had a lot of requests from your connection" in page
    assert 'href="tel:+19724995457">(972) 499-5457</a>' in page
    assert nothing_stored()
    assert db.session.scalar(sa.select(sa.func.count()).where(ThrottleHit.scope == "public-form")) == 3
    # An hour later the address may send again.
    frozen_clock(START + timedelta(hours=1, minutes=1))
    page2 = client.get(FORM).get_data(as_text=True)
    frozen_clock(START + timedelta(hours=1, minutes=2))
    again = client.post(
        FORM, data={**answers(first_name=""), "form_token": token_in(page2)}, headers={"Origin": OWN_ORIGIN}
    )
    assert again.status_code == 422


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("path", [FORM, FORM + "/thanks"])
def test_the_form_may_be_framed_by_the_clinics_sites(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {EMBED}" in csp
    assert "script-src 'self'" in csp
    assert "X-Frame-Options" not in response.headers


def test_staff_pages_still_refuse_every_frame(client):
    response = client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_refusal_pages_are_framable_too(submit):
    response = submit(headers={"Origin": "https://evil.example"})
    assert f"frame-ancestors 'self' {EMBED}" in response.headers["Content-Security-Policy"]


def test_a_tampered_thanks_token_shows_the_plain_confirmation(client):
    page = client.get(FORM + "/thanks?r=eyJ1cmdlbnQiOnRydWV9.forged.sig").get_data(as_text=True)
    assert "Thank you, we have your request" in page
    assert "call 911 now" not in page


# --------------------------------------------------------------------------- with intake


def test_a_valid_request_makes_a_tagged_lead_and_shows_the_confirmation(client, submit):
    response = submit(
        "?landing_page=https://www.advancedspinecenter.example/back-spasms&utm_source=google&utm_medium=cpc"
        "&utm_campaign=spring"
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/request-appointment/thanks?r=")
    assert "Maria" not in location and "4567" not in location  # no patient data in the address
    lead = db.session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.last_name, lead.phone) == ("Maria", "Gonzalez", "+14692314567")
    assert lead.source == "web_form"
    assert lead.urgent is False
    codes = {t.code: t.origin for t in lead.tags if t.state == "active"}
    assert {"region:lower", "side:left", "history:failed_pt"} <= set(codes)
    assert codes["side:left"] in {"patient", "auto"}
    request_row = db.session.scalars(sa.select(AppointmentRequest)).one()
    assert request_row.lead_id == lead.id
    assert request_row.consent_text_version == intake.CONSENT_TEXT_VERSION
    assert request_row.landing_page == "https://www.advancedspinecenter.example/back-spasms"
    assert (request_row.utm_source, request_row.utm_medium, request_row.utm_campaign) == (
        "google",
        "cpc",
        "spring",
    )
    assert request_row.ip_address == "127.0.0.1"
    assert "6 weeks of PT" in (request_row.message or "")
    assert (lead.consent_phone, lead.consent_sms, lead.consent_email) == (True, True, False)
    assert lead.consent_detailed_voicemail is True

    thanks = client.get(location).get_data(as_text=True)
    assert "Thank you, we have your request" in thanks
    assert "within one business day" in thanks
    assert '<a class="phone-link" href="tel:+19724995457">(972) 499-5457</a>' in thanks
    assert "call 911 now" not in thanks


@pytest.mark.parametrize("question", ["red_flag_bladder", "red_flag_weakness"])
def test_a_red_flag_yes_makes_the_lead_urgent_and_puts_emergency_advice_first(client, submit, question):
    response = submit(**{question: "yes"})
    assert response.status_code == 303
    assert db.session.scalars(sa.select(Lead)).one().urgent is True
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    body = page.split("<body", 1)[1]
    advice = body.index("Please go to an emergency room or call 911 now.")
    assert advice < body.index("clinic-head") < body.index("We have your request too")
    assert 'href="tel:911"' in page


@pytest.mark.parametrize("typed", ["972.555.0134", "(972) 555-0134", "+1 972 555 0134"])
def test_any_readable_phone_form_is_taken(submit, typed):
    assert submit(phone=typed).status_code == 303
    assert db.session.scalars(sa.select(Lead)).one().phone == "+19725550134"


def test_html_in_a_valid_request_is_kept_as_typed(submit):
    assert submit(first_name="<b>Ann</b>", message="<script>alert(1)</script> my low back").status_code == 303
    lead = db.session.scalars(sa.select(Lead)).one()
    assert lead.first_name == "<b>Ann</b>"
    assert db.session.scalars(sa.select(AppointmentRequest)).one().message.startswith("<script>")


@pytest.mark.parametrize(
    "headers",
    [{"Origin": EMBED}, {"Origin": "http://crm.test"}, {}],
    ids=["embedding-site", "public-base-url", "no-origin-no-referer"],
)
def test_posts_from_allowed_origins_are_taken(submit, headers):
    assert submit(headers=headers).status_code == 303
    assert count(Lead) == 1


def test_the_referrer_from_the_first_visit_is_kept(client, frozen_clock):
    frozen_clock(START)
    page = client.get(FORM, headers={"Referer": "https://www.google.com/"}).get_data(as_text=True)
    frozen_clock(START + timedelta(seconds=30))
    data = {**answers(), "form_token": token_in(page), "referrer": hidden_value(page, "referrer")}
    response = client.post(
        FORM, data=data, headers={"Origin": OWN_ORIGIN, "Referer": "http://localhost/request-appointment"}
    )
    assert response.status_code == 303
    assert db.session.scalars(sa.select(AppointmentRequest)).one().referrer == "https://www.google.com/"

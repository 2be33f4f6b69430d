"""Security headers on every kind of answer: pages, error pages and static files."""

from __future__ import annotations

import pytest

from config import ProductionConfig
from crm import create_app
from crm.extensions import db
from tests.conftest import csrf_token, sign_in

ALLOWED_SOURCES = {"'self'", "'none'", "data:"}


def _csp(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    directives = [d.strip().split() for d in policy.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def _assert_strict_headers(response, *, embeddable_by: tuple[str, ...] = ()) -> None:
    """The strict headers; ``embeddable_by``: the public form's EMBED_ORIGINS, its only framers."""
    csp = _csp(response)
    ancestors = csp.get("frame-ancestors")
    sources = {source for name, values in csp.items() if name != "frame-ancestors" for source in values}
    assert not any(s.startswith("'unsafe-") for s in sources | set(ancestors or ())), csp
    assert sources <= ALLOWED_SOURCES, f"another origin allowed: {sources - ALLOWED_SOURCES}"
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in {"same-origin", "no-referrer", "strict-origin"}
    if embeddable_by:
        assert ancestors == ["'self'", *embeddable_by], ancestors
        assert "X-Frame-Options" not in response.headers  # it would forbid the clinic's own site
    else:
        assert ancestors == ["'none'"], ancestors
        assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/login", 200), ("/leads", 302), ("/no-such-page", 404), ("/logout", 405)],
)
def test_pages_and_error_pages_carry_strict_headers_and_no_store(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    _assert_strict_headers(response)
    assert "no-store" in response.headers["Cache-Control"]


def test_a_signed_in_page_and_a_403_carry_them_too(client, login_as):
    login_as("front_desk")
    for path, status in [("/leads", 200), ("/admin", 403)]:
        response = client.get(path)
        assert response.status_code == status
        _assert_strict_headers(response)
        assert "no-store" in response.headers["Cache-Control"]


def test_a_csrf_refusal_carries_them(client):
    response = client.post("/login", data={"email": "a@b.test", "password": "x"})
    assert response.status_code == 400
    _assert_strict_headers(response)
    assert "no-store" in response.headers["Cache-Control"]


def test_static_files_carry_the_headers_and_may_be_cached(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    _assert_strict_headers(response)
    # No patient data in a stylesheet: the browser may keep it.
    assert "no-store" not in response.headers.get("Cache-Control", "")
    response.close()


def test_pages_load_nothing_from_another_origin_and_run_no_inline_script(client, login_as):
    login_as("admin")
    for path in ("/admin", "/leads", "/dashboard"):
        html = client.get(path).get_data(as_text=True)
        assert "http://" not in html.replace('"http://www.w3.org/2000/svg"', "")
        assert "https://" not in html, path
        assert "<script>" not in html and " style=" not in html and "onclick" not in html, path


def test_the_session_cookie_is_httponly_and_samesite(client, make_user):
    user = make_user("front_desk")
    response = sign_in(client, user.email)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("crm_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure_and_https_is_enforced(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "f0" * 32)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://crm.spinecenter.example")
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = ProductionConfig()
    cfg.SQLALCHEMY_DATABASE_URI = database_url
    app = create_app(cfg)
    client = app.test_client()
    assert app.test_client().get("http://crm.spinecenter.example/login").status_code in (301, 302)
    page = client.get("https://crm.spinecenter.example/login")
    assert page.status_code == 200
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    response = client.post(
        "https://crm.spinecenter.example/login",
        data={
            "email": "x@clinic.test",
            "password": "y",
            "csrf_token": csrf_token(page.get_data(as_text=True)),
        },
        headers={"Referer": "https://crm.spinecenter.example/login"},  # Flask-WTF checks it on HTTPS
    )
    assert response.status_code == 200  # the form answered (wrong password), CSRF passed
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    with app.app_context():
        db.engine.dispose()


# --------------------------------------------------------------------------- every answer, every role

EMBED = "https://www.advancedspinecenter.example"
WEBHOOK = "/webhooks/twilio/voice-status"


@pytest.fixture
def app_config(app_config):
    app_config.EMBED_ORIGINS = [EMBED]
    return app_config


def _get_pages(app) -> list:
    return [r for r in app.url_map.iter_rules() if "GET" in (r.methods or ()) and r.endpoint != "static"]


def test_every_page_each_role_opens_carries_the_strict_headers(app, make_user, make_lead):
    """Every GET route of the URL map, as every role, and signed out (200, 302, 403 or 404 alike)."""
    from crm.dashboard.routes import CHARTS
    from crm.models import ROLES
    from tests.conftest import CRMTestClient

    lead = make_lead(phone="+19725550199")
    app.test_client_class = CRMTestClient
    checked = 0
    for role in (None, *ROLES):
        client = app.test_client()
        if role:
            assert sign_in(client, make_user(role).email).status_code == 302
        for rule in _get_pages(app):
            values = {arg: (lead.id if "id" in arg else CHARTS[0]) for arg in rule.arguments}
            url = rule.build(values, append_unknown=False)[1]
            response = client.get(url)
            assert response.status_code < 500, (role, url)
            public_form = rule.endpoint in {"public.request_appointment", "public.thanks"}
            _assert_strict_headers(response, embeddable_by=(EMBED,) if public_form else ())
            response.close()
            checked += 1
    print(f"\nstrict headers on {checked} answers (every GET route × signed out and each role)")


def test_the_public_form_may_be_framed_only_by_the_embed_origins_even_when_refused(client):
    for response in (
        client.get("/request-appointment"),
        client.post("/request-appointment", data={}, headers={"Origin": EMBED}),  # no token: 400
        client.post("/request-appointment", data={}, headers={"Origin": "https://evil.example"}),  # 403
        client.get("/request-appointment/thanks"),
    ):
        assert response.status_code in (200, 400, 403)
        _assert_strict_headers(response, embeddable_by=(EMBED,))


def test_api_and_webhook_answers_and_more_error_pages_carry_them(client, login_as):
    answers = [
        client.get("/api/v1/openapi.json"),
        client.get("/api/v1/leads"),  # 401: no token
        client.get("/api/v1/leads", headers={"Authorization": "Bearer nope"}),
        client.post("/api/v1/leads", data="{", content_type="application/json"),
        client.delete("/api/v1/leads"),  # 405 in the API's shape
        client.post(WEBHOOK, data={"CallSid": "CA1"}),  # 403: unsigned
        client.get(WEBHOOK),  # 405
        client.get("/static/no-such-file.css"),  # 404 from the static route
    ]
    login_as("front_desk")
    answers.append(client.get("/leads/99999999999999999999999"))  # 404: past any id
    answers.append(client.post("/leads/import", data={"csrf_token": "forged"}))  # 400: CSRF
    for response in answers:
        assert response.status_code in (200, 400, 401, 403, 404, 405), response.status_code
        _assert_strict_headers(response)
        if response.status_code == 405:
            assert response.headers["Allow"]


def test_production_sends_hsts_on_every_kind_of_answer(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "f0" * 32)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://crm.spinecenter.example")
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = ProductionConfig()
    cfg.SQLALCHEMY_DATABASE_URI = database_url
    app = create_app(cfg)
    client = app.test_client()
    base = "https://crm.spinecenter.example"
    for path in ("/login", "/request-appointment", "/static/css/app.css", "/api/v1/openapi.json", "/nope"):
        response = client.get(base + path)
        hsts = response.headers.get("Strict-Transport-Security", "")
        max_age = int(hsts.split("max-age=")[1].split(";")[0]) if "max-age=" in hsts else 0
        assert max_age >= 31_536_000 and "includeSubDomains" in hsts, (path, hsts)
        response.close()
    with app.app_context():
        db.engine.dispose()

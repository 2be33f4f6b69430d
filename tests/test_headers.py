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


def _assert_strict_headers(response) -> None:
    csp = _csp(response)
    sources = {source for values in csp.values() for source in values}
    assert not any(s.startswith("'unsafe-") for s in sources), csp
    assert sources <= ALLOWED_SOURCES, f"another origin allowed: {sources - ALLOWED_SOURCES}"
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in {"same-origin", "no-referrer", "strict-origin"}
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

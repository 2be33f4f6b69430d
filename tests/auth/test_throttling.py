"""Sign-in throttling: accounts lock after 5 failures, addresses slow only after 50,
and the counts live in the database so every gunicorn worker sees them."""

from __future__ import annotations

import re
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from crm.extensions import db
from crm.models import ThrottleHit, UserSession
from crm.security import GENERIC_FAILURE
from tests.conftest import DEFAULT_PASSWORD, sign_in, utc
from tests.servers import gunicorn_server

T0 = utc(2026, 3, 9, 14, 0)
LOCKED = "This account is locked for 15 minutes"
SLOWED = "Too many failed sign-ins from this network"
GENERIC_HTML = GENERIC_FAILURE.replace("'", "&#39;")


def _fail(client, email: str, times: int) -> None:
    for _ in range(times):
        page = sign_in(client, email, "a-wrong-password-typed-here").get_data(as_text=True)
        assert GENERIC_HTML in page


def _sessions() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(UserSession))


def test_five_failures_lock_the_account_even_for_the_right_password(client, make_user, frozen_clock):
    frozen_clock(T0)
    user = make_user("front_desk")
    _fail(client, user.email, 4)
    assert sign_in(client, user.email).status_code == 302  # four typos: still fine
    _sign_out_by_cookie(client)
    _fail(client, user.email, 5)

    response = sign_in(client, user.email, DEFAULT_PASSWORD)

    assert response.status_code == 200
    assert LOCKED in response.get_data(as_text=True)
    assert _sessions() == 1  # only the sign-in before the lock
    assert client.get("/leads").status_code == 302


def _sign_out_by_cookie(client) -> None:
    client.delete_cookie("crm_session")


def test_the_lock_lasts_15_minutes_from_the_fifth_failure(client, make_user, frozen_clock):
    user = make_user("front_desk")
    for minute in range(5):  # one failure a minute: T0 … T0+4
        frozen_clock(T0 + timedelta(minutes=minute))
        _fail(client, user.email, 1)
    frozen_clock(T0 + timedelta(minutes=16))  # the first failure has aged out of the window
    assert LOCKED in sign_in(client, user.email).get_data(as_text=True)
    frozen_clock(T0 + timedelta(minutes=19, seconds=1))  # 15 min after the fifth
    assert sign_in(client, user.email).status_code == 302
    assert _sessions() == 1


def test_failures_older_than_the_window_do_not_count(client, make_user, frozen_clock):
    user = make_user("front_desk")
    frozen_clock(T0)
    _fail(client, user.email, 4)
    frozen_clock(T0 + timedelta(minutes=16))
    _fail(client, user.email, 1)
    assert sign_in(client, user.email).status_code == 302


def test_unknown_emails_lock_the_same_way(client, make_user, frozen_clock):
    frozen_clock(T0)
    known = make_user("front_desk")
    unknown = "nobody.here@clinic.test"
    _fail(client, known.email, 5)
    _fail(client, unknown, 5)

    locked_known = sign_in(client, known.email, DEFAULT_PASSWORD).get_data(as_text=True)
    locked_unknown = sign_in(client, unknown, DEFAULT_PASSWORD).get_data(as_text=True)

    assert LOCKED in locked_known and LOCKED in locked_unknown
    message = re.compile(r'<div class="alert alert-error" role="alert">.*?</div>', re.S)
    assert message.search(locked_known).group(0) == message.search(locked_unknown).group(0)
    counts = dict(
        db.session.execute(
            sa.select(ThrottleHit.key, sa.func.count())
            .where(ThrottleHit.scope == "login-account")
            .group_by(ThrottleHit.key)
        ).all()
    )
    assert counts == {known.email: 5, unknown: 5}


def test_one_persons_typos_do_not_lock_the_desk(client, make_user, frozen_clock):
    frozen_clock(T0)
    typist, colleague = make_user("front_desk"), make_user("front_desk")
    _fail(client, typist.email, 5)
    assert sign_in(client, colleague.email).status_code == 302


def _seed_address_failures(count: int, ip: str = "127.0.0.1") -> None:
    # Arranged as rows: 49 real sign-ins would spend seconds in Argon2 for nothing.
    db.session.add_all(
        ThrottleHit(scope="login-address", key=ip, at=T0 - timedelta(minutes=5)) for _ in range(count)
    )
    db.session.commit()


def test_an_address_is_not_slowed_before_50_failures(client, make_user, frozen_clock):
    frozen_clock(T0)
    user = make_user("front_desk")
    _seed_address_failures(48)
    _fail(client, "someone.else@clinic.test", 1)  # 49 from this address
    assert sign_in(client, user.email).status_code == 302


def test_an_address_is_slowed_after_50_failures(client, make_user, frozen_clock):
    frozen_clock(T0)
    user = make_user("front_desk")
    _seed_address_failures(49)
    _fail(client, "someone.else@clinic.test", 1)  # the 50th

    response = sign_in(client, user.email)

    assert response.status_code == 200
    assert SLOWED in response.get_data(as_text=True)
    assert _sessions() == 0
    frozen_clock(T0 + timedelta(minutes=16))  # the window passes
    assert sign_in(client, user.email).status_code == 302


def test_a_successful_sign_in_clears_the_accounts_failures(client, make_user, frozen_clock):
    frozen_clock(T0)
    user = make_user("front_desk")
    _fail(client, user.email, 4)
    assert sign_in(client, user.email).status_code == 302
    client.delete_cookie("crm_session")
    _fail(client, user.email, 4)
    assert sign_in(client, user.email).status_code == 302  # 8 failures, never 5 in a row


# --------------------------------------------------------------------------- across workers


@pytest.fixture
def gunicorn(database_url, tmp_path, make_user):
    """Serve the test's committed database with gunicorn, 2 sync workers; yield (url, access log)."""
    # The access log names the pid of the worker that answered each request. Sync workers
    # (gunicorn.conf.py's are threaded): a half-sent request then occupies one of them, which
    # steers the posts to the other; the lock itself lives in the database either way.
    args = ("--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "--worker-class", "sync", "--threads", "1")
    with gunicorn_server(database_url, tmp_path / "server", args=args) as server:
        yield server.url, server.access_log


def _occupy_a_worker(url: str) -> socket.socket:
    """Open a connection and send half a request: a sync worker waits on it, unavailable."""
    host, port = url.removeprefix("http://").split(":")
    blocker = socket.create_connection((host, int(port)))
    blocker.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")  # no blank line: never finished
    time.sleep(0.2)  # let a worker accept it
    return blocker


def _post_login(http: requests.Session, url: str, email: str, password: str) -> requests.Response:
    page = http.get(f"{url}/login", timeout=5).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return http.post(
        f"{url}/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=5,
        headers={"Connection": "close"},
    )


def _login_posts(access_log: Path) -> list[tuple[int, str]]:
    """Return (worker pid, status) of each POST /login, in order."""
    time.sleep(0.1)  # gunicorn writes the line after answering
    rows = [line.split() for line in access_log.read_text().splitlines()]
    return [(int(r[0].strip("<>")), r[3]) for r in rows if r[1:3] == ["POST", "/login"]]


@pytest.mark.server
def test_the_account_lock_holds_across_gunicorn_workers(gunicorn, make_user):
    url, access_log = gunicorn
    email = make_user("front_desk").email
    db.session.commit()  # end the test's transaction: on SQLite it would hold the write lock
    http = requests.Session()

    # Worker A is kept busy, so worker B takes all five failures; then B is kept busy and A
    # is freed, so the right password goes to A.
    blockers = [_occupy_a_worker(url)]
    try:
        for _ in range(5):
            assert GENERIC_HTML in _post_login(http, url, email, "a-wrong-password-typed-here").text
        blockers.append(_occupy_a_worker(url))
        blockers.pop(0).close()
        response = _post_login(http, url, email, DEFAULT_PASSWORD)
    finally:
        for blocker in blockers:
            blocker.close()
        http.close()

    assert response.status_code == 200
    assert LOCKED in response.text
    posts = _login_posts(access_log)
    failing_workers = {pid for pid, _ in posts[:5]}
    locked_worker = posts[5][0]
    assert len(failing_workers) == 1 and locked_worker not in failing_workers, posts
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UserSession)) == 0
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).where(ThrottleHit.scope == "login-account", ThrottleHit.key == email)
        )
        == 5
    )

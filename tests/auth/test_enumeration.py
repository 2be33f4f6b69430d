"""No account enumeration (ASVS 2.2.1 / 3.x, NIST SP 800-63B §5.2.2): an unknown email, a known
email with a wrong password and a deactivated account get the same page, the same status and
the same work — each runs one full Argon2id verification, so the time says nothing either."""

from __future__ import annotations

import statistics
import time

from crm import passwords, security
from crm.extensions import db
from tests.conftest import DEFAULT_PASSWORD, csrf_token

ROUNDS = 12


def _attempt(client, email: str, password: str) -> tuple[int, str, float]:
    token = csrf_token(client.get("/login").get_data(as_text=True))
    started = time.perf_counter()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    elapsed = time.perf_counter() - started
    body = response.get_data(as_text=True)
    return response.status_code, body.replace(csrf_token(body), "") if "csrf_token" in body else body, elapsed


def test_each_kind_of_failure_runs_one_password_verification(client, make_user, monkeypatch):
    """Counted by wrapping the real verifier (it still runs): a skipped hash would show as 0."""
    known = make_user("front_desk")
    gone = make_user("front_desk", active=False)
    calls: list[str | None] = []
    real = passwords.verify_password

    def counting(stored_hash: str | None, password: str) -> bool:
        calls.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(security, "verify_password", counting)
    for email, password in [
        ("nobody-at-all@clinic.test", DEFAULT_PASSWORD),
        (known.email, "not-the-right-password-at-all"),
        (gone.email, DEFAULT_PASSWORD),
    ]:
        calls.clear()
        status, _body, _ = _attempt(client, email, password)
        assert status == 200 and len(calls) == 1, (email, calls)


def test_unknown_and_known_emails_answer_alike_in_words_and_time(client, make_user, monkeypatch):
    # At the deployed cost (the suite's own is lower), so Argon2id's time is what is compared.
    monkeypatch.setattr(passwords, "_hasher", passwords._hasher)  # both restored after the test
    monkeypatch.setattr(passwords, "_DUMMY_HASH", passwords._DUMMY_HASH)
    passwords.configure(memory_kib=passwords.MEMORY_KIB, time_cost=passwords.TIME_COST)
    stored = passwords.hash_password(DEFAULT_PASSWORD)
    users = [make_user("front_desk", password_hash=stored) for _ in range(ROUNDS)]
    db.session.commit()
    known, unknown = [], []
    bodies = set()
    for n, user in enumerate(users):
        status_k, body_k, t_k = _attempt(client, user.email, "not-the-right-password-at-all")
        status_u, body_u, t_u = _attempt(client, f"nobody-{n}@clinic.test", "not-the-right-password-at-all")
        assert status_k == status_u == 200
        bodies |= {body_k.replace(user.email, "EMAIL"), body_u.replace(f"nobody-{n}@clinic.test", "EMAIL")}
        known.append(t_k)
        unknown.append(t_u)
    assert len(bodies) == 1, "the two failures must render the same page"
    k, u = statistics.median(known), statistics.median(unknown)
    print(
        f"\nsign-in failure, median of {ROUNDS}: "
        f"known email {k * 1000:.1f} ms, unknown email {u * 1000:.1f} ms"
    )
    # A skipped hash would be ~10x faster; the bound leaves room for a busy CI machine.
    assert 0.5 < u / k < 2.0, (k, u)

"""Sign-in, server-side sessions, throttling and security headers.

Sessions are rows (``UserSession``): the signed cookie carries only the row's random id,
so sign-out, a password change or a deactivation ends every copy of a session, and idle
and absolute limits are enforced by the server, not the browser. Throttling counts live
in the database, so every gunicorn worker sees the same numbers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, request, session
from flask_login import login_user, logout_user
from flask_talisman import Talisman

from crm import clock, twofactor
from crm.extensions import db, login_manager
from crm.models import ThrottleHit, User, UserSession
from crm.passwords import check_policy, hash_password, needs_rehash, verify_password

talisman = Talisman()

# Requests a page makes by itself (the queue's auto-refresh) send this header: they must not
# count as activity, or a screen left open would never be logged out for idleness.
BACKGROUND_HEADER = "X-Background-Refresh"
# Writing last_seen on every request would turn every page view into a write; a minute's
# resolution is plenty for a 15-minute idle limit.
TOUCH_EVERY = timedelta(seconds=60)

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": ["'self'", "data:"],
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def init_security(app: Flask) -> None:
    """Install headers, the session loader and the no-store rule for pages."""
    talisman.init_app(
        app,
        force_https=app.config["FORCE_HTTPS"],
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="same-origin",
        strict_transport_security=app.config["FORCE_HTTPS"],
        permissions_policy={"camera": "()", "microphone": "()", "geolocation": "()"},
    )
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # our own session rows do this job, better
    login_manager.user_loader(load_user_for_session)
    app.after_request(_no_store)


def _no_store(response: Response) -> Response:
    """Keep patient pages out of browser and proxy caches."""
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def client_ip() -> str:
    """Return the client address (ProxyFix has already applied the trusted hops)."""
    return request.remote_addr or "unknown"


# --------------------------------------------------------------------------- sessions


def _live_session(*, pending: bool) -> tuple[UserSession, User] | None:
    """This browser's session row that has not ended, and its user: a complete sign-in, or a pending one."""
    sid = session.get("sid")
    if not sid:
        return None
    state = UserSession.pending.is_not(None) if pending else UserSession.pending.is_(None)
    row = db.session.execute(
        sa.select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id == sid, UserSession.ended_at.is_(None), state)
    ).first()
    return (row[0], row[1]) if row is not None else None


def load_user_for_session(user_id: str) -> User | None:
    """Load the signed-in user if their session row is live; end it when it has expired."""
    # A pending row (password passed, second factor not yet) signs nobody in.
    row = _live_session(pending=False)
    if row is None:
        return None
    user_session, user = row
    if str(user.id) != str(user_id) or not user.active:
        return None
    if not user.totp_enabled and twofactor.required_for(user):
        # The role came to require 2FA (or an admin reset it) after this sign-in: sign in
        # again, which leads through enrolment.
        return None
    now = clock.now()
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    if now - user_session.last_seen_at > idle or now - user_session.created_at > absolute:
        user_session.ended_at = now
        db.session.commit()
        session.clear()
        return None
    if now - user_session.last_seen_at > TOUCH_EVERY and not request.headers.get(BACKGROUND_HEADER):
        user_session.last_seen_at = now
        db.session.commit()
    return user


def start_session(user: User, *, pending: str | None = None) -> None:
    """Sign a user in with a fresh session row and a fresh cookie.

    With ``pending`` ("code" or "enrol") the row only records that the password passed:
    nobody is signed in until ``complete_sign_in`` replaces it with a full session.
    """
    session.clear()  # nothing from before sign-in survives it
    sid = secrets.token_urlsafe(32)
    db.session.add(
        UserSession(
            id=sid,
            user_id=user.id,
            ip_address=client_ip(),
            created_at=clock.now(),
            last_seen_at=clock.now(),
            pending=pending,
        )
    )
    db.session.commit()
    session["sid"] = sid
    if pending is None:
        login_user(user)


def pending_sign_in() -> tuple[UserSession, User] | None:
    """Return this browser's half-done sign-in (password passed, second factor due), if live."""
    row = _live_session(pending=True)
    if row is None:
        return None
    user_session, user = row
    limit = timedelta(minutes=current_app.config["SECOND_FACTOR_MINUTES"])
    if not user.active or clock.now() - user_session.created_at > limit:
        user_session.ended_at = clock.now()
        db.session.commit()
        session.clear()
        return None
    return user_session, user


def complete_sign_in(user: User) -> None:
    """Finish a two-step sign-in: end the pending row and start a full session (a new id)."""
    end_session()
    start_session(user)


def end_session() -> None:
    """Sign out: end this session's row and clear the cookie."""
    sid = session.get("sid")
    if sid:
        db.session.execute(sa.update(UserSession).where(UserSession.id == sid).values(ended_at=clock.now()))
        db.session.commit()
    logout_user()
    session.clear()


def end_all_sessions(user: User) -> int:
    """End every session of a user (deactivation, password change); return how many."""
    result = db.session.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        .values(ended_at=clock.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_password(user: User, password: str) -> int:
    """Give a user a new password and end every session they have; return how many ended.

    :raises WeakPassword: when the password breaks the policy.
    """
    check_policy(password, email=user.email, name=user.name)
    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    return end_all_sessions(user)


# --------------------------------------------------------------------------- throttling


def record_hit(scope: str, key: str) -> None:
    """Count one event (e.g. a failed sign-in) for a scope and key."""
    db.session.add(ThrottleHit(scope=scope, key=key[:300], at=clock.now()))


def count_hits(scope: str, key: str, window: timedelta) -> int:
    """Count the events of a scope and key within the window that ends now."""
    since = clock.now() - window
    return int(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ThrottleHit)
            .where(ThrottleHit.scope == scope, ThrottleHit.key == key[:300], ThrottleHit.at >= since)
        )
        or 0
    )


def clear_hits(scope: str, key: str) -> None:
    """Forget a key's events (after a successful sign-in)."""
    db.session.execute(sa.delete(ThrottleHit).where(ThrottleHit.scope == scope, ThrottleHit.key == key[:300]))


def purge_old_hits(older_than: timedelta = timedelta(days=1)) -> None:
    """Delete events too old to count for any limit."""
    db.session.execute(sa.delete(ThrottleHit).where(ThrottleHit.at < clock.now() - older_than))


# --------------------------------------------------------------------------- sign-in

GENERIC_FAILURE = "That email and password don't match an active account."
RENEW_CODES = "Make new ones on the Account security page (your name, top right)."
WRONG_CODE = "That code doesn't match. Check your authenticator app and type the code it shows now."


@dataclass(frozen=True)
class SignInResult:
    """What a sign-in attempt came to: the user, or a message to show."""

    user: User | None
    message: str | None = None
    locked: bool = False


def authenticate(email: str, password: str, ip: str) -> SignInResult:
    """Check credentials under the account and address limits; never say which part was wrong."""
    cfg: dict[str, Any] = current_app.config
    window = timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"])
    email = email.strip().lower()
    if count_hits("login-address", ip, window) >= cfg["LOGIN_ADDRESS_FAILURES"]:
        return SignInResult(
            None,
            "Too many failed sign-ins from this network. Wait a few minutes, then try again.",
        )
    if count_hits("login-account", email, window) >= cfg["LOGIN_ACCOUNT_FAILURES"] or count_hits(
        "login-lock", email, window
    ):
        # Counted for unknown emails too, so a lock says nothing about whether one exists.
        return SignInResult(None, _locked_message(cfg))
    user = db.session.scalar(sa.select(User).where(User.email == email))
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        record_hit("login-account", email)
        record_hit("login-address", ip)
        db.session.flush()
        if count_hits("login-account", email, window) >= cfg["LOGIN_ACCOUNT_FAILURES"]:
            # The lock runs a full window from the failure that set it, not until the first
            # failure of the series ages out (which would allow one guess every few minutes).
            record_hit("login-lock", email)
        db.session.commit()
        return SignInResult(None, GENERIC_FAILURE)
    clear_hits("login-account", email)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    db.session.commit()
    return SignInResult(user)


def _locked_message(cfg: dict[str, Any]) -> str:
    return (
        f"This account is locked for {cfg['LOGIN_WINDOW_MINUTES']} minutes after too many "
        "failed sign-ins. Ask an admin if you need in sooner."
    )


def check_second_factor(user: User, code: str, ip: str) -> SignInResult:
    """Check a sign-in code (or recovery code) under the same account lock as passwords.

    Wrong codes count in their own scope; reaching ``LOGIN_ACCOUNT_FAILURES`` of them sets
    the account's sign-in lock, so guessing codes is no cheaper than guessing passwords.
    The result's ``locked`` says the pending sign-in must end.
    """
    cfg: dict[str, Any] = current_app.config
    window = timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"])
    email = user.email
    if count_hits("login-lock", email, window):
        return SignInResult(None, _locked_message(cfg), locked=True)
    try:
        kind = twofactor.verify(user, code, ip=ip)
    except twofactor.TwoFactorRefused as refusal:  # the stored secret cannot be read
        return SignInResult(None, str(refusal))
    if kind is None:
        record_hit("2fa-account", email)
        record_hit("login-address", ip)
        db.session.flush()
        if count_hits("2fa-account", email, window) >= cfg["LOGIN_ACCOUNT_FAILURES"]:
            record_hit("login-lock", email)
            clear_hits("2fa-account", email)
            db.session.commit()
            return SignInResult(None, _locked_message(cfg), locked=True)
        db.session.commit()
        return SignInResult(None, WRONG_CODE)
    clear_hits("2fa-account", email)
    if kind == "recovery":
        left = twofactor.unused_recovery_codes(user)
        db.session.commit()
        return SignInResult(user, f"You signed in with a recovery code; {left} left. {RENEW_CODES}")
    db.session.commit()
    return SignInResult(user)

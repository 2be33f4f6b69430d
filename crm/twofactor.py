"""Two-factor sign-in: TOTP (RFC 6238) with single-use recovery codes (PRODUCT §7, §9).

- The TOTP secret is stored encrypted (Fernet, key derived from ``SECRET_KEY``), and shown
  only while enrolling. Until the first correct code, it lives in a signed, timed token in
  the enrolment form, not in the database: a wrong code saves nothing.
- A code is accepted from the time step before, of, or after now (±30 s for clock drift),
  and only from a step later than the last accepted one: a replayed code is refused. The
  check and the update are one conditional UPDATE, so two workers cannot both accept it.
- Recovery codes (10, shown once) are stored as HMAC-SHA256 keyed with the app's secret.
  They are 60 random bits, not human-chosen passwords, so a slow hash (Argon2) would add
  no safety against guessing; the key makes a stolen table useless without the secret, and
  a keyed hash is looked up by value (one indexed UPDATE) instead of ten Argon2 checks.
- Rotating ``SECRET_KEY`` makes stored secrets and recovery codes unreadable: reset each
  enrolled user (``flask --app wsgi user reset-2fa EMAIL``) and they enrol again.

Like the other domain modules, this one takes models and values and never reads the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from crm import audit, clock
from crm.extensions import db
from crm.models import RecoveryCode, User

ISSUER = "Spine Center CRM"
RECOVERY_CODE_COUNT = 10
# Minutes a person has between seeing the QR code and typing its first code.
ENROL_MINUTES = 15
# Letters and digits that cannot be misread for one another (no 0/O, 1/I/L).
_RECOVERY_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REQUIRED_MESSAGE = (
    "Your role requires two-factor sign-in, so it cannot be turned off. "
    "If you lose your device, an admin can reset it and you set it up again."
)


class TwoFactorRefused(ValueError):
    """A code or an enrolment was refused; the message is for the person typing."""


# --------------------------------------------------------------------------- keys


def _key(purpose: str) -> bytes:
    """Derive a key for one purpose from the app's secret, so no two uses share a key."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"spine-crm/{purpose}".encode(), hashlib.sha256).digest()


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_key("totp-secret")))


def encrypt_secret(secret: str) -> str:
    """Encrypt a TOTP secret for storage."""
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(stored: str) -> str:
    """Decrypt a stored TOTP secret.

    :raises TwoFactorRefused: when it cannot be read (the app's secret key was changed).
    """
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise TwoFactorRefused(
            "Your two-factor setup can no longer be read (the server's key changed). "
            "Use a recovery code, or ask an admin to reset your two-factor sign-in."
        ) from None


def hash_recovery_code(code: str) -> str:
    """Return the keyed hash of a recovery code, ignoring case, spaces and dashes."""
    normal = normalise_code(code).upper()
    return hmac.new(_key("recovery-code"), normal.encode(), hashlib.sha256).hexdigest()


def normalise_code(code: str) -> str:
    """Drop the spaces and dashes people type (or paste) inside a code."""
    return "".join(code.split()).replace("-", "")


# --------------------------------------------------------------------------- who needs it


def required_for(user: User) -> bool:
    """Tell whether the user's role must use two-factor sign-in (``REQUIRE_2FA_ROLES``)."""
    return user.role in current_app.config["REQUIRE_2FA_ROLES"]


def pending_step(user: User) -> str | None:
    """Return what a user must do after the password: "code", "enrol", or nothing."""
    if user.totp_enabled:
        return "code"
    if required_for(user):
        return "enrol"
    return None


# --------------------------------------------------------------------------- enrolment


def new_secret() -> str:
    """Make a new random TOTP secret (160 bits, base32, as authenticator apps expect)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(user: User, secret: str) -> str:
    """Return the ``otpauth://`` address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> Markup:
    """Draw the QR code as inline SVG: no image request, no data: URI, nothing for the CSP to allow."""
    qr = segno.make(uri, error="m")
    svg = str(
        qr.svg_inline(
            scale=4,
            border=4,
            dark="#000",
            light="#fff",
            svgclass="qr-code",
            title="QR code for your authenticator app",
        )
    )
    # An image to assistive technology, named by its title.
    svg = svg.replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1)
    # Safe unescaped: segno writes only numbers, path data and the constant title above; the
    # address (with the user's email) is drawn as modules, never written as text.
    return Markup(svg)  # noqa: S704  # nosec B704


def grouped(secret: str) -> str:
    """Show a secret in groups of four, the way people copy it into an app."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="spine-crm/totp-enrol")


def enrolment_token(user: User, secret: str) -> str:
    """Sign the secret being set up to one user, so the form can carry it back for a while."""
    return _serializer().dumps({"u": user.id, "s": secret})


def secret_from_token(user: User, token: str) -> str:
    """Read back the secret being set up.

    :raises TwoFactorRefused: when the token is forged, another user's, or too old.
    """
    try:
        data = _serializer().loads(token, max_age=ENROL_MINUTES * 60)
    except BadSignature:
        raise TwoFactorRefused("This setup has expired. Start again with the new QR code below.") from None
    if not isinstance(data, dict) or data.get("u") != user.id or not isinstance(data.get("s"), str):
        raise TwoFactorRefused("This setup has expired. Start again with the new QR code below.")
    return data["s"]


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """Return the time step whose code this is (now, or one step either side), else None."""
    code = normalise_code(code)
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(now)
    for offset in (0, -1, 1):
        if hmac.compare_digest(totp.at(now, offset), code):
            return now_step + offset
    return None


def enrol(user: User, secret: str, code: str, *, ip: str | None) -> list[str]:
    """Turn on two-factor sign-in once a code from the new secret checks out; return recovery codes.

    :raises TwoFactorRefused: when the code does not match (nothing is saved).
    """
    step = _matching_step(secret, code, clock.now())
    if step is None:
        raise TwoFactorRefused(
            "That code doesn't match. Type the 6 digits your app shows now for Spine Center CRM."
        )
    user.totp_secret = encrypt_secret(secret)
    user.totp_enabled = True
    user.totp_enrolled_at = clock.now()
    user.totp_last_step = step  # the code just typed cannot sign anyone in again
    codes = _replace_recovery_codes(user)
    audit.record("2fa_enrol", user_id=user.id, ip=ip)
    return codes


# --------------------------------------------------------------------------- recovery codes


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))  # 12 × log2(31) ≈ 59 bits
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    now = clock.now()
    db.session.add_all(
        RecoveryCode(user_id=user.id, code_hash=hash_recovery_code(c), created_at=now) for c in codes
    )
    return codes


def regenerate_recovery_codes(user: User, *, ip: str | None) -> list[str]:
    """Replace a user's recovery codes (the old ones stop working); the view has checked a code."""
    codes = _replace_recovery_codes(user)
    audit.record("2fa_recovery_codes_regenerated", user_id=user.id, ip=ip)
    return codes


def unused_recovery_codes(user: User) -> int:
    """Count the recovery codes a user has left."""
    return int(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


# --------------------------------------------------------------------------- sign-in


def verify(user: User, code: str, *, ip: str | None) -> str | None:
    """Accept a current TOTP code or an unused recovery code; return which kind, or None.

    Each acceptance is one conditional UPDATE: a code (or time step) already used, by this
    request or by another worker at the same moment, matches no row and is refused.
    """
    if not user.totp_enabled or not user.totp_secret:
        return None
    typed = normalise_code(code)
    if len(typed) == 6 and typed.isdigit():
        step = _matching_step(decrypt_secret(user.totp_secret), typed, clock.now())
        if step is None:
            return None
        won = db.session.execute(
            sa.update(User)
            .where(
                User.id == user.id,
                sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if not getattr(won, "rowcount", 0):
            return None
        user.totp_last_step = step
        return "totp"
    if len(typed) != 12:
        return None
    used = db.session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == hash_recovery_code(typed),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
    )
    if not getattr(used, "rowcount", 0):
        return None
    audit.record(
        "2fa_recovery_code_used", user_id=user.id, ip=ip, detail={"left": unused_recovery_codes(user)}
    )
    return "recovery"


# --------------------------------------------------------------------------- turning it off


def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_enrolled_at = None
    user.totp_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User, *, ip: str | None) -> None:
    """Turn off a user's own two-factor sign-in (the view has checked password and code).

    :raises TwoFactorRefused: when the user's role requires it.
    """
    if required_for(user):
        raise TwoFactorRefused(REQUIRED_MESSAGE)
    _clear(user)
    audit.record("2fa_disable", user_id=user.id, ip=ip)


def reset(user: User, *, actor_id: int | None, ip: str | None = None, via: str = "web") -> None:
    """Clear a user's two-factor setup for them (a lost phone); they enrol again if required."""
    _clear(user)
    audit.record("2fa_reset", user_id=actor_id, ip=ip, via=via, detail={"user_id": user.id})

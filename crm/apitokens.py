"""API bearer tokens: create (the plaintext is shown once), revoke, and find by a presented token.

Only a SHA-256 hash of each token is stored; the token itself cannot be recovered from the
database. A token acts as its user narrowed by its scope (PRODUCT §5).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from crm import audit, clock
from crm.extensions import db
from crm.models import TOKEN_SCOPES, ApiToken, User

PREFIX = "crm_"


class TokenRefused(ValueError):
    """A token that cannot be created or revoked; the message says why."""


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: the row, and the plaintext (shown once, never stored)."""

    row: ApiToken
    plaintext: str


def hash_token(plaintext: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_token(
    user: User, name: str, *, scope: str = "read", actor_id: int | None = None, via: str = "cli"
) -> NewToken:
    """Create a named token for a user; return it with its plaintext (shown once)."""
    name = name.strip()
    if scope not in TOKEN_SCOPES:
        raise TokenRefused(f"Unknown scope {scope!r}: choose one of {', '.join(TOKEN_SCOPES)}.")
    if not name or len(name) > 80:
        raise TokenRefused("A token needs a name of 1 to 80 characters.")
    if not user.active:
        raise TokenRefused(f"{user.email} is deactivated.")
    taken = db.session.scalar(
        sa.select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.name == name)
    )
    if taken is not None:
        raise TokenRefused(f"{user.email} already has a token named {name!r}.")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id, name=name, token_hash=hash_token(plaintext), scope=scope, created_at=clock.now()
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        "api_token_create",
        user_id=actor_id,
        detail={"token_id": row.id, "user_id": user.id, "scope": scope},
        via=via,
    )
    return NewToken(row=row, plaintext=plaintext)


def revoke_token(user: User, name: str, *, actor_id: int | None = None, via: str = "cli") -> ApiToken:
    """Revoke a user's named token (kept, marked revoked)."""
    row = db.session.scalar(
        sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == name.strip())
    )
    if row is None:
        raise TokenRefused(f"{user.email} has no token named {name!r}.")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        audit.record(
            "api_token_revoke", user_id=actor_id, detail={"token_id": row.id, "user_id": user.id}, via=via
        )
    return row


def token_for(plaintext: str) -> ApiToken | None:
    """Find the live token a caller presented (None when unknown, revoked, or its user is deactivated)."""
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    return row

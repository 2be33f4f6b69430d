"""Staff accounts: create, deactivate (never delete), hand over open leads, set a new password.

The admin's pages and the ``flask user`` commands both call these, so an account follows the
same rules whichever way it was made. Every change is audited; the audit rows name ids only.
"""

from __future__ import annotations

import sqlalchemy as sa

from crm import audit, clock
from crm.extensions import db
from crm.models import ROLE_LABELS, ROLES, Lead, Task, User
from crm.passwords import check_policy, hash_password
from crm.queue import bulk_reassign
from crm.security import end_all_sessions, set_password
from crm.settings import get_settings


class AccountRefused(ValueError):
    """A change to an account that the rules refuse; the message says why, for the person asking."""


def create_user(
    email: str,
    *,
    role: str,
    name: str,
    password: str,
    actor_id: int | None = None,
    ip: str | None = None,
    via: str = "cli",
) -> User:
    """Create a staff account after checking the role, the email and the password policy.

    :raises AccountRefused: for an unknown role, a malformed or taken email, or no name.
    :raises WeakPassword: when the password breaks the policy.
    """
    email = email.strip().lower()
    if role not in ROLES:
        raise AccountRefused(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    if "@" not in email or len(email) > 254 or any(ch.isspace() for ch in email):
        raise AccountRefused(f"{email!r} is not an email address.")
    if not name.strip():
        raise AccountRefused("A name is required.")
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise AccountRefused(f"An account for {email} already exists.")
    check_policy(password, email=email, name=name)
    user = User(email=email, role=role, name=name.strip(), password_hash=hash_password(password))
    db.session.add(user)
    db.session.flush()
    audit.record("user_create", user_id=actor_id, detail={"user_id": user.id, "role": role}, ip=ip, via=via)
    return user


def deactivate_user(
    user: User,
    *,
    actor: User | None = None,
    leads_to: User | None = None,
    ip: str | None = None,
    via: str = "cli",
) -> tuple[int, int]:
    """Deactivate an account and hand its work over; return (sessions ended, leads handed over).

    Its sessions end. Its open leads go to ``leads_to`` (or nobody), each audited as a
    reassignment, and so do its open tasks, so no call-back waits in a list nobody sees. A
    surgeon's referrals in review become unassigned (every surgeon sees them), and the clinic's
    default surgeon is cleared if it was them. A deactivated account keeps its name on the
    history it made; it can no longer sign in.

    :raises AccountRefused: for an account already deactivated, one's own account, or a
        hand-over to the same person or to someone who is not an active member of the front
        desk or a manager.
    """
    if not user.active:
        raise AccountRefused(f"{user.email} is already deactivated.")
    if actor is not None and user.id == actor.id:
        raise AccountRefused("You can't deactivate your own account; ask another admin.")
    if leads_to is not None and (
        leads_to.id == user.id or not leads_to.active or leads_to.role not in ("front_desk", "manager")
    ):
        raise AccountRefused("Give the open leads to an active member of the front desk or a manager.")
    now = clock.now()
    user.active = False
    user.deactivated_at = now
    ended = end_all_sessions(user)
    owned = list(
        db.session.scalars(sa.select(Lead.id).where(Lead.owner_id == user.id, Lead.in_queue.is_(True)))
    )
    handed = bulk_reassign(owned, owner=leads_to, actor=actor, now=now, ip=ip, via=via) if owned else 0
    db.session.execute(
        sa.update(Task)
        .where(Task.assignee_id == user.id, Task.done_at.is_(None))
        .values(assignee_id=leads_to.id if leads_to else None)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        sa.update(Lead)
        .where(Lead.surgeon_id == user.id, Lead.stage == "surgical_review")
        .values(surgeon_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    settings = get_settings()
    if settings.default_surgeon_id == user.id:
        settings.default_surgeon_id = None
    audit.record(
        "user_deactivate",
        user_id=actor.id if actor else None,
        detail={
            "user_id": user.id,
            "sessions_ended": ended,
            "leads_to": leads_to.id if leads_to else None,
            "leads_moved": handed,
        },
        ip=ip,
        via=via,
    )
    return ended, handed


def reset_password(user: User, password: str, *, actor_id: int | None, ip: str | None = None) -> int:
    """Give a staff member a new password chosen by an admin; end their sessions; return how many.

    :raises AccountRefused: for a deactivated account.
    :raises WeakPassword: when the password breaks the policy.
    """
    if not user.active:
        raise AccountRefused(f"{user.email} is deactivated: no password to set.")
    ended = set_password(user, password)
    audit.record("user_password_reset", user_id=actor_id, detail={"user_id": user.id}, ip=ip)
    return ended


def role_choices() -> list[tuple[str, str]]:
    """The roles an account may have, with their labels."""
    return [(role, ROLE_LABELS[role]) for role in ROLES]

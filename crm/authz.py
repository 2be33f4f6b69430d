"""Who may do what, decided once (PRODUCT §5).

Every view names the roles it admits with ``@roles(...)`` (or ``@public`` for the
few pages that need no sign-in). A view that names none is closed to everyone: the
``before_request`` check refuses it before the view runs. Scoped loaders answer 404 for
records outside a user's scope, so a changed id reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, abort, current_app, request
from flask_login import current_user

from crm.extensions import db
from crm.models import ROLES, STAGES, Lead, User

F = TypeVar("F", bound=Callable[..., Any])

ROLES_ATTR = "_crm_roles"
PUBLIC = "__public__"

# Ids are INTEGER columns: nothing larger exists (schemathesis sends 10**20 in a path).
MAX_ID = 2**31 - 1

# Stages from surgical_review on: what a surgeon may see (PRODUCT §5).
SURGEON_STAGES = STAGES[STAGES.index("surgical_review") : STAGES.index("closed")]

# The capabilities of PRODUCT §5's table, by role. Pages, the API and the CLI ask these.
CAN = {
    "view_leads": {"front_desk", "surgeon", "manager", "admin"},
    "edit_leads": {"front_desk", "manager", "admin"},
    "add_notes": {"front_desk", "surgeon", "manager", "admin"},
    "move_stages": {"front_desk", "manager", "admin"},
    "override_gate": {"manager"},
    "decide_referrals": {"surgeon", "manager"},
    "record_outcomes": {"front_desk", "surgeon", "manager"},
    "dashboard": {"surgeon", "manager", "admin"},
    "export": {"manager", "admin"},
    "administer": {"admin"},
}


def roles(*names: str) -> Callable[[F], F]:
    """Admit only signed-in users of these roles to a view."""
    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    def decorate(view: F) -> F:
        setattr(view, ROLES_ATTR, frozenset(names))
        return view

    return decorate


def public(view: F) -> F:
    """Open a view to everyone, signed in or not (the public form, webhooks, sign-in)."""
    setattr(view, ROLES_ATTR, frozenset({PUBLIC}))
    return view


def view_roles(endpoint: str | None) -> frozenset[str]:
    """Return the roles a view admits; an empty set means closed to all."""
    if endpoint is None:
        return frozenset()
    view = current_app.view_functions.get(endpoint)
    while view is not None and not hasattr(view, ROLES_ATTR) and hasattr(view, "__wrapped__"):
        view = view.__wrapped__
    return frozenset(getattr(view, ROLES_ATTR, frozenset()))


def can(user: Any, capability: str) -> bool:
    """Tell whether a user's role has a capability of PRODUCT §5."""
    return bool(getattr(user, "is_authenticated", False)) and user.role in CAN[capability]


def init_authz(app: Flask) -> None:
    """Enforce ``@roles`` on every request, before any view runs."""

    @app.before_request
    def _enforce_roles() -> Any:
        if request.endpoint is None:  # 404/405: let the error handlers answer
            return None
        if request.endpoint == "static":
            return None
        admitted = view_roles(request.endpoint)
        if PUBLIC in admitted:
            return None
        if request.blueprint == "api":
            if not admitted:  # deny by default holds for the API too
                abort(403, description=forbidden_message(admitted))
            return None  # the API authenticates bearer tokens itself, then asks the same rules
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if current_user.role not in admitted:
            abort(403, description=forbidden_message(admitted))
        return None


def forbidden_message(admitted: frozenset[str]) -> str:
    """Explain a refusal in plain words."""
    from crm.models import ROLE_LABELS

    if not admitted:
        return "This page is not open to any role."
    names = ", ".join(ROLE_LABELS[r].lower() for r in sorted(admitted) if r in ROLE_LABELS)
    return f"This page is for {names} staff. Your role does not include it."


# --------------------------------------------------------------------------- scoped loaders


def leads_visible_to(user: User) -> sa.ColumnElement[bool]:
    """Return the WHERE clause limiting leads to what a user may see."""
    if user.role == "surgeon":
        return sa.and_(
            Lead.stage.in_(SURGEON_STAGES),
            sa.or_(Lead.surgeon_id == user.id, Lead.surgeon_id.is_(None)),
        )
    if user.role in CAN["view_leads"]:
        return sa.true()
    return sa.false()


def load_lead_for(user: User, lead_id: int, *options: Any) -> Lead:
    """Load a lead the user may see, or answer 404 (outside scope reveals nothing).

    ``options``: loader options for what the caller will read next (the lead page joins the tags).
    """
    if not 0 < lead_id <= MAX_ID:  # no such row; SQLite cannot even bind an id past 2**63
        abort(404)
    query = sa.select(Lead).where(Lead.id == lead_id, leads_visible_to(user)).options(*options)
    lead = db.session.scalars(query).unique().first()
    if lead is None:
        abort(404)
    return lead

"""Bearer authentication for the API: the token acts as its user, narrowed by its scope.

Cookies are never read here: a signed-in page session cannot call the API, and a token
cannot open the pages (they read only the session cookie).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g, request

from crm import clock
from crm.apitokens import token_for
from crm.authz import PUBLIC, forbidden_message, view_roles
from crm.models import User

F = TypeVar("F", bound=Callable[..., Any])
READ_ONLY_ATTR = "_api_read_only"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(view: F) -> F:
    """Mark a POST view that changes nothing (e.g. triage), so a read token may call it."""
    setattr(view, READ_ONLY_ATTR, True)
    return view


def _is_read_only(endpoint: str | None) -> bool:
    from flask import current_app

    view = current_app.view_functions.get(endpoint or "")
    return bool(getattr(view, READ_ONLY_ATTR, False))


def authenticate() -> None:
    """Run before each API view: a live bearer token of a role the view admits, with the scope it needs."""
    admitted = view_roles(request.endpoint)
    if request.endpoint is None or PUBLIC in admitted:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        abort(401, description="Send an API token: Authorization: Bearer <token>.")
    token = token_for(presented.strip())
    if token is None:
        abort(401, description="The API token is unknown or revoked, or its user is deactivated.")
    user = token.user
    if user.role not in admitted:
        abort(403, description=forbidden_message(admitted).replace("page", "call"))
    if request.method not in SAFE_METHODS and token.scope != "write" and not _is_read_only(request.endpoint):
        abort(403, description="This token has the read scope; this call needs a write token.")
    token.last_used_at = clock.now()
    g.api_user = user
    g.api_token = token


def api_user() -> User:
    """Return the user the presented token acts as."""
    user: User = g.api_user
    return user

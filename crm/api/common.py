"""What every API view shares: declared error answers, a JSON body check, ETags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from flask import abort, request
from flask_smorest import abort as smorest_abort

from crm.api.errors import ApiErrorSchema

F = TypeVar("F", bound=Callable[..., Any])

DESCRIPTIONS = {
    400: "The body is not JSON.",
    413: "The body is too large.",
    401: "No token, or an unknown or revoked one.",
    403: "The token's user or scope may not do this.",
    404: "Not found, or outside the user's scope.",
    409: "A stale version, or a move the stage machine refuses.",
    422: "A field is unknown or wrong (see fields).",
    428: "PATCH without version or If-Match.",
}


def errors(*codes: int) -> Callable[[F], F]:
    """Declare the error answers a view can give (for the OpenAPI document)."""
    from crm.api.routes import bp

    def decorate(view: F) -> F:
        for code in codes:
            view = bp.alt_response(code, schema=ApiErrorSchema, description=DESCRIPTIONS[code])(view)
        return view

    return decorate


MAX_BODY_BYTES = 256 * 1024  # the largest field (a message) is 20,000 characters


def require_json_body() -> None:
    """Answer 413 for an oversized body and 400 when a POST/PATCH body is not a JSON object."""
    if request.method in ("POST", "PATCH", "PUT"):
        if (request.content_length or 0) > MAX_BODY_BYTES:
            abort(413, description=f"The body is larger than {MAX_BODY_BYTES // 1024} KB.")
        body = request.get_json(silent=True, force=True) if request.get_data() else None
        if not request.is_json or not isinstance(body, dict):
            abort(400, description="The body must be a JSON object (Content-Type: application/json).")


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version() -> int | None:
    """Read the version in ``If-Match`` (``"3"``, ``W/"3"``), or None."""
    header = request.headers.get("If-Match", "").strip()
    if not header:
        return None
    value = header.removeprefix("W/").strip('"')
    if not value.isdigit():
        abort(409, description="If-Match does not match the lead's ETag.")
    return int(value)


def refuse(status: int, field: str, message: str) -> NoReturn:
    """Refuse one field's value that passed the schema but not a rule beyond it (with ``fields``)."""
    smorest_abort(status, message=f"{field}: {message}", messages={"json": {field: [message]}})
    raise AssertionError  # pragma: no cover - abort raised

"""The API's one error shape for every refusal: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from crm.errors import api_error

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    428: "precondition_required",
}


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ApiErrorSchema(Schema):
    """What every API error answers."""

    error = fields.Nested(ErrorBody, required=True)


def _first_messages(messages: Any, prefix: str = "") -> dict[str, str]:
    """Flatten webargs/marshmallow messages to ``{field: first message}``."""
    out: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "querystring", "headers", "_schema") and not prefix:
                out.update(_first_messages(value, ""))
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(_first_messages(value, name))
            elif isinstance(value, list) and value:
                out[name] = str(value[0]) if not isinstance(value[0], (dict, list)) else "is not valid."
            else:
                out[name] = str(value)
    return out


def http_error(error: HTTPException) -> Response:
    """Answer any HTTP error raised inside the API in the one shape (with ``Allow`` on 405)."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    field_errors = _first_messages(data.get("messages", {})) if status == 422 else {}
    message = data.get("message") or error.description or error.name
    if field_errors and not data.get("message"):
        name, first = next(iter(field_errors.items()))
        message = f"{name}: {first}"
    response = api_error(data.get("code") or CODES.get(status, "error"), message, status, field_errors)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    for key, value in (data.get("headers") or {}).items():
        response.headers[key] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response

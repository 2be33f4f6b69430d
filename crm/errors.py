"""Error pages per status code (JSON for the API), with a rollback on server errors."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from crm.extensions import db


class LoggedDatabaseError(Exception):
    """A database error as the log keeps it: what failed and where, never the values."""


def loggable(error: BaseException) -> BaseException:
    """Return ``error`` fit for a log line: a database error loses the values its server echoed.

    Bound parameters are already hidden (``hide_parameters``), but PostgreSQL repeats values in
    its own message: "Key (open_phone_key)=(+1…) already exists", "Failing row contains (…,
    <name>, <phone>, …)". From PostgreSQL the log keeps the SQLSTATE, table, column and
    constraint; SQLite's messages name only the constraint and column, so they are kept.
    """
    if not isinstance(error, sa.exc.DBAPIError):
        return error
    original = error.orig
    diag = getattr(original, "diag", None)
    if diag is not None:
        facts = {
            "sqlstate": diag.sqlstate,
            "table": diag.table_name,
            "column": diag.column_name,
            "constraint": diag.constraint_name,
        }
        described = ", ".join(f"{name} {value}" for name, value in facts.items() if value)
    else:
        described = str(original)
    safe = LoggedDatabaseError(f"{type(original).__name__} ({described}) [SQL: {error.statement}]")
    return safe.with_traceback(error.__traceback__)


TITLES = {
    400: "That request could not be understood",
    403: "Not open to your role",
    404: "Not found",
    405: "Not allowed here",
    409: "Someone else changed this first",
    413: "Too large",
    422: "Please check what you entered",
    429: "Too many requests",
    500: "Something went wrong on our side",
}

# Flask-WTF's own words ("The CSRF token is missing.") tell staff nothing they can act on.
CSRF_TITLE = "This form has expired"
CSRF_MESSAGE = "Nothing was saved. Go back, reload the page, and try again."


def wants_json() -> bool:
    """Tell whether the caller is the API (or asked for JSON)."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def api_error(code: str, message: str, status: int, fields: dict[str, str] | None = None) -> Response:
    """Answer in the API's one error shape."""
    response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    return response


def init_errorhandlers(app: Flask) -> None:
    """Register the handlers for every HTTP error and for unexpected exceptions."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response | tuple[str, int]:
        status = error.code or 500
        if status >= 500:
            db.session.rollback()
        description = error.description if status in (400, 403, 409, 413, 422, 429) else None
        title = TITLES.get(status, error.name)
        if isinstance(error, CSRFError):
            title, description = CSRF_TITLE, CSRF_MESSAGE
        if wants_json():
            response = api_error(
                (error.name or "error").lower().replace(" ", "_"),
                description or error.description or TITLES.get(status, "Error"),
                status,
            )
        else:
            html = render_template(
                "errors/error.html",
                status=status,
                title=title,
                description=description,
            )
            response = Response(html, status=status, mimetype="text/html")
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        if status == 429 and getattr(error, "retry_after", None):
            response.headers["Retry-After"] = str(error.retry_after)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _server_error(error: Exception) -> Response | tuple[str, int]:
        db.session.rollback()
        safe = loggable(error)
        app.logger.error(
            "unhandled error on %s %s",
            request.method,
            request.url_rule,
            exc_info=(type(safe), safe, safe.__traceback__),
        )
        if wants_json():
            return api_error("server_error", "Something went wrong on our side.", 500)
        return render_template("errors/error.html", status=500, title=TITLES[500], description=None), 500

"""The JSON API at /api/v1: one flask-smorest blueprint, its OpenAPI document, bearer auth.

flask-smorest's ``Api`` is used for the document only: its global ``HTTPException`` handler
would turn the pages' error pages into JSON and drop ``Allow`` on 405 (STACK gotcha 6), so it
is not registered; the blueprint answers its own errors in the API's one shape.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify
from flask.blueprints import BlueprintSetupState
from flask_smorest import Api, Blueprint
from werkzeug.exceptions import HTTPException

from crm.api.common import require_json_body
from crm.api.errors import ApiErrorSchema, http_error
from crm.api.tokens import authenticate
from crm.authz import public
from crm.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1", description="Spine Center CRM integration API")
csrf.exempt(bp)  # bearer tokens only: no cookie is ever read, so there is nothing to forge
bp.before_request(authenticate)
bp.before_request(require_json_body)  # after the token: 401 before 400
bp.register_error_handler(HTTPException, http_error)

SPEC_KEY = "crm-api"


class DocumentOnlyApi(Api):  # type: ignore[misc]
    """flask-smorest's Api without its app-wide error handler (STACK gotcha 6)."""

    ERROR_SCHEMA = ApiErrorSchema  # the 422 of @arguments and every declared error: our one shape
    # No catch-all ``default`` response on every operation: each declares the statuses it answers
    # (``@errors``), so an answer with any other status is outside the document and schemathesis'
    # status_code_conformance check fails it (tests/api/test_schemathesis.py).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        return None

    def _register_doc_blueprint(self) -> None:
        return None  # the document is served by the API blueprint itself, under its rules


def _document(state: BlueprintSetupState) -> None:
    app: Flask = state.app
    app.config.setdefault("API_TITLE", "Spine Center CRM API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    api = DocumentOnlyApi(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        },
    )
    app.extensions["flask-smorest"]["blp_name_to_api"][bp.name] = api
    app.extensions[SPEC_KEY] = api


bp.record_once(_document)


def document() -> dict[str, Any]:
    """Return the OpenAPI document (the views are added to it on first use)."""
    api: Any = current_app.extensions[SPEC_KEY]
    if not getattr(api, "_crm_documented", False):
        bp.register_views_in_doc(api, current_app, api.spec, name=bp.name, parameters=None)
        api._crm_documented = True
    spec: dict[str, Any] = api.spec.to_dict()
    return spec


@bp.route("/openapi.json")
@public
def openapi() -> Response:
    """The OpenAPI 3 document of this API, generated from the schemas the views validate with."""
    return jsonify(document())


# The resources register their views on ``bp``; docs renders the document as a page.
from crm.api import calls, docs, fhir, leads, triage  # noqa: E402,F401

"""The API's fuzzing is schemathesis' (tests/api/test_schemathesis.py); this checks it can reach everything.

schemathesis generates requests from /api/v1/openapi.json only, so whatever the document leaves
out is never fuzzed. Checked here: every API route and method of the URL map is an operation of
the document; every request body refuses properties it does not list (so the properties
schemathesis varies are all the API takes); and every query-string name an API view reads —
recorded while it answers, as in ``test_fuzz_params`` — is a documented parameter.
"""

from __future__ import annotations

import re

from flask import Request

from crm.apitokens import create_token
from crm.extensions import db
from tests.security import test_fuzz_params as params
from tests.security.test_fuzz_params import RecordingRequest

OWN_PAGES = {"api.openapi", "api.docs"}  # the document and its page are not operations of it


def _document(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


def _operations(doc: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, ops in doc["paths"].items()
        for method in ops
        if method != "parameters"
    }


def test_every_api_route_and_method_is_an_operation_of_the_document(app, client):
    doc = _document(client)
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") and rule.endpoint not in OWN_PAGES
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes and routes <= _operations(doc), sorted(routes - _operations(doc))


def test_every_request_body_lists_all_it_takes(client):
    doc = _document(client)
    schemas = doc["components"]["schemas"]
    bodies = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":  # the path's own, not an operation
                continue
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if not ref:
                continue
            schema = schemas[ref["$ref"].rsplit("/", 1)[1]]
            assert schema.get("additionalProperties") is False, (method, path)
            assert schema["properties"], (method, path)
            bodies += 1
    assert bodies >= 5


def test_every_query_parameter_an_api_view_reads_is_documented(app, client, make_user, make_lead):
    token = create_token(make_user("manager"), "coverage", scope="write").plaintext
    db.session.commit()
    lead = make_lead()
    doc = _document(client)
    app.request_class = RecordingRequest
    try:
        for path, ops in doc["paths"].items():
            if "get" not in ops:
                continue
            documented = {p["name"] for p in ops["get"].get("parameters", []) if p.get("in") == "query"}
            params.READ.clear()
            response = client.get(
                path.replace("{lead_id}", str(lead.id)), headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, (path, response.status_code)
            assert documented >= params.READ, (path, params.READ - documented)
    finally:
        app.request_class = Request

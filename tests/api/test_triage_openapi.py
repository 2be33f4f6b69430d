"""POST /api/v1/triage, the OpenAPI document, and the error shape of 405."""

from __future__ import annotations

import json


def test_triage_answers_tags_and_urgency(make_caller, client):
    caller = make_caller("surgeon", scope="read")
    response = client.post(
        "/api/v1/triage",
        json={"text": "new numbness between my legs and bladder trouble"},
        headers=caller.headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["urgent"] is True and any(tag.startswith("red_flag:") for tag in body["tags"])
    calm = client.post(
        "/api/v1/triage", json={"text": "my lower back aches"}, headers=caller.headers
    ).get_json()
    assert calm["urgent"] is False


def test_triage_refuses_unknown_and_missing_fields(make_caller, client):
    caller = make_caller()
    response = client.post("/api/v1/triage", json={"txt": "x"}, headers=caller.headers)
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"txt", "text"}


def test_openapi_document_lists_the_paths_and_their_errors(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.get_data(as_text=True))
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert {
        "/api/v1/leads",
        "/api/v1/leads/{lead_id}",
        "/api/v1/leads/{lead_id}/stage",
        "/api/v1/triage",
    } <= set(paths)
    assert {"401", "403", "409", "428", "422", "404"} <= set(
        paths["/api/v1/leads/{lead_id}"]["patch"]["responses"]
    )
    assert {"200", "201", "400", "422"} <= set(paths["/api/v1/leads"]["post"]["responses"])
    post_body = paths["/api/v1/leads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert post_body["$ref"].endswith("/LeadIn")
    assert doc["components"]["schemas"]["LeadIn"]["additionalProperties"] is False
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_405_keeps_allow_and_the_error_shape(make_caller, client):
    response = client.delete("/api/v1/leads", headers=make_caller().headers)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_html_pages_keep_their_html_error_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_an_oversized_body_is_413_in_the_error_shape(make_caller, client):
    response = client.post("/api/v1/triage", json={"text": "x" * 300_000}, headers=make_caller().headers)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_every_body_taking_operation_declares_400_413_and_422(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in (
        ("/api/v1/leads", "post"),
        ("/api/v1/leads/{lead_id}", "patch"),
        ("/api/v1/leads/{lead_id}/stage", "post"),
        ("/api/v1/calls", "post"),
        ("/api/v1/triage", "post"),
    ):
        assert {"400", "401", "403", "413", "422"} <= set(paths[path][method]["responses"]), (path, method)

"""GET /api/v1/docs: the OpenAPI document as a server-rendered page, public, no script, under the CSP."""

from __future__ import annotations

import re

import pytest

from crm.security import CSP


@pytest.fixture
def docs(client):
    return client.get("/api/v1/docs")


def test_it_is_public_html(docs):
    assert docs.status_code == 200 and docs.mimetype == "text/html"


def test_it_lists_every_operation_of_the_document(client, docs):
    spec = client.get("/api/v1/openapi.json").get_json()
    html = docs.get_data(as_text=True)
    for path, item in spec["paths"].items():
        for method in item.keys() - {"parameters"}:
            assert f"<code>{method.upper()} {path}</code>" in html, (method, path)


def test_it_shows_parameters_bodies_answers_and_schemas(docs):
    html = docs.get_data(as_text=True)
    section = html[html.index('id="get--api-v1-leads"') : html.index('id="post--api-v1-leads"')]
    for param in ("stage", "created_from", "per_page"):
        assert f"<code>{param}</code>" in section
    assert "at most 100" in section  # per_page's maximum
    post = html[html.index('id="post--api-v1-leads"') :]
    assert '<a href="#schema-LeadIn">LeadIn</a>' in post
    assert "<td>201</td>" in post and "<td>413</td>" in post
    patch = html[html.index('id="patch--api-v1-leads-lead_id"') :]
    assert "<td>409</td>" in patch and "<td>428</td>" in patch
    schema = html[html.index('id="schema-LeadIn"') :]
    assert "<code>preferred_contact</code>" in schema and "one of phone, sms, email" in schema


def test_it_runs_no_script_and_loads_nothing_from_another_origin(docs):
    html = docs.get_data(as_text=True)
    assert "<script" not in html and " style=" not in html and "<style" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert docs.headers["Content-Security-Policy"].startswith(f"default-src {CSP['default-src']}")
    assert "script-src 'self';" in docs.headers["Content-Security-Policy"]


def test_the_page_is_not_an_operation_of_the_document(client):
    assert "/api/v1/docs" not in client.get("/api/v1/openapi.json").get_json()["paths"]

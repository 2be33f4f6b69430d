"""GET /api/v1/docs: the OpenAPI document as a page, rendered on the server.

Public like ``/api/v1/openapi.json`` it is drawn from: it shows the shape of the API, never a
record, and the clinic's website and EHR vendors read it without a staff account. No script and
nothing from another origin, so it lives under the pages' content security policy unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flask
from flask import render_template

from crm.api.routes import bp, document
from crm.authz import public

METHODS = ("get", "post", "put", "patch", "delete")
REF = "#/components/schemas/"


@dataclass
class Field:
    """One property or parameter: its name, where it goes, its type in words, and its rules."""

    name: str
    type: str
    ref: str | None = None  # the component schema it refers to, linked on the page
    required: bool = False
    where: str = ""
    rules: list[str] = field(default_factory=list)
    description: str = ""


@dataclass
class Answer:
    """One documented status code of an operation."""

    status: str
    description: str
    schema: str | None


@dataclass
class Operation:
    """One method on one path, as the page lists it."""

    method: str
    path: str
    summary: str
    anchor: str
    parameters: list[Field]
    body: str | None
    answers: list[Answer]


def _ref_name(ref: str) -> str:
    return ref.removeprefix(REF)


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` to a component (responses and schemas)."""
    ref = node.get("$ref")
    if not ref:
        return node
    kind, name = ref.removeprefix("#/components/").split("/", 1)
    resolved: dict[str, Any] = spec["components"][kind][name]
    return resolved


def describe(name: str, schema: dict[str, Any], *, required: bool = False, where: str = "") -> Field:
    """Put one schema into words: type, the component it refers to, and its constraints."""
    if "$ref" in schema:
        return Field(name, "object", ref=_ref_name(schema["$ref"]), required=required, where=where)
    kind = schema.get("type", "any")
    ref = None
    if kind == "array":
        items = schema.get("items", {})
        if "$ref" in items:
            ref = _ref_name(items["$ref"])
            kind = "array of"
        else:
            kind = f"array of {items.get('type', 'any')}"
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    rules = []
    if "enum" in schema:
        rules.append("one of " + ", ".join("null" if v is None else str(v) for v in schema["enum"]))
    for key, words in (
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minimum", "at least {}"),
        ("maximum", "at most {}"),
        ("pattern", "matches {}"),
        ("default", "default {}"),
    ):
        if key in schema:
            rules.append(words.format(schema[key]))
    if schema.get("nullable"):
        rules.append("may be null")
    if schema.get("readOnly"):
        rules.append("read-only")
    return Field(name, kind, ref, required, where, rules, schema.get("description", ""))


def _body_schema(spec: dict[str, Any], holder: dict[str, Any]) -> str | None:
    content = _resolve(spec, holder).get("content", {})
    schema = next(iter(content.values()), {}).get("schema", {})
    return _ref_name(schema["$ref"]) if "$ref" in schema else None


def operations(spec: dict[str, Any]) -> list[Operation]:
    """List every documented operation, in path order, with its parameters, body and answers."""
    found = []
    for path, item in sorted(spec.get("paths", {}).items()):
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            params = [
                describe(p["name"], p.get("schema", {}), required=p.get("required", False), where=p["in"])
                for p in (*shared, *op.get("parameters", []))
            ]
            body = _body_schema(spec, op["requestBody"]) if "requestBody" in op else None
            answers = [
                Answer(status, _resolve(spec, answer).get("description", ""), _body_schema(spec, answer))
                for status, answer in sorted(op.get("responses", {}).items())
            ]
            anchor = f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "").replace(".", "-")
            found.append(
                Operation(method.upper(), path, op.get("summary", ""), anchor, params, body, answers)
            )
    return found


def schemas(spec: dict[str, Any]) -> dict[str, list[Field]]:
    """Describe each component schema field by field (required ones first)."""
    out = {}
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        out[name] = [
            describe(prop, props[prop], required=prop in required)
            for prop in sorted(props, key=lambda p: (p not in required, p))
        ]
    return out


def segments(text: str) -> list[tuple[bool, str]]:
    """Split a summary on its ``code`` spans: (is_code, text) pairs for the template."""
    return [(i % 2 == 1, part) for i, part in enumerate(text.split("``")) if part]


def _docs() -> str:
    """Show the API's operations, parameters, bodies, answers and schemas as a page."""
    spec = document()
    return render_template(
        "api/docs.html", spec=spec, operations=operations(spec), schemas=schemas(spec), segments=segments
    )


# A page, not an operation: registered with Flask's own add_url_rule, so that flask-smorest
# leaves it out of the OpenAPI document (and schemathesis does not call it as JSON).
flask.Blueprint.add_url_rule(bp, "/docs", "docs", public(_docs))

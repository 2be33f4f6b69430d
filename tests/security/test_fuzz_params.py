"""Hostile query strings for every staff page that reads one: never a 500, never raw markup back.

The parameters are not listed by hand: ``test_the_crawl_finds_every_parameter`` opens every
GET route of the URL map as a role it admits, with a request class whose query-string dict
records each name the view reads (``get``, ``getlist``, ``[]``, ``in``) — so a filter added
to a view tomorrow is fuzzed tomorrow. Each page that reads parameters then gets 200 requests
(the CI Hypothesis profile) carrying hostile values in every parameter it reads: payloads,
random text, huge strings, numbers and dates out of range, a parameter given twice, and bytes
that are not UTF-8. A filter page drops what it cannot read (PRODUCT §10: filters live in the
query string, and a hand-edited address must still open the page), so every answer is a 200,
or a 4xx with a message; the patient names planted as markup come back escaped; and the table
checksum shows no request changed a row (the audit log and the session's last-seen time are
meant to be written by a page view, so they are left out of it).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from flask import Flask, Request
from hypothesis import example, given
from hypothesis import strategies as st
from werkzeug.datastructures import ImmutableMultiDict

from crm.authz import PUBLIC, view_roles
from crm.models import ROLES
from tests.conftest import sign_in
from tests.dbstate import changed_tables, table_checksums
from tests.security.hostile import XSS_ATOMS, Tally, hostile_text, xss_atoms_in

WRITTEN_BY_A_VIEW = ("audit_events", "user_sessions")  # a page view is audited; a session is touched
# Words some parameters take, so the fuzz also reaches the code behind a valid first choice
# (e.g. ``range=custom`` before ``from``/``to`` are read).
KNOWN_WORDS = ("custom", "30d", "12m", "quarter", "closed", "me", "none", "new", "phone", "1", "2", "3")
# The named pages of issue 9 and the parameters each must be found reading (the crawl finds more).
MUST_FIND = {
    "leads.queue": {"q", "stage", "tag", "source", "owner", "created_from", "created_to", "after"},
    "referrals.queue": {"page"},
    "dashboard.index": {"range", "from", "to", "source", "tag", "owner"},
    "admin.audit_log": {"user", "lead", "before", "from", "to"},
}
# Names a view does not read, but that a careless ``url_for(**request.args)`` would pass on.
OTHER_NAMES = (
    "_scheme",
    "_external",
    "_anchor",
    "_method",
    "endpoint",
    "chart",
    "values",
    "include",
    "after",
)
SKIP_BLUEPRINTS = {"api", "public", "webhooks"}  # fuzzed by schemathesis and by their own tests
READ: set[str] = set()
ID_RE = re.compile(r"/\d+")


class RecordingArgs(ImmutableMultiDict):  # type: ignore[type-arg]
    """A query-string dict that notes every name a view asks for."""

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:
        READ.add(key)
        return super().get(key, default, type)

    def getlist(self, key: Any, type: Any = None) -> Any:
        READ.add(key)
        return super().getlist(key, type)

    def __getitem__(self, key: Any) -> Any:
        READ.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        READ.add(str(key))
        return super().__contains__(key)


class RecordingRequest(Request):
    parameter_storage_class = RecordingArgs


def _role_for(endpoint: str) -> str | None:
    admitted = view_roles(endpoint)
    return next((role for role in ROLES if role in admitted), None)


def crawl(app: Flask, clients: dict[str, Any], lead_id: int) -> dict[tuple[str, str], set[str]]:
    """Open every staff GET route as each role it admits; return {(endpoint, role): names read}."""
    found: dict[tuple[str, str], set[str]] = {}
    app.request_class = RecordingRequest
    try:
        for rule in app.url_map.iter_rules():
            if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
                continue
            if rule.endpoint.split(".")[0] in SKIP_BLUEPRINTS or PUBLIC in view_roles(rule.endpoint):
                continue
            values = {arg: (lead_id if "id" in arg else "funnel") for arg in rule.arguments}
            url = rule.build(values, append_unknown=False)[1]
            for role in sorted(view_roles(rule.endpoint)):
                names = _names_read(clients[role], url, {})
                # A name may be read only after another holds a certain word (``range=custom``
                # before ``from``): ask again with each known word in every name found, until
                # nothing new turns up.
                grown = True
                while grown:
                    more = set().union(
                        *(_names_read(clients[role], url, dict.fromkeys(names, w)) for w in KNOWN_WORDS)
                    )
                    grown = not more <= names
                    names |= more
                if names:
                    found[(rule.endpoint, role)] = names
    finally:
        app.request_class = Request
    return found


def _names_read(client: Any, url: str, args: dict[str, str]) -> set[str]:
    READ.clear()
    response = client.get(url, query_string=args)
    assert response.status_code < 500, (url, args)
    response.close()
    return set(READ)


@pytest.fixture
def clients(app: Flask, make_user: Any) -> dict[str, Any]:
    """A signed-in test client for each role."""
    from tests.conftest import CRMTestClient

    app.test_client_class = CRMTestClient
    signed_in = {}
    for role in ROLES:
        client = app.test_client()
        assert sign_in(client, make_user(role).email).status_code == 302
        signed_in[role] = client
    return signed_in


@pytest.fixture
def planted(make_lead: Any, make_user: Any) -> int:
    """Leads whose stored names are markup (so every page's escaping is checked too); return one id."""
    lead = None
    for i, atom in enumerate(XSS_ATOMS):
        lead = make_lead(first_name=atom, last_name=f"Payload{i}", phone=f"+1972555{i:04d}", campaign=atom)
    assert lead is not None
    return lead.id


def test_the_crawl_finds_every_parameter(app, clients, planted):
    found = crawled(app, clients, planted)
    by_endpoint: dict[str, set[str]] = {}
    for (endpoint, _), names in found.items():
        by_endpoint.setdefault(endpoint, set()).update(names)
    for endpoint, names in MUST_FIND.items():
        assert names <= by_endpoint.get(endpoint, set()), (endpoint, by_endpoint.get(endpoint))
    print("\nGET parameters read, by page:", {k: sorted(v) for k, v in sorted(by_endpoint.items())})


class Raw:
    """Bytes to send percent-encoded as they are: not UTF-8 once decoded."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Raw({self.data!r})"


def param_values() -> st.SearchStrategy[Any]:
    """One parameter's value: hostile text, a known word, the same name twice, or non-UTF-8 bytes."""
    return st.one_of(
        hostile_text(),
        st.sampled_from(KNOWN_WORDS),
        st.lists(st.one_of(hostile_text(huge=False), st.sampled_from(KNOWN_WORDS)), min_size=2, max_size=3),
        st.binary(min_size=1, max_size=20).map(lambda b: Raw(b"\xff" + b)),
    )


def query_string(values: dict[str, Any]) -> str:
    parts = []
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            encoded = quote_from_bytes(one.data, safe="") if isinstance(one, Raw) else quote(one, safe="")
            parts.append(f"{quote(name, safe='')}={encoded}")
    return "&".join(parts)


def fuzz_page(client: Any, path: str, names: list[str], tally: Tally) -> None:
    @given(
        st.fixed_dictionaries({name: param_values() for name in names}),
        st.dictionaries(
            st.one_of(st.sampled_from(OTHER_NAMES), st.text(max_size=12)), param_values(), max_size=2
        ),
    )
    def throw(values: dict[str, Any], others: dict[str, Any]) -> None:
        tally.thrown([*values, *(["(names it does not read)"] if others else [])])
        values = {**others, **values}
        response = client.get(f"{path}?{query_string(values)}")
        status = response.status_code
        tally.outcomes[str(status)] += 1
        body = response.get_data(as_text=True)
        assert status < 500, (status, values)
        assert status in (200, 400, 404, 422), (status, values)
        if status != 200:
            assert "<h1" in body or response.is_json, "a refusal without a message"
        if response.mimetype == "text/html":
            for atom in {*XSS_ATOMS, *xss_atoms_in(list(values.values()))}:
                assert atom not in body, (atom, values)

    # The values that broke pages before (kept as explicit examples, whatever the random draw).
    for edge in (
        "9999-12-31",
        "0001-01-01",
        "²",
        "9" * 5000,
        "99999999999999999999",
        "1:99999999999999999999:1",
        "a\x00b",  # PostgreSQL refuses NUL in a text parameter
    ):
        values = {name: edge for name in names}
        if "range" in values:
            values["range"] = "custom"
        throw = example(values, {"include": "x", "_scheme": "javascript", "chart": "x"})(throw)
    throw()


ROLE_PREFERENCE = ("front_desk", "manager", "surgeon", "admin")  # the manager sees the fullest pages
_CRAWLED: dict[tuple[str, str], set[str]] = {}


def crawled(app: Flask, clients: dict[str, Any], lead_id: int) -> dict[tuple[str, str], set[str]]:
    """The crawl's answer, once per run: it depends on the code, not on a test's data."""
    if not _CRAWLED:
        _CRAWLED.update(crawl(app, clients, lead_id))
    return _CRAWLED


def _entry_points(app: Flask, clients: dict[str, Any], lead_id: int) -> list[tuple[str, str, list[str]]]:
    """Each page that reads parameters, as the first role (by preference) that may open it."""
    found = crawled(app, clients, lead_id)
    points = []
    for rule in app.url_map.iter_rules():
        role = next((r for r in ROLE_PREFERENCE if (rule.endpoint, r) in found), None)
        if role is None:
            continue
        values = {arg: (lead_id if "id" in arg else "funnel") for arg in rule.arguments}
        points.append(
            (rule.build(values, append_unknown=False)[1], role, sorted(found[(rule.endpoint, role)]))
        )
    return points


PAGES = ["leads.queue", "leads.tasks", "referrals.queue", "dashboard.index", "admin.audit_log", "other"]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_hostile_query_strings_never_break_a_page(app, clients, planted, page):
    """One test per named page (and one for every other page that reads a parameter)."""
    points = _entry_points(app, clients, planted)
    named = {"/leads", "/tasks", "/referrals", "/dashboard", "/admin/audit"}
    url_of = {
        "leads.queue": "/leads",
        "leads.tasks": "/tasks",
        "referrals.queue": "/referrals",
        "dashboard.index": "/dashboard",
        "admin.audit_log": "/admin/audit",
    }
    if page == "other":
        chosen = [p for p in points if p[0] not in named]
    else:
        chosen = [p for p in points if p[0] == url_of[page]]
    if page == "leads.tasks" and not chosen:
        # /tasks reads no parameter (the crawl found none): it still gets hostile unknown names.
        chosen = [("/tasks", "front_desk", [])]
    assert chosen, f"no parameters found for {page}"
    for path, role, _ in chosen:  # a first view creates the clinic's settings row: not the fuzz's doing
        clients[role].get(path).close()
    before = table_checksums(skip=WRITTEN_BY_A_VIEW)
    for path, role, names in chosen:
        tally = Tally(f"GET {ID_RE.sub('/<id>', path)} as {role}")
        fuzz_page(clients[role], path, names, tally)
        print("\n" + tally.report())
    after = table_checksums(skip=WRITTEN_BY_A_VIEW)
    assert not changed_tables(before, after)

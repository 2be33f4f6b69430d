"""Every CSV export neutralises cells a spreadsheet would run as a formula (PRODUCT §8, OWASP CSV injection).

The exports are found, not listed: every GET route of the URL map is opened as an admin and as
a manager (path arguments filled with a planted lead's id, or each dashboard chart), and every
answer that is ``text/csv`` is an export. The data is planted so that text starting with each
formula prefix (``= + - @``, tab, carriage return) reaches every free-text column an export
has: patient names (stage aging), staff names (staff credit) and tag codes (conversion by tag).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from crm import clock
from crm.dashboard.routes import CHARTS
from crm.extensions import db
from crm.models import StageChange
from crm.settings import get_settings
from tests.conftest import CRMTestClient, sign_in
from tests.security.hostile import FORMULAS

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"-?\d+(\.\d+)?%?")  # a negative number is a number, not a formula


@pytest.fixture
def planted(app, make_user, make_lead):
    """Leads, staff and tags whose text starts with every formula prefix; return a lead id."""
    now = clock.now()
    limits = get_settings().stage_aging_days or {}
    stage = next(s for s, d in limits.items() if d)
    lead = None
    for i, payload in enumerate(FORMULAS):
        actor = make_user("front_desk", name=payload + f" staff {i}")
        lead = make_lead(
            first_name=payload,
            last_name=f"Formula{i}",
            stage=stage,
            stage_entered_at=now - timedelta(days=400),
            created_at=now - timedelta(days=2),
            tags=[payload[:40]],
        )
        db.session.add(
            StageChange(lead_id=lead.id, from_stage=None, to_stage=stage, actor_id=actor.id, at=now)
        )
    db.session.commit()
    assert lead is not None
    return lead.id


def csv_exports(app, client, lead_id: int) -> dict[str, str]:
    """Open every GET route; return {address: body} for those that answer CSV."""
    found: dict[str, str] = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        choices = [{}]
        if "chart" in rule.arguments:
            choices = [{"chart": chart} for chart in CHARTS]
        for values in choices:
            values = {**values, **{arg: lead_id for arg in rule.arguments if "id" in arg}}
            if set(values) != set(rule.arguments):
                continue
            url = rule.build(values, append_unknown=False)[1]
            response = client.get(url)
            if response.mimetype == "text/csv":
                found[url] = response.get_data(as_text=True)
            response.close()
    return found


def test_every_csv_export_neutralises_formula_cells(app, planted, make_user):
    exports: dict[str, str] = {}
    app.test_client_class = CRMTestClient  # each request in its own context, as on a server
    for role in ("admin", "manager"):
        client = app.test_client()
        assert sign_in(client, make_user(role).email).status_code == 302
        exports.update(csv_exports(app, client, planted))
    assert set(exports) == {f"/dashboard/export/{chart}.csv" for chart in CHARTS}, sorted(exports)
    reached = set()
    for url, body in exports.items():
        for row in csv.reader(io.StringIO(body, newline="")):
            for cell in row:
                assert not (cell.startswith(FORMULA_START) and not NUMBER.fullmatch(cell)), (url, cell)
                if cell.startswith("'") and cell[1:].startswith(FORMULA_START):
                    reached.add(url)
    # The planted text did reach the exports with free text (else this test proves nothing).
    assert {
        "/dashboard/export/aging.csv",
        "/dashboard/export/staff.csv",
        "/dashboard/export/tags.csv",
    } <= reached
    print(f"\nCSV exports found and checked: {len(exports)} ({', '.join(sorted(exports))})")

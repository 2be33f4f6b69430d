"""Every page each role can open, as that role sees it, in real headless Chromium (PRODUCT §9).

On a small seeded clinic (``seed_demo``: leads of every stage and source, calls, tasks,
appointments, notes, form requests, referrals), each role signs in once through the form and
opens one page per route template — and the lead page for a lead of each kind — and each page:

- passes an axe-core scan with no serious or critical violation;
- raises no ``securitypolicyviolation`` event (the listener is installed before the page's
  own scripts run) and logs no console error or uncaught exception.

Error pages (403, 404) are opened on purpose and must pass too. The test prints the number
of pages it scanned for the role and how long that took.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import ConsoleMessage, Page, expect

from crm.extensions import db
from crm.models import Lead, User
from crm.seed import DEMO_LOGINS, seed_demo

pytestmark = pytest.mark.browser

# A fixed moment (a Tuesday afternoon, clinic time) so the seeded data and the pages are the same
# every run.
NOW = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
AXE = Axe()
# The page, and each scrolling table box, fit the window's width: nothing hides off to the right.
TOO_WIDE = """() => [document.documentElement, ...document.querySelectorAll('.table-wrap')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className} ${el.scrollWidth} > ${el.clientWidth} px`)"""
LEAD_PAGE = re.compile(r"/leads/\d+")
LISTEN = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolation(
    `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@dataclass
class Watch:
    """What the browser reported while one page was open."""

    csp: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.csp.clear()
        self.console.clear()


def watch(page: Page) -> Watch:
    """Listen for CSP violations, console errors and uncaught exceptions on every page loaded."""
    seen = Watch()
    page.expose_function("__cspViolation", lambda text: seen.csp.append(text))
    page.add_init_script(LISTEN)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.console.append(f"uncaught: {error}"))
    return seen


def axe_findings(page: Page) -> tuple[list[str], list[str]]:
    """Axe's findings on the page, one line each: (serious or critical, moderate or minor)."""
    result = AXE.run(page)
    lines = {
        v["id"]: f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result.response["violations"]
    }
    violations = result.response["violations"]
    serious = [lines[v["id"]] for v in violations if v["impact"] in ("serious", "critical")]
    return serious, [line for line in lines.values() if line not in serious]


def scan(page: Page, seen: Watch, base: str, path: str, status: int = 200) -> tuple[list[str], list[str]]:
    """Open one page; return every problem found on it (empty: the page passes) and axe's lesser notes."""
    seen.clear()
    response = page.goto(f"{base}{path}")
    assert response is not None
    problems = [] if response.status == status else [f"status {response.status}, expected {status}"]
    page.wait_for_load_state("load")
    serious, lesser = axe_findings(page)
    problems += serious
    problems += [f"wider than a 1366-px screen: {w}" for w in page.evaluate(TOO_WIDE)]
    page.wait_for_timeout(50)  # let a late violation report reach us
    problems += [f"CSP: {v}" for v in seen.csp]
    console = seen.console
    if status >= 400:
        # Chromium logs the error status of the page itself; that is the page we asked for.
        console = [c for c in console if not c.startswith("Failed to load resource: the server responded")]
    problems += [f"console: {c}" for c in console]
    return [f"{path}: {p}" for p in problems], [f"{path}: {n}" for n in lesser]


def sign_in(page: Page, base: str, role: str) -> None:
    email, _, _, password = next(login for login in DEMO_LOGINS if login[1] == role)
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".whoami-name")).to_be_visible()


@pytest.fixture
def clinic(app: Any, frozen_clock: Any) -> dict[str, Any]:
    """A small seeded clinic; returns ids of a lead of each kind the pages show differently."""
    frozen_clock(NOW)
    seed_demo(n_leads=300, n_calls=1500, seed=5457, echo=lambda _line: None)

    def one(*where: Any) -> Lead:
        lead = db.session.scalar(sa.select(Lead).where(*where).order_by(Lead.id).limit(1))
        assert lead is not None, f"the seeded clinic has no lead where {where}"
        return lead

    surgeon = db.session.scalar(sa.select(User).where(User.role == "surgeon", User.email.like("surgeon@%")))
    review = one(Lead.stage == "surgical_review", Lead.surgeon_id.is_(None))
    ids = {
        "new": one(Lead.stage == "new").id,
        "web": one(Lead.source == "web_form", Lead.stage != "closed").id,
        "urgent": one(Lead.urgent.is_(True)).id,
        "referral": one(Lead.source == "referral", Lead.stage != "closed").id,
        "review": review.id,
        "consult": one(Lead.stage == "consult_scheduled").id,
        "surgery": one(Lead.stage == "surgery_scheduled", Lead.surgeon_id == surgeon.id).id,
        "closed": one(Lead.stage == "closed").id,
        "last_name": review.last_name,
    }
    db.session.commit()
    return ids


def pages_for(role: str, ids: dict[str, Any]) -> list[tuple[str, int]]:
    """The pages a role opens in its work (PRODUCT §5, §10), and two it may not open."""
    lead = "/leads/{}".format
    kinds = ("new", "web", "urgent", "referral", "consult", "closed")
    staff_lead_pages = [(lead(ids[k]), 200) for k in kinds]
    editor_pages = [
        ("/leads", 200),
        (f"/leads?q={ids['last_name']}", 200),
        ("/leads?stage=new&include=closed", 200),
        ("/leads/new", 200),
        ("/leads/import", 200),
        (f"/leads/{ids['new']}/merge?into={ids['web']}", 200),
        ("/tasks", 200),
        (lead(ids["review"]), 200),
    ]
    return {
        "anonymous": [
            ("/login", 200),
            ("/request-appointment", 200),
            ("/request-appointment/thanks", 200),
            ("/api/v1/docs", 200),
            ("/no-such-page", 404),
        ],
        "front_desk": [
            *editor_pages,
            *staff_lead_pages,
            (f"/referrals/{ids['review']}/print", 200),
            ("/admin", 403),
            ("/leads/999999999", 404),
        ],
        "surgeon": [
            ("/referrals", 200),
            (lead(ids["review"]), 200),
            (lead(ids["surgery"]), 200),
            (f"/referrals/{ids['review']}/print", 200),
            ("/dashboard", 200),
            ("/tasks", 403),
            (lead(ids["new"]), 404),
        ],
        "manager": [
            ("/dashboard", 200),
            ("/dashboard?range=12m", 200),
            *editor_pages,
            (lead(ids["consult"]), 200),
            ("/referrals", 200),
            (f"/referrals/{ids['review']}/print", 200),
            ("/admin", 403),
        ],
        "admin": [
            ("/admin", 200),
            ("/admin/tokens", 200),
            ("/admin/audit", 200),
            ("/dashboard", 200),
            ("/leads", 200),
            (lead(ids["consult"]), 200),
            ("/leads/new", 200),
            ("/tasks", 200),
            ("/referrals", 403),
        ],
    }[role]


@pytest.mark.parametrize("role", ["anonymous", "front_desk", "surgeon", "manager", "admin"])
def test_every_page_of_a_role_passes_axe_with_no_csp_violation_or_console_error(
    live_server, tab, clinic, shots_dir, role
):
    page = tab
    page.set_viewport_size({"width": 1366, "height": 900})
    seen = watch(page)
    started = time.perf_counter()
    if role != "anonymous":
        sign_in(page, live_server, role)
    pages = pages_for(role, clinic)
    problems: list[str] = []
    notes: list[str] = []
    shots: set[str] = set()
    for path, status in pages:
        found, lesser = scan(page, seen, live_server, path, status)
        problems += found
        notes += lesser
        shot = "home" if path == pages[0][0] else "lead" if LEAD_PAGE.fullmatch(path) else None
        if shot and shot not in shots:
            shots.add(shot)
            page.screenshot(path=str(shots_dir / f"a11y-{role}-{shot}.png"))
    took = time.perf_counter() - started
    print(f"\n{role}: {len(pages)} pages scanned in {took:.1f} s, {len(problems)} problems")
    print("\n".join(f"  moderate/minor (not failing): {n}" for n in notes))
    assert problems == []


def test_the_watch_catches_a_planted_csp_violation_and_console_error(live_server, tab):
    """The listeners above can fail: an outside image and a console error are both reported."""
    page = tab
    seen = watch(page)
    page.goto(f"{live_server}/login")
    page.evaluate(
        """() => {
        const img = document.createElement('img');
        img.src = 'https://cdn.example.invalid/pixel.png';
        document.body.append(img);
        console.error('planted error');
    }"""
    )
    page.wait_for_timeout(200)
    assert [v for v in seen.csp if v.startswith("img-src blocked https://cdn.example.invalid/pixel.png")]
    assert "planted error" in seen.console[0]

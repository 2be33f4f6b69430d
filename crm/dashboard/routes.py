"""The manager dashboard (PRODUCT §8): charts from ``crm.metrics``, a table and a CSV under each."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user

from crm import audit, clock, metrics
from crm.authz import can, roles
from crm.dashboard import charts
from crm.extensions import db
from crm.models import SOURCE_LABELS, SOURCES, STAGE_LABELS, ReferringPractice, User
from crm.querystring import iso_day, plain_text, whole_number
from crm.security import client_ip
from crm.settings import clinic_tz
from crm.triage import TAG_LABELS

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

PRESETS = {
    "week": "This week",
    "30d": "Last 30 days",
    "quarter": "This quarter",
    "12m": "Last 12 months",
    "custom": "Custom",
}
CHARTS = (
    "funnel",
    "sources",
    "tags",
    "campaigns",
    "landing_pages",
    "practices",
    "speed_week",
    "speed_staff",
    "speed",
    "calls",
    "callbacks",
    "aging",
    "staff",
)
# OWASP's list: a spreadsheet runs a cell starting with these as a formula (tab and carriage
# return too: some strip them first and then see the "=").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The query-string names a dashboard link carries on (to an export): no other name reaches
# url_for, where ``chart`` twice or its own ``_scheme`` would break building the link.
# The complaint filter's choices, in the tagger's own order (region, side, radiating, ...).
TAG_CHOICES = tuple(TAG_LABELS.items())
VIEW_ARGS = ("range", "from", "to", "source", "tag", "campaign", "owner", "aging_page")


@dataclass(frozen=True)
class View:
    """What the query string asked for: the preset, its dates (clinic-local) and the filters."""

    preset: str
    first_day: date
    last_day: date
    period: metrics.Period
    filters: metrics.Filters
    aging_page: int = 1


def read_view(args: Any, now: datetime) -> View:
    """Turn the query string into a period (clinic-local whole days) and filters; bad input falls back."""
    tz = clinic_tz()
    today = now.astimezone(tz).date()
    preset = args.get("range", "30d")
    if preset not in PRESETS:
        preset = "30d"
    first, last = today - timedelta(days=29), today
    if preset == "week":
        first = today - timedelta(days=today.weekday())
    elif preset == "quarter":
        first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    elif preset == "12m":
        first = today - timedelta(days=364)
    elif preset == "custom":
        first = iso_day(args.get("from")) or first
        last = iso_day(args.get("to")) or last
        if last < first:
            first, last = last, first
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last + timedelta(days=1), time(), tz)
    source = args.get("source") or None
    tag = plain_text(args.get("tag"), 60)
    campaign = plain_text(args.get("campaign"), 120)
    owner = args.get("owner", "")
    page = args.get("aging_page", "")
    return View(
        preset=preset,
        first_day=first,
        last_day=last,
        period=metrics.Period(start, end),
        filters=metrics.Filters(
            source=source if source in SOURCES else None,
            tag=tag,
            campaign=campaign,
            owner_id=whole_number(owner),
        ),
        aging_page=min(whole_number(page) or 1, metrics.STALLED_PAGES),
    )


def numbers(view: View, now: datetime) -> dict[str, Any]:
    """Compute every manager chart's numbers for a view."""
    p, f = view.period, view.filters
    funnel, sources = metrics.funnel_and_sources(p, f)
    return {
        "funnel": funnel,
        "sources": sources,
        "tags": metrics.conversion_by("tag", p, f),
        "campaigns": metrics.conversion_by("campaign", p, f),
        "landing_pages": metrics.conversion_by("landing_page", p, f),
        "practices": _practice_names(metrics.conversion_by("practice", p, f)),
        "speed": metrics.speed_to_lead(p, f),
        "calls": metrics.calls(p),
        "aging": metrics.stage_aging(f, now=now, page=view.aging_page),
        "staff": metrics.staff(p),
    }


def _practice_names(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Show referring practices by name (one statement, only when there are rows)."""
    if not rows:
        return rows
    names = dict(
        db.session.execute(
            sa.select(ReferringPractice.id, ReferringPractice.name).where(
                ReferringPractice.id.in_([int(r["group"]) for r in rows])
            )
        ).all()
    )
    return [{**r, "group": names.get(int(r["group"]), f"Practice {r['group']}")} for r in rows]


def figures(data: dict[str, Any]) -> dict[str, str]:
    """Make each non-empty chart's plotly figure, serialised for the page."""
    figs: dict[str, Any] = {}
    if data["funnel"][0]["leads"]:
        figs["funnel"] = charts.funnel_figure(data["funnel"])
        figs["sources"] = charts.conversion_figure(data["sources"], labels=dict(SOURCE_LABELS))
    if data["tags"]:
        figs["tags"] = charts.conversion_figure(data["tags"][:15], labels=TAG_LABELS)
    for chart in ("campaigns", "landing_pages", "practices"):
        if data[chart]:
            figs[chart] = charts.conversion_figure(data[chart][:15])
    speed = data["speed"]
    if speed["by_week"]:
        weeks = [r["week"].strftime("%b %-d") for r in speed["by_week"]]
        figs["speed_week"] = charts.speed_figure(
            speed["by_week"], x_key="week", target=speed["target"], labels=weeks
        )
    if speed["by_staff"]:
        names = [r["name"] for r in speed["by_staff"]]
        figs["speed_staff"] = charts.speed_figure(
            speed["by_staff"], x_key="staff", target=speed["target"], labels=names
        )
    if data["calls"]["total"]:
        figs["calls"] = charts.calls_figure(data["calls"]["cells"])
    if data["staff"]:
        figs["staff"] = charts.staff_figure(data["staff"])
    return {name: charts.as_script_json(fig) for name, fig in figs.items()}


@bp.route("")
@roles("surgeon", "manager", "admin")
def index() -> str:
    """Show the dashboard: the manager's charts, or a surgeon's own referral numbers."""
    now = clock.now()
    view = read_view(request.args, now)
    if current_user.role == "surgeon":
        mine = metrics.surgeon_numbers(current_user.id, view.period)
        return render_template("dashboard/surgeon.html", view=view, presets=PRESETS, mine=mine)
    data = numbers(view, now)
    # The stage-aging list names patients: record which leads the page showed.
    audit.record_list(
        "dashboard_view",
        user_id=current_user.id,
        lead_ids=[r["id"] for r in data["aging"]["leads"]],
        ip=client_ip(),
    )
    db.session.commit()
    return render_template(
        "dashboard/index.html",
        view=view,
        args={k: v for k, v in request.args.items() if k in VIEW_ARGS},
        presets=PRESETS,
        sources=SOURCES,
        tag_choices=TAG_CHOICES,
        data=data,
        figs=figures(data),
        tables={chart: table_rows(chart, data) for chart in CHARTS},
        weekdays=charts.WEEKDAYS,
        aging_size=metrics.STALLED_LIMIT,
        aging_pages=metrics.STALLED_PAGES,
        can_export=can(current_user, "export"),
        owners=db.session.execute(
            sa.select(User.id, User.name)
            .where(User.active.is_(True), User.role != "surgeon")
            .order_by(User.name)
        ).all(),
    )


def neutralise(value: Any) -> Any:
    """Keep a spreadsheet from running a cell as a formula: text starting = + - @, tab or CR gets a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def table_rows(chart: str, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Return one chart's numbers as a header and rows (the same numbers as its table)."""
    if chart == "funnel":
        return ["stage", "leads", "share_of_previous"], [
            [STAGE_LABELS[r["stage"]], r["leads"], _pct(r["of_previous"])] for r in data["funnel"]
        ]
    if chart in ("sources", "tags", "campaigns", "landing_pages", "practices"):
        label = {
            "sources": "source",
            "tags": "tag",
            "campaigns": "campaign",
            "landing_pages": "landing_page",
            "practices": "referring_practice",
        }[chart]
        head = [
            label,
            "leads",
            "consults",
            "surgeries",
            "consult_rate",
            "surgery_rate",
        ]
        names = TAG_LABELS if chart == "tags" else {}
        return head, [
            [
                names.get(r["group"], r["group"]),
                r["leads"],
                r["consults"],
                r["surgeries"],
                _pct(r["consult_rate"]),
                _pct(r["surgery_rate"]),
            ]
            for r in data[chart]
        ]
    if chart == "speed":
        s = data["speed"]
        return ["contacted", "waiting", "median_business_minutes", "p90_business_minutes", "within_target"], [
            [s["contacted"], s["waiting"], s["median"], s["p90"], _pct(s["within"])]
        ]
    if chart in ("speed_week", "speed_staff"):
        by_week = chart == "speed_week"
        rows = data["speed"]["by_week" if by_week else "by_staff"]
        return [
            "week_starting" if by_week else "staff",
            "contacted",
            "median_business_minutes",
            "p90_business_minutes",
            "within_target",
        ], [
            [
                r["week"].isoformat() if by_week else r["name"],
                r["contacted"],
                r["median"],
                r["p90"],
                _pct(r["within"]),
            ]
            for r in rows
        ]
    if chart == "callbacks":
        c = data["calls"]
        return ["missed_inbound_calls", "with_callback_task", "done_within_target", "share_within_target"], [
            [c["missed"], c["callbacks"], c["callbacks_on_time"], _pct(c["callback_rate"])]
        ]
    if chart == "calls":
        return ["weekday", "hour", "calls"], [
            [charts.WEEKDAYS[c["weekday"]], c["hour"], c["calls"]]
            for c in sorted(data["calls"]["cells"], key=lambda c: (c["weekday"], c["hour"]))
        ]
    if chart == "aging":
        return ["lead_id", "name", "stage", "days_in_stage"], [
            [r["id"], r["name"], STAGE_LABELS[r["stage"]], r["days"]] for r in data["aging"]["leads"]
        ]
    return ["staff", "contacts", "stage_moves", "conversions"], [
        [r["name"], r["contacts"], r["moves"], r["conversions"]] for r in data["staff"]
    ]


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


@bp.route("/export/<chart>.csv")
@roles("manager", "admin")
def export(chart: str) -> Response:
    """Download one chart's numbers as CSV, formulas neutralised, recorded in the audit log."""
    if chart not in CHARTS:
        abort(404)
    now = clock.now()
    view = read_view(request.args, now)
    data = _one_chart(chart, view, now)
    head, rows = table_rows(chart, data)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(head)
    writer.writerows([neutralise(v) for v in row] for row in rows)
    audit.record(
        "dashboard_export",
        user_id=current_user.id,
        detail={
            "chart": chart,
            "rows": len(rows),
            "from": view.first_day.isoformat(),
            "to": view.last_day.isoformat(),
        },
        ip=client_ip(),
    )
    db.session.commit()
    name = f"{chart}-{view.first_day.isoformat()}-{view.last_day.isoformat()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _one_chart(chart: str, view: View, now: datetime) -> dict[str, Any]:
    """Compute only the numbers one export needs."""
    p, f = view.period, view.filters
    compute = {
        "funnel": lambda: metrics.funnel(p, f),
        "sources": lambda: metrics.conversion_by("source", p, f),
        "tags": lambda: metrics.conversion_by("tag", p, f),
        "campaigns": lambda: metrics.conversion_by("campaign", p, f),
        "landing_pages": lambda: metrics.conversion_by("landing_page", p, f),
        "practices": lambda: _practice_names(metrics.conversion_by("practice", p, f)),
        "speed": lambda: metrics.speed_to_lead(p, f),
        "calls": lambda: metrics.calls(p),
        "aging": lambda: metrics.stage_aging(f, now=now, limit=metrics.STALLED_LIMIT * metrics.STALLED_PAGES),
        "staff": lambda: metrics.staff(p),
    }
    key = {"speed_week": "speed", "speed_staff": "speed", "callbacks": "calls"}.get(chart, chart)
    return {key: compute[key]()}

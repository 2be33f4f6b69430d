"""Plotly figures of the dashboard, made from the numbers of ``crm.metrics``.

Figures are plain plotly figure dicts (``{"data": [...], "layout": {...}}``) serialised with
``plotly.io.to_json(..., validate=False)``: building ``plotly.graph_objects`` figures
validated every property and cost more server time than all the dashboard's queries. They
are embedded in the page as ``<script type="application/json">`` and drawn by
``static/js/dashboard.js`` with the vendored cartesian bundle: no inline script. Only bar and
scatter traces (a heatmap sets inline styles, which the content security policy forbids),
plain-text labels, no template.
"""

from __future__ import annotations

from typing import Any

import plotly.io as pio

from crm.models import SOURCE_LABELS, STAGE_LABELS

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BRAND = "#1f5f8b"
ACCENT = "#2e8b57"
MUTED = "#8a6fc2"
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 150, "r": 20, "t": 10, "b": 40},
    "height": 320,
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "paper_bgcolor": "#fff",
    "plot_bgcolor": "#fff",
}
Figure = dict[str, Any]


def _layout(**changes: Any) -> dict[str, Any]:
    return {**_LAYOUT, **changes}


def as_script_json(fig: Figure) -> str:
    """Serialise a figure for a ``<script type="application/json">`` (no ``</script>`` break-out)."""
    text = pio.to_json(fig, validate=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def funnel_figure(rows: list[dict[str, Any]]) -> Figure:
    """Draw leads reaching each stage as horizontal bars, first stage on top."""
    bar = {
        "type": "bar",
        "x": [r["leads"] for r in rows],
        "y": [STAGE_LABELS[r["stage"]] for r in rows],
        "orientation": "h",
        "marker": {"color": BRAND},
        "hovertemplate": "%{y}: %{x} leads<extra></extra>",
    }
    layout = _layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "leads"}})
    return {"data": [bar], "layout": layout}


def conversion_figure(rows: list[dict[str, Any]], *, labels: dict[str, str] | None = None) -> Figure:
    """Draw the consult and surgery rates per group as grouped bars (percent)."""
    names = [_short((labels or {}).get(r["group"], r["group"])) for r in rows]
    data = [
        {
            "type": "bar",
            "name": "Consult scheduled",
            "x": names,
            "y": [round(100 * r["consult_rate"], 1) for r in rows],
            "marker": {"color": BRAND},
        },
        {
            "type": "bar",
            "name": "Surgery scheduled",
            "x": names,
            "y": [round(100 * r["surgery_rate"], 1) for r in rows],
            "marker": {"color": ACCENT},
        },
    ]
    layout = _layout(
        margin={"l": 50, "r": 20, "t": 30, "b": 100},
        barmode="group",
        yaxis={"title": {"text": "% of leads"}, "ticksuffix": "%"},
        legend={"orientation": "h", "y": 1.15},
    )
    return {"data": data, "layout": layout}


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_labels() -> dict[str, str]:
    """Return the sources' names in words."""
    return dict(SOURCE_LABELS)


def calls_figure(cells: list[dict[str, Any]]) -> Figure:
    """Draw call volume by hour × weekday as square markers sized and coloured by count."""
    top = max((c["calls"] for c in cells), default=0) or 1
    trace = {
        "type": "scatter",
        "x": [c["hour"] for c in cells],
        "y": [WEEKDAYS[c["weekday"]] for c in cells],
        "mode": "markers",
        "marker": {
            "symbol": "square",
            "size": [round(8 + 14 * c["calls"] / top, 1) for c in cells],
            "color": [c["calls"] for c in cells],
            # Spelled out: plotly.js's own "Blues" runs dark → light, the reverse of plotly.py's.
            "colorscale": [[0, "#c6dbef"], [0.5, "#4292c6"], [1, "#08306b"]],
            "cmin": 0,
            "cmax": top,
            "showscale": False,
            "line": {"width": 0},
        },
        "customdata": [c["calls"] for c in cells],
        "hovertemplate": "%{y} %{x}:00 — %{customdata} calls<extra></extra>",
    }
    layout = _layout(
        margin={"l": 50, "r": 20, "t": 10, "b": 40},
        height=280,
        xaxis={"title": {"text": "clinic hour"}, "range": [-0.5, 23.5], "dtick": 2},
        yaxis={"categoryorder": "array", "categoryarray": list(reversed(WEEKDAYS))},
    )
    return {"data": [trace], "layout": layout}


def staff_figure(rows: list[dict[str, Any]]) -> Figure:
    """Draw contacts, moves and conversions per staff member as grouped bars."""
    names = [r["name"] for r in rows]
    data = [
        {"type": "bar", "name": name, "x": names, "y": [r[key] for r in rows], "marker": {"color": color}}
        for name, key, color in (
            ("Contacts", "contacts", BRAND),
            ("Stage moves", "moves", MUTED),
            ("Conversions", "conversions", ACCENT),
        )
    ]
    layout = _layout(
        margin={"l": 50, "r": 20, "t": 30, "b": 80}, barmode="group", legend={"orientation": "h", "y": 1.15}
    )
    return {"data": data, "layout": layout}


def speed_figure(rows: list[dict[str, Any]], *, x_key: str, target: int, labels: list[str]) -> Figure:
    """Draw median and 90th percentile business minutes as bars, and the share within target."""
    data = [
        {
            "type": "bar",
            "name": "Median",
            "x": labels,
            "y": [r["median"] for r in rows],
            "marker": {"color": BRAND},
        },
        {
            "type": "bar",
            "name": "90th percentile",
            "x": labels,
            "y": [r["p90"] for r in rows],
            "marker": {"color": MUTED},
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"% within {target} min",
            "x": labels,
            "y": [None if r["within"] is None else round(100 * r["within"], 1) for r in rows],
            "yaxis": "y2",
            "marker": {"color": ACCENT},
            "line": {"color": ACCENT},
        },
    ]
    layout = _layout(
        margin={"l": 60, "r": 60, "t": 30, "b": 60 if x_key == "week" else 80},
        barmode="group",
        # Log scale: a median of minutes and a 90th percentile of days both stay readable.
        yaxis={"title": {"text": "business minutes (log scale)"}, "type": "log"},
        yaxis2={
            "title": {"text": "% within target"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 105],
            "tickvals": [0, 25, 50, 75, 100],
            "ticksuffix": "%",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": 1.15},
    )
    return {"data": data, "layout": layout}

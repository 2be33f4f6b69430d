"""Plotly figures of the dashboard, made from the numbers of ``crm.metrics``.

Figures leave as JSON (``fig.to_json()``) embedded in the page as ``<script
type="application/json">`` and are drawn by ``static/js/dashboard.js`` with the vendored
cartesian bundle: no inline script. Only bar and scatter traces (a heatmap sets inline
styles, which the content security policy forbids), plain-text labels, no template.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from crm.models import SOURCE_LABELS, STAGE_LABELS

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BRAND = "#1f5f8b"
ACCENT = "#2e8b57"
_LAYOUT: dict[str, Any] = {
    "template": "none",
    "margin": {"l": 150, "r": 20, "t": 10, "b": 40},
    "height": 320,
    "font": {"family": "system-ui, sans-serif", "size": 12},
}


def as_script_json(fig: go.Figure) -> str:
    """Serialise a figure for a ``<script type="application/json">`` (no ``</script>`` break-out)."""
    return fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def funnel_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Draw leads reaching each stage as horizontal bars, first stage on top."""
    fig = go.Figure(
        go.Bar(
            x=[r["leads"] for r in rows],
            y=[STAGE_LABELS[r["stage"]] for r in rows],
            orientation="h",
            marker={"color": BRAND},
            hovertemplate="%{y}: %{x} leads<extra></extra>",
        )
    )
    fig.update_layout(**_LAYOUT, yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "leads"}})
    return fig


def conversion_figure(rows: list[dict[str, Any]], *, labels: dict[str, str] | None = None) -> go.Figure:
    """Draw the consult and surgery rates per group as grouped bars (percent)."""
    names = [(labels or {}).get(r["group"], r["group"]) for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                name="Consult scheduled",
                x=names,
                y=[100 * r["consult_rate"] for r in rows],
                marker={"color": BRAND},
            ),
            go.Bar(
                name="Surgery scheduled",
                x=names,
                y=[100 * r["surgery_rate"] for r in rows],
                marker={"color": ACCENT},
            ),
        ]
    )
    fig.update_layout(
        **{**_LAYOUT, "margin": {"l": 50, "r": 20, "t": 10, "b": 80}},
        barmode="group",
        yaxis={"title": {"text": "% of leads"}, "ticksuffix": "%"},
        legend={"orientation": "h", "y": 1.1},
    )
    return fig


def source_labels() -> dict[str, str]:
    """Return the sources' names in words."""
    return dict(SOURCE_LABELS)


def calls_figure(cells: list[dict[str, Any]]) -> go.Figure:
    """Draw call volume by hour × weekday as square markers sized and coloured by count."""
    top = max((c["calls"] for c in cells), default=0) or 1
    fig = go.Figure(
        go.Scatter(
            x=[c["hour"] for c in cells],
            y=[WEEKDAYS[c["weekday"]] for c in cells],
            mode="markers",
            marker={
                "symbol": "square",
                "size": [8 + 14 * c["calls"] / top for c in cells],
                "color": [c["calls"] for c in cells],
                "colorscale": "Blues",
                "cmin": 0,
                "cmax": top,
                "showscale": False,
                "line": {"width": 0},
            },
            customdata=[c["calls"] for c in cells],
            hovertemplate="%{y} %{x}:00 — %{customdata} calls<extra></extra>",
        )
    )
    fig.update_layout(
        **{**_LAYOUT, "margin": {"l": 50, "r": 20, "t": 10, "b": 40}, "height": 280},
        xaxis={"title": {"text": "clinic hour"}, "range": [-0.5, 23.5], "dtick": 2},
        yaxis={"categoryorder": "array", "categoryarray": list(reversed(WEEKDAYS))},
    )
    return fig


def staff_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Draw contacts, moves and conversions per staff member as grouped bars."""
    names = [r["name"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="Contacts", x=names, y=[r["contacts"] for r in rows], marker={"color": BRAND}),
            go.Bar(name="Stage moves", x=names, y=[r["moves"] for r in rows], marker={"color": "#8a6fc2"}),
            go.Bar(name="Conversions", x=names, y=[r["conversions"] for r in rows], marker={"color": ACCENT}),
        ]
    )
    fig.update_layout(
        **{**_LAYOUT, "margin": {"l": 50, "r": 20, "t": 10, "b": 80}},
        barmode="group",
        legend={"orientation": "h", "y": 1.1},
    )
    return fig

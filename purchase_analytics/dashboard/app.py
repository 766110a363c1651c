"""The Dash page: revenue per window (split by group value, as stacked bars and a table per
window, when the job groups by event fields), watermark and final windows, dead letters and
late events, throughput and consumer lag, refreshed every second from the KafkaFeed.

Dash serves its own and plotly.js's browser files from the installed wheels
(serve_locally), so the page needs no network; the charts are plotly figures.
"""

from __future__ import annotations

import time

from dash import Dash, Input, Output, dcc, html

from .state import parse_time

REFRESH_MS = 1000

STYLE = {
    "page": {"fontFamily": "system-ui, sans-serif", "margin": "12px 20px", "color": "#1d2733"},
    "ok": {"padding": "6px 10px", "background": "#e3f4e6", "borderRadius": "4px"},
    "down": {"padding": "6px 10px", "background": "#fbe0de", "borderRadius": "4px", "fontWeight": "bold"},
    "kpis": {"display": "flex", "gap": "10px", "flexWrap": "wrap", "margin": "10px 0"},
    "kpi": {"border": "1px solid #d5dbe2", "borderRadius": "4px", "padding": "6px 12px", "minWidth": "130px"},
    "kpi_label": {"fontSize": "12px", "color": "#5b6675"},
    "kpi_value": {"fontSize": "20px", "fontWeight": "600"},
    "table": {"borderCollapse": "collapse", "fontSize": "13px"},
    "cell": {"border": "1px solid #d5dbe2", "padding": "3px 8px", "textAlign": "right"},
    "row": {"display": "flex", "gap": "24px", "flexWrap": "wrap", "alignItems": "flex-start"},
    "windows": {"display": "flex", "gap": "14px", "flexWrap": "wrap", "alignItems": "flex-start"},
    "window_heading": {"fontSize": "13px", "margin": "0 0 3px", "fontWeight": "600"},
    "swatch": {"display": "inline-block", "width": "10px", "height": "10px", "marginRight": "6px", "borderRadius": "2px"},
    "total": {"border": "1px solid #d5dbe2", "padding": "3px 8px", "textAlign": "right", "fontWeight": "600", "background": "#f2f4f7"},
}
# One colour per group value (the values shown on their own, in their order), grey for the rest.
GROUP_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#d37295"]
OTHER_COLOR = "#9aa3ad"
MIN_SLOTS = 6  # the grouped chart's x axis has room for this many windows at least
KPIS = [  # (id, label)
    ("kpi-watermark", "watermark"),
    ("kpi-final", "final windows"),
    ("kpi-rows-per-s", "input rows/s (last batch with data)"),
    ("kpi-batch-ms", "batch duration ms"),
    ("kpi-lag", "consumer lag (messages)"),
    ("kpi-dropped-late", "events dropped as late"),
    ("kpi-dead-letters", "dead letters"),
    ("kpi-batch", "last batch"),
]


def _kpi(kpi_id: str, label: str) -> html.Div:
    return html.Div([html.Div(label, style=STYLE["kpi_label"]), html.Div("-", id=kpi_id, style=STYLE["kpi_value"])], style=STYLE["kpi"])


def _table(table_id: str, header: list[str], rows: list[list], row_class: list[str] | None = None) -> html.Table:
    head = html.Tr([html.Th(h, style=STYLE["cell"]) for h in header])
    body = [
        html.Tr([html.Td(v, style=STYLE["cell"]) for v in row], className=(row_class or [""] * len(rows))[i]) for i, row in enumerate(rows)
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], id=table_id, style=STYLE["table"])


def _short(iso: str | None) -> str:
    return iso.replace("T", " ").replace(".000Z", "Z") if iso else "-"


def _span(start: str, end: str) -> str:
    """A window's start and end, the end's date left out when it is the start's."""
    start, end = _short(start), _short(end)
    return f"{start} – {end[11:] if end[:11] == start[:11] else end}"


def _number(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def window_length(windows: list[dict]) -> str:
    """The windows' length as the data gives it ("10-minute window", "1-hour window"), for the titles."""
    start, end = (parse_time(windows[0].get(k)) for k in ("window_start", "window_end")) if windows else (None, None)
    if start is None or end is None:
        return "window"
    seconds = int((end - start).total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size}-{unit} window"
    return f"{seconds}-second window"


def windows_figure(windows: list[dict]) -> dict:
    starts = [w["window_start"] for w in windows]
    colors = ["#2f6fb0" if w["final"] else "#f0a030" for w in windows]
    return {
        "data": [
            {
                "type": "bar",
                "name": "total_purchase",
                "x": starts,
                "y": [w["total_purchase"] for w in windows],
                "marker": {"color": colors},
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "orders",
                "x": starts,
                "y": [w["orders"] for w in windows],
                "yaxis": "y2",
                "line": {"color": "#333"},
            },
        ],
        "layout": {
            "title": {"text": f"total_purchase per {window_length(windows)} (blue: final, orange: open) and orders"},
            "yaxis": {"title": {"text": "total_purchase"}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": "orders"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
            "xaxis": {"type": "category"},
            "margin": {"l": 70, "r": 60, "t": 40, "b": 60},
            "height": 340,
            "legend": {"orientation": "h", "y": -0.25},
            "uirevision": "keep",
        },
    }


def group_colors(groups: list[dict]) -> dict:
    """Group values (a tuple, None for "other") -> colour."""
    return {**{g["values"]: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}, None: OTHER_COLOR}


def _window_group(window: dict, values) -> dict | None:
    return next((g for g in window["groups"] if g["values"] == values), None)


def groups_figure(windows: list[dict], group_by: list[str], groups: list[dict]) -> dict:
    """Revenue per window as bars stacked by group value, hatched while the window is open;
    the window's total above its bar."""
    starts = [w["window_start"] for w in windows]
    colors = group_colors(groups)
    series = [(g["values"], g["label"]) for g in groups]
    if any(_window_group(w, None) for w in windows):
        series.append((None, "other"))
    data = []
    for values, label in series:
        parts = [_window_group(w, values) for w in windows]
        data.append(
            {
                "type": "bar",
                "name": label,
                "x": starts,
                "y": [p["total_purchase"] if p else None for p in parts],
                "customdata": [p["orders"] if p else None for p in parts],
                "hovertemplate": f"{label}<br>%{{x}}<br>revenue %{{y:,}}<br>orders %{{customdata:,}}<extra></extra>",
                "marker": {
                    "color": colors[values],
                    "pattern": {"shape": ["" if w["final"] else "/" for w in windows], "fillmode": "overlay", "fgcolor": "#ffffff"},
                },
            }
        )
    totals = [w["total_purchase"] for w in windows]
    data.append(
        {
            "type": "scatter",
            "mode": "text",
            "name": "window total",
            "x": starts,
            "y": totals,
            "text": [_number(t) for t in totals],
            "textposition": "top center",
            "showlegend": False,
            "hoverinfo": "skip",
        }
    )
    return {
        "data": data,
        "layout": {
            "title": {"text": f"revenue per window by {' / '.join(group_by)} (hatched: open windows, still growing)"},
            "barmode": "stack",
            "yaxis": {"title": {"text": "revenue"}, "range": [0, max(totals, default=0) * 1.15 or 1]},
            "xaxis": {"type": "category", "range": [-0.5, max(len(windows), MIN_SLOTS) - 0.5]},  # a lone window is not one wide block
            "margin": {"l": 70, "r": 20, "t": 40, "b": 60},
            "height": 340,
            "legend": {"orientation": "h", "y": -0.25, "traceorder": "normal"},
            "uirevision": "keep",
        },
    }


def group_tables(windows: list[dict], group_by: list[str], groups: list[dict]) -> html.Div:
    """One table per window, newest first: each group value's revenue and orders, then the
    window's total."""
    colors = group_colors(groups)
    blocks = []
    for w in reversed(windows):
        rows = []
        for g in w["groups"]:
            values = g["values"] if g["values"] is not None else (g["label"],) + ("",) * (len(group_by) - 1)
            swatch = html.Span(style={**STYLE["swatch"], "background": colors[g["values"]]})
            cells = [html.Td([swatch, str(values[0])], style={**STYLE["cell"], "textAlign": "left"})]
            cells += [html.Td(str(v), style={**STYLE["cell"], "textAlign": "left"}) for v in values[1:]]
            cells += [html.Td(_number(g["total_purchase"]), style=STYLE["cell"]), html.Td(_number(g["orders"]), style=STYLE["cell"])]
            rows.append(html.Tr(cells, className="group-row", **{"data-group": g["label"]}))
        total = html.Tr(
            [html.Td("total", colSpan=len(group_by), style={**STYLE["total"], "textAlign": "left"})]
            + [html.Td(_number(w["total_purchase"]), style=STYLE["total"]), html.Td(_number(w["orders"]), style=STYLE["total"])],
            className="group-total",
        )
        head = html.Tr([html.Th(h, style=STYLE["cell"]) for h in [*group_by, "revenue", "orders"]])
        blocks.append(
            html.Div(
                [
                    html.Div(
                        f"{_span(w['window_start'], w['window_end'])} · {'final' if w['final'] else 'open'}", style=STYLE["window_heading"]
                    ),
                    html.Table([html.Thead(head), html.Tbody(rows), html.Tfoot(total)], style=STYLE["table"]),
                ],
                className="window-groups " + ("window-final" if w["final"] else "window-open"),
                **{"data-window-start": w["window_start"]},
            )
        )
    return html.Div(blocks, id="window-groups", style=STYLE["windows"])


def windows_table(windows: list[dict]) -> html.Table:
    return _table(
        "windows-table",
        ["window start", "window end", "total_purchase", "orders", "state"],
        [
            [
                _short(w["window_start"]),
                _short(w["window_end"]),
                _number(w["total_purchase"]),
                _number(w["orders"]),
                "final" if w["final"] else "open",
            ]
            for w in reversed(windows)
        ],
        ["window-final" if w["final"] else "window-open" for w in reversed(windows)],
    )


def throughput_figure(history: list[dict]) -> dict:
    batches = [h["batch_id"] for h in history]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "input rows/s",
                "x": batches,
                "y": [h["input_rows_per_s"] for h in history],
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "processed rows/s",
                "x": batches,
                "y": [h["processed_rows_per_s"] for h in history],
            },
            {
                "type": "bar",
                "name": "batch duration ms",
                "x": batches,
                "y": [h["batch_duration_ms"] for h in history],
                "yaxis": "y2",
                "opacity": 0.4,
            },
        ],
        "layout": {
            "title": {"text": "per micro-batch"},
            "height": 260,
            "margin": {"l": 60, "r": 60, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "batch"}, "type": "category"},
            "yaxis": {"title": {"text": "rows/s"}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": "ms"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
            "legend": {"orientation": "h", "y": -0.3},
            "uirevision": "keep",
        },
    }


def broker_line(view: dict) -> tuple[str, dict]:
    if view["broker_error"]:
        since = time.strftime("%H:%M:%S", time.localtime(view["broker_down_since"])) if view["broker_down_since"] else "?"
        return f"broker down since {since}: {view['broker_error']}; showing the last data read", STYLE["down"]
    return (
        f"Kafka {view['bootstrap_servers']}: connected, read at {time.strftime('%H:%M:%S', time.localtime(view['last_contact']))}",
        STYLE["ok"],
    )


def create_app(feed, last_windows: int, title: str = "Purchase analytics") -> Dash:
    app = Dash(__name__, title=title, serve_locally=True, update_title=None)
    app.layout = html.Div(
        [
            html.H2(title, style={"margin": "4px 0"}),
            html.Div("connecting…", id="broker-status", style=STYLE["ok"]),
            html.Div([_kpi(kpi_id, label) for kpi_id, label in KPIS], style=STYLE["kpis"]),
            html.Div("no windows yet", id="windows-empty", style={"fontSize": "18px", "margin": "20px 0"}),
            dcc.Graph(id="windows-chart", figure=windows_figure([]), config={"displaylogo": False}),
            html.Div(
                [
                    html.Div([html.H4(f"last {last_windows} windows"), html.Div(id="windows-table-box")]),
                    html.Div([html.H4("dead letters by rejection reason"), html.Div(id="dead-letters-box")]),
                ],
                style=STYLE["row"],
            ),
            dcc.Graph(id="throughput-chart", figure=throughput_figure([]), config={"displaylogo": False}),
            dcc.Interval(id="tick", interval=REFRESH_MS),
        ],
        style=STYLE["page"],
    )

    outputs = [
        Output("broker-status", "children"),
        Output("broker-status", "style"),
        Output("windows-empty", "style"),
        Output("windows-chart", "figure"),
        Output("windows-chart", "style"),
        Output("windows-table-box", "children"),
        Output("dead-letters-box", "children"),
        Output("throughput-chart", "figure"),
    ]
    outputs += [Output(kpi_id, "children") for kpi_id, _ in KPIS]

    @app.callback(*outputs, Input("tick", "n_intervals"))
    def refresh(_n):
        view = feed.snapshot(last_windows)
        status, status_style = broker_line(view)
        windows, group_by = view["windows"], view["group_by"]
        empty = not windows
        if group_by:  # the job groups each window by event fields: the breakdown
            figure, table = groups_figure(windows, group_by, view["groups"]), group_tables(windows, group_by, view["groups"])
        else:
            figure, table = windows_figure(windows), windows_table(windows)
        dead = (
            _table("dead-letters", ["rejection_reason", "messages"], [[r, _number(n)] for r, n in view["dead_letters"].items()])
            if view["dead_letters"]
            else html.Div("no dead letters", id="dead-letters")
        )
        final = sum(w["final"] for w in windows)
        return (
            status,
            status_style,
            {"display": "block" if empty else "none", "fontSize": "18px", "margin": "20px 0"},
            figure,
            {"display": "none" if empty else "block"},
            table,
            dead,
            throughput_figure(view["history"]),
            _short(view["watermark"]),
            f"{final} of {len(windows)}",
            _number(view["input_rows_per_s"], 1),
            _number(view["batch_duration_ms"]),
            _number(view["consumer_lag"]),
            _number(view["dropped_late"]),
            _number(sum(view["dead_letters"].values())),
            _number(view["batch_id"]),
        )

    return app

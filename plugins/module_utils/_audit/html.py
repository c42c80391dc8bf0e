# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Render a report as one self-contained HTML page.

No external assets: styles are inline, pictures are inline SVG, there is no script and
no web font, so the page opens offline and from an e-mail attachment. Every piece of text
that came from the cluster or the policy goes through :func:`esc` (names, labels and
origins are untrusted input); numbers are formatted by us.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .classify import CLASSES
from .layout import CHAR_WIDTH, LABEL_PADDING, LINE_HEIGHT, NODE_WIDTH, layout_graph

CLASS_COLOURS = {
    "permitted": "#2e7d32",
    "escaped": "#ef6c00",
    "partial": "#9e6a00",
    "rejected": "#c62828",
    "unanswered": "#6a1b9a",
    "unclassified": "#757575",
}
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
code{font-size:11px;word-break:break-all}.badge{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-size:11px}
.empty{color:#c62828;font-weight:bold}.drift{background:#fff3e0}.ok{color:#2e7d32}.muted{color:#777}
.matrix td{width:18px;height:18px;text-align:center;padding:0;font-family:monospace;font-size:12px}
.c-allow{background:#c8e6c9}.c-deny{background:#e0e0e0}.c-diff{background:#ef9a9a;font-weight:bold}
.c-pallow{background:#e8f5e9;color:#777}.c-pdeny{background:#f5f5f5;color:#999}.c-none{background:#fff}
.c-partial{background:#ffe082}.c-ppartial{background:#fff8e1;color:#9e6a00}
.host-section summary{font-weight:bold;font-size:13px;margin:8px 0;cursor:pointer}
.cards span{display:inline-block;margin:0 12px 6px 0;padding:6px 10px;border:1px solid #ddd;border-radius:6px}
""".strip()


def _header(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"


def esc(value: Any) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{esc(report['title'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(report['title'])}</h1>",
        _summary(report),
        _graph_section(report),
        _matrix_section(report),
        _flows_section(report),
        _hosts_section(report),
        _filters_section(report),
        _warnings_section(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(report: Mapping[str, Any]) -> str:
    summary = report["summary"]
    flows = summary["flows"]
    cards = [
        f"<span>filters <b>{summary['filters']}</b></span>",
        f"<span>policies <b>{summary['policies']}</b> (catch-all {esc(report['catch_all'])})</span>",
        f"<span>live rules <b>{summary['rules']}</b> in {summary['sections']} namespaces</span>",
        f"<span>drift <b>{summary['drift']}</b></span>",
    ]
    cards.extend(f'<span style="border-color:{CLASS_COLOURS[name]}">{name} <b>{flows[name]}</b></span>' for name in CLASSES)
    empty = summary["empty_filters"]
    note = f'<p class="empty">Filters matching nothing (a likely typo): {esc(", ".join(empty))}</p>' if empty else ""
    return f'<section id="summary"><div class="cards">{"".join(cards)}</div>{note}{_class_bar(flows)}</section>'


def _class_bar(counts: Mapping[str, int]) -> str:
    total = sum(counts[name] for name in CLASSES)
    if not total:
        return '<p class="muted">No flows observed.</p>'
    x = 0.0
    rects = []
    for name in CLASSES:
        width = 600.0 * counts[name] / total
        if width:
            rects.append(
                f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="18" fill="{CLASS_COLOURS[name]}">'
                f"<title>{name}: {counts[name]}</title></rect>"
            )
        x += width
    return f'<svg id="flow-bar" width="600" height="18" role="img" aria-label="flows by class">{"".join(rects)}</svg>'


# -- the policy graph ----------------------------------------------------------------------------

EDGE_LABEL_CHARS = 40
NOTE_CHARS = 44
NODE_TEXT_INSET = 8.0
TITLE_CHAR_WIDTH = 7.6  # per character at font-size 12, bold (pinned with textLength like the labels)
NODE_TITLE_CHARS = int((NODE_WIDTH - 2 * NODE_TEXT_INSET) // TITLE_CHAR_WIDTH)
NODE_LINE_CHARS = int((NODE_WIDTH - 2 * NODE_TEXT_INSET) // CHAR_WIDTH)


def _pinned(text: str, char_width: float) -> str:
    """textLength attributes that make the browser draw ``text`` exactly as wide as the layout reserved."""
    return f'textLength="{len(text) * char_width:.1f}" lengthAdjust="spacingAndGlyphs"'


def edge_label_lines(edge: Mapping[str, Any]) -> list[str]:
    """The lines an edge's label shows: the policy and its ports, then each NodePort (clipped)."""
    return [_clip(edge["label"], EDGE_LABEL_CHARS), *(_clip(note, NOTE_CHARS) for note in edge["nodeports"])]


def render_graph_svg(graph: Mapping[str, Any]) -> str:
    """The policy as an SVG picture: filters are boxes, policies arrows labelled with their
    ports, laid out by :mod:`.layout` (no label over another, no arrow through a box)."""
    if not graph["nodes"]:
        return '<p class="muted">The policy has no filters.</p>'
    layout = layout_graph(graph, [edge_label_lines(edge) for edge in graph["edges"]])
    width, height = int(layout.width + 0.5), int(layout.height + 0.5)
    out = [
        f'<svg id="policy-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="11">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    # Arrows first, then boxes and labels over them: a label's white ground hides its own arrow.
    for placed in layout.edges:
        edge = graph["edges"][placed.index]
        colour = "#c62828" if edge["action"] == "deny" else "#2e7d32"
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in placed.points)
        marker = "marker-start" if placed.arrow_at_start else "marker-end"
        out.append(
            f'<polyline class="policy-edge" points="{points}" fill="none" stroke="{colour}" stroke-width="1.6" '
            f'stroke-linejoin="round" {marker}="url(#arrow)"><title>{esc(edge["label"])}</title></polyline>'
        )
    for node in graph["nodes"]:
        box = layout.boxes[node["id"]]
        stroke = "#c62828" if node["empty"] else "#1565c0"
        dash = ' stroke-dasharray="5,3"' if node["empty"] else ""
        kinds = ", ".join(node["kinds"]) or "no match"
        # Both lines are clipped to the box and pinned to their reserved width, as the edge labels are,
        # so a long filter name or a filter matching every kind never sticks out of its box.
        title = _clip(node["id"], NODE_TITLE_CHARS)
        matches = _clip(f'{node["matches"]} match{"es" if node["matches"] != 1 else ""}: {kinds}', NODE_LINE_CHARS)
        out.append(
            f'<g class="filter-node"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.0f}" height="{box.height:.0f}" rx="6" '
            f'fill="#e3f2fd" stroke="{stroke}"{dash}/>'
            f'<text x="{box.x + NODE_TEXT_INSET:.1f}" y="{box.y + 18:.1f}" font-weight="bold" font-size="12" '
            f"{_pinned(title, TITLE_CHAR_WIDTH)}>{esc(title)}</text>"
            f'<text x="{box.x + NODE_TEXT_INSET:.1f}" y="{box.y + 35:.1f}" fill="#555" {_pinned(matches, CHAR_WIDTH)}>{esc(matches)}</text>'
            f"<title>{esc(node['id'])}</title></g>"
        )
    for placed in layout.edges:
        edge = graph["edges"][placed.index]
        colour = "#c62828" if edge["action"] == "deny" else "#2e7d32"
        box = placed.label
        texts = []
        for number, line in enumerate(placed.lines):
            # textLength pins the drawn width to the width the layout reserved, whatever the font.
            texts.append(
                f'<text x="{box.x + LABEL_PADDING:.1f}" y="{box.y + LINE_HEIGHT * (number + 1) - 2:.1f}" '
                f"{_pinned(line, CHAR_WIDTH)} "
                f'fill="{colour if number == 0 else "#6a1b9a"}">{esc(line)}</text>'
            )
        out.append(
            f'<g class="edge-label"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" '
            f'rx="3" fill="#fff" fill-opacity="0.92" stroke="{colour}" stroke-width="0.6"/>{"".join(texts)}'
            f"<title>{esc(edge['label'])}</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _clip(text: Any, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _graph_section(report: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{esc(edge['policy'])}</td><td>{esc(edge['consumer'])}</td><td>{esc(edge['provider'])}</td><td>{esc(edge['action'])}</td>"
        f"<td>{esc(', '.join(edge['ports']))}</td><td>{esc('; '.join(edge['nodeports']))}</td></tr>"
        for edge in report["graph"]["edges"]
    )
    return (
        '<section id="graph"><h2>Policy graph</h2>'
        + render_graph_svg(report["graph"])
        + f'<p class="muted">Everything not drawn falls to the catch-all: <b>{esc(report["catch_all"])}</b>.</p>'
        + f"<table>{_header('policy', 'consumer', 'provider', 'action', 'ports', 'NodePorts')}{rows}</table></section>"
    )


def _filters_section(report: Mapping[str, Any]) -> str:
    rows = []
    for item in report["filters"]:
        matches = "<br>".join(
            f'{esc(match["label"])} <span class="muted">{esc(", ".join(match["addresses"]))}</span>' for match in item["matches"]
        )
        if item["networks"]:
            matches += ("<br>" if matches else "") + "networks: " + esc(", ".join(item["networks"]))
        if item["empty"]:
            matches = '<span class="empty">matches nothing: check the query for a typo</span>'
        rows.append(
            f'<tr id="filter-{esc(item["name"])}"><td><b>{esc(item["name"])}</b></td><td><code>{esc(item["query"])}</code></td>'
            f"<td>{matches}</td><td>{esc(', '.join(item['used_by']))}</td></tr>"
        )
    header = _header("filter", "query", "matches", "used by")
    return f'<section id="filters"><h2>Filter preview</h2><table>{header}{"".join(rows)}</table></section>'


# -- the truth table --------------------------------------------------------------------------------


def _cell_class(cell: Mapping[str, Any]) -> tuple[str, str]:
    measured, expected = cell["measured"], cell["expected"]
    if measured == "?":
        pale = {".": ("c-pallow", "\u00b7"), "X": ("c-pdeny", "x"), "~": ("c-ppartial", "~")}
        return pale.get(expected, ("c-none", "?"))
    if cell["agree"] is False:
        return "c-diff", "!"
    return {".": ("c-allow", "."), "~": ("c-partial", "~")}.get(measured, ("c-deny", "X"))


def _matrix_section(report: Mapping[str, Any]) -> str:
    table = report["conformance"]
    cells = {(cell["source"], cell["target"]): cell for cell in table["cells"]}
    columns: Sequence[str] = table["columns"]
    header = "".join(f'<th title="{esc(column)}">{index + 1}</th>' for index, column in enumerate(columns))
    rows = []
    for source in table["rows"]:
        tds = []
        for column in columns:
            cell = cells.get((source, column))
            if cell is None:
                tds.append('<td class="c-none">-</td>')
                continue
            css, mark = _cell_class(cell)
            decided = ", ".join(cell["decided_by"]) or "-"
            tip = f"{source} -> {column}: measured {cell['measured']}, policy {cell['expected']}; {cell['reason']}; decided by {decided}"
            tds.append(f'<td class="{css}" title="{esc(tip)}">{mark}</td>')
        rows.append(f"<tr><th>{esc(source)}</th>{''.join(tds)}</tr>")
    legend = "".join(f"<li>{esc(column)}</li>" for column in columns)
    differences = [cell for cell in table["cells"] if cell["agree"] is False]
    diff_rows = "".join(
        f"<tr><td>{esc(cell['source'])}</td><td>{esc(cell['target'])}</td><td>{esc(cell['measured'])}</td><td>{esc(cell['expected'])}</td>"
        f"<td>{esc(', '.join(cell['decided_by']) or '-')}</td><td>{esc(cell['reason'])}</td></tr>"
        for cell in differences
    )
    diff_table = (
        f"<h3>Differences ({len(differences)})</h3>"
        f"<table>{_header('source', 'target', 'measured', 'policy', 'decided by', 'why')}{diff_rows}</table>"
        if differences
        else ('<p class="ok">Every measured cell agrees with the policy.</p>' if table["measured"] else "")
    )
    truncated = '<p class="muted">Truncated: set audit_matrix_limit to see more.</p>' if table.get("truncated") else ""
    return (
        f'<section id="matrix"><h2>Truth table ({esc(table["source"])})</h2>'
        '<p class="muted">green: connected and allowed; grey: blocked and denied; amber "~": partly connected, a service '
        'some of whose endpoints refuse; red "!": measured differs from the policy; '
        "pale: not measured, the policy's answer.</p>"
        f'<table class="matrix"><tr><th>source \\ target</th>{header}</tr>{"".join(rows)}</table>{truncated}'
        f'<ol class="muted">{legend}</ol>{diff_table}</section>'
    )


# -- hosts, flows, warnings -------------------------------------------------------------------------------


def _hosts_section(report: Mapping[str, Any]) -> str:
    if not report["hosts"]:
        return (
            '<section id="hosts"><h2>Effective rules</h2>'
            '<p class="muted">No rules were read (audit_rules is off or no host answered).</p></section>'
        )
    parts = [
        '<section id="hosts"><h2>Effective rules and drift</h2>'
        '<p class="muted">One block per host and per pod namespace; those with drift or errors are open.</p>'
    ]
    first = True
    for host in report["hosts"]:
        parts.append(f'<h3 id="host-{esc(host["host"])}">{esc(host["host"])}</h3>')
        for section in host["sections"]:
            parts.append(_section_table(section, first or bool(section["drift"] or section["reported_drift"] or section["error"])))
            first = False
    parts.append("</section>")
    return "".join(parts)


def _section_table(section: Mapping[str, Any], expanded: bool) -> str:
    title = f"{esc(section['kind'])} {esc(section['name'])}: {len(section['rules'])} rules"
    if section["drift"] or section["reported_drift"]:
        title += f' <span class="badge" style="background:#ef6c00">drift {len(section["drift"]) or len(section["reported_drift"])}</span>'
    opening = f'<details class="host-section" id="section-{esc(section["name"])}"{" open" if expanded else ""}><summary>{title}</summary>'
    if section["error"]:
        return f'{opening}<p class="empty">{esc(section["error"])}</p></details>'
    drift_rows = "".join(
        f'<tr class="drift"><td>{esc(item["kind"])}</td><td>{esc(item["chain"])}</td>'
        f"<td>{esc(item['policy'])}</td><td>{esc(item['origin'])}</td>"
        f"<td><code>{esc(item['detail'] or item['rule'])}</code></td></tr>"
        for item in section["drift"]
    )
    reported = "".join(f"<li>{esc(line)}</li>" for line in section["reported_drift"])
    drift = (
        f'<table class="drift-table"><tr><th>drift</th><th>chain</th><th>policy</th><th>origin</th><th>rule</th></tr>{drift_rows}</table>'
        if drift_rows
        else ""
    ) + (f'<ul class="drift">{reported}</ul>' if reported else "")
    if not section["enforced"]:
        drift = f'<p class="muted">Not enforced here yet: none of our rules are live ({section["intended_rules"]} intended).</p>'
    elif not drift:
        drift = '<p class="ok">No drift: the live rules are the intended ones.</p>' if section["intended_rules"] is not None else ""
    rows = "".join(
        f"<tr><td>{index + 1}</td><td>{esc(rule['chain'])}</td><td>{esc(rule['policy'])}</td><td>{esc(rule['origin'])}</td></tr>"
        for index, rule in enumerate(section["rules"])
    )
    return f'{opening}{drift}<table class="rules"><tr><th>#</th><th>chain</th><th>policy</th><th>origin</th></tr>{rows}</table></details>'


def _flows_section(report: Mapping[str, Any]) -> str:
    flows = report["flows"]
    rows = []
    for flow in flows["items"]:
        colour = CLASS_COLOURS[flow["class"]]
        implicit = ' <span class="muted">(implicit)</span>' if flow["implicit"] else ""
        via = "" if flow["via"] == "direct" else f" via {flow['via']}"
        rows.append(
            f'<tr class="flow flow-{flow["class"]}">'
            f'<td><span class="badge" style="background:{colour}">{flow["class"]}</span>{implicit}</td>'
            f"<td>{esc(flow['source'])}</td>"
            f'<td>{esc(flow["destination"])}{esc(via)} <span class="muted">{esc(", ".join(flow["destination_addresses"]))}</span></td>'
            f"<td>{esc(flow['protocol'])}/{int(flow['port'])}</td>"
            f"<td>{int(flow['connections'])} / {int(flow['answered'])}</td><td>{esc(', '.join(flow['decided_by']) or '-')}</td>"
            f'<td>{esc(flow["reason"])}</td><td class="muted">{esc(", ".join(flow["seen_at"]))}</td></tr>'
        )
    places = ", ".join(f"{place['name']} ({place['records']})" for place in flows["namespaces"])
    return (
        '<section id="flows"><h2>Flow analysis</h2>'
        '<p class="muted">permitted: carried and allowed; escaped: carried, the policy would drop it; rejected: dropped by the policy; '
        "unanswered: allowed but no reply; partial: the service's path is open but some endpoints refuse the consumer "
        "(that share of connections fails); unclassified: destination outside the inventory. "
        "One line per source, destination, protocol and port.</p>"
        f'<p class="muted">Read in: {esc(places) or "nowhere"}</p>'
        f"<table>{_header('class', 'source', 'destination', 'port', 'connections / answered', 'decided by', 'why', 'seen at')}"
        f"{''.join(rows)}</table></section>"
    )


def _warnings_section(report: Mapping[str, Any]) -> str:
    if not report["warnings"]:
        return ""
    items = "".join(f"<li>{esc(warning)}</li>" for warning in report["warnings"])
    return f'<section id="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'

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

CLASS_COLOURS = {
    "permitted": "#2e7d32",
    "escaped": "#ef6c00",
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

NODE_WIDTH = 190
NODE_HEIGHT = 46
COLUMN_GAP = 170
ROW_GAP = 34


def graph_layout(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Deterministic positions: consumers-only left, both roles in the middle, providers-only right."""
    consumers = {edge["consumer"] for edge in graph["edges"]}
    providers = {edge["provider"] for edge in graph["edges"]}
    columns: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for node in graph["nodes"]:
        name = node["id"]
        if name in consumers and name not in providers:
            columns[0].append(name)
        elif name in providers and name not in consumers:
            columns[2].append(name)
        else:
            columns[1].append(name)
    positions = {}
    for column, names in columns.items():
        for row, name in enumerate(names):
            positions[name] = (20.0 + column * (NODE_WIDTH + COLUMN_GAP), 30.0 + row * (NODE_HEIGHT + ROW_GAP))
    return positions


def render_graph_svg(graph: Mapping[str, Any]) -> str:
    """The policy as an SVG picture: filters are boxes, policies arrows labelled with ports."""
    positions = graph_layout(graph)
    if not positions:
        return '<p class="muted">The policy has no filters.</p>'
    width = int(max(position[0] for position in positions.values()) + NODE_WIDTH + 40)
    height = int(max(position[1] for position in positions.values()) + NODE_HEIGHT + 60)
    out = [
        f'<svg id="policy-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="11">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for index, edge in enumerate(graph["edges"]):
        out.append(_edge_svg(edge, index, positions))
    for node in graph["nodes"]:
        x, y = positions[node["id"]]
        stroke = "#c62828" if node["empty"] else "#1565c0"
        dash = ' stroke-dasharray="5,3"' if node["empty"] else ""
        kinds = ", ".join(node["kinds"]) or "no match"
        out.append(
            f'<g class="filter-node"><rect x="{x:.0f}" y="{y:.0f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" '
            f'fill="#e3f2fd" stroke="{stroke}"{dash}/>'
            f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" font-weight="bold" font-size="12">{esc(_clip(node["id"], 26))}</text>'
            f'<text x="{x + 8:.0f}" y="{y + 35:.0f}" fill="#555">{node["matches"]} match{"es" if node["matches"] != 1 else ""}: '
            f"{esc(_clip(kinds, 22))}</text>"
            f"<title>{esc(node['id'])}</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _edge_svg(edge: Mapping[str, Any], index: int, positions: Mapping[str, tuple[float, float]]) -> str:
    colour = "#c62828" if edge["action"] == "deny" else "#2e7d32"
    cx, cy = positions[edge["consumer"]]
    px, py = positions[edge["provider"]]
    label = esc(_clip(edge["label"], 40))
    if edge["consumer"] == edge["provider"]:
        x1, y1 = cx + NODE_WIDTH, cy + 14
        path = f"M{x1:.0f},{y1:.0f} C{x1 + 70:.0f},{y1 - 40:.0f} {x1 + 70:.0f},{y1 + 50:.0f} {x1:.0f},{y1 + 20:.0f}"
        lx, ly = x1 + 60, y1 - 16
    else:
        forward = px >= cx
        x1 = cx + NODE_WIDTH if forward else cx
        x2 = px if forward else px + NODE_WIDTH
        y1, y2 = cy + NODE_HEIGHT / 2, py + NODE_HEIGHT / 2
        bend = (index % 3 - 1) * 18.0
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 + bend
        path = f"M{x1:.0f},{y1:.0f} Q{mx:.0f},{my:.0f} {x2:.0f},{y2:.0f}"
        lx, ly = mx - 60, my - 6
    notes = "".join(f'<tspan x="{lx:.0f}" dy="13" fill="#6a1b9a">{esc(_clip(note, 44))}</tspan>' for note in edge["nodeports"])
    text = f'<text x="{lx:.0f}" y="{ly:.0f}" fill="{colour}">{label}{notes}</text>'
    return (
        f'<g class="policy-edge"><path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6" marker-end="url(#arrow)"/>'
        f"{text}<title>{esc(edge['label'])}</title></g>"
    )


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
        return ("c-pallow", "\u00b7") if expected == "." else ("c-pdeny", "x") if expected == "X" else ("c-none", "?")
    if cell["agree"] is False:
        return "c-diff", "!"
    return ("c-allow", ".") if measured == "." else ("c-deny", "X")


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
        '<p class="muted">green: connected and allowed; grey: blocked and denied; red "!": measured differs from the policy; '
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
            f'<td>{esc(flow["destination"])}{esc(via)} <span class="muted">{esc(flow["destination_address"])}</span></td>'
            f"<td>{esc(flow['protocol'])}/{int(flow['port'])}</td>"
            f"<td>{int(flow['connections'])} / {int(flow['answered'])}</td><td>{esc(', '.join(flow['decided_by']) or '-')}</td>"
            f'<td>{esc(flow["reason"])}</td><td class="muted">{esc(", ".join(flow["seen_at"]))}</td></tr>'
        )
    places = ", ".join(f"{place['name']} ({place['records']})" for place in flows["namespaces"])
    return (
        '<section id="flows"><h2>Flow analysis</h2>'
        '<p class="muted">permitted: carried and allowed; escaped: carried, the policy would drop it; rejected: dropped by the policy; '
        "unanswered: allowed but no reply; unclassified: destination outside the inventory.</p>"
        f'<p class="muted">Read in: {esc(places) or "nowhere"}</p>'
        f"<table>{_header('class', 'source', 'destination', 'port', 'connections / answered', 'decided by', 'why', 'seen at')}"
        f"{''.join(rows)}</table></section>"
    )


def _warnings_section(report: Mapping[str, Any]) -> str:
    if not report["warnings"]:
        return ""
    items = "".join(f"<li>{esc(warning)}</li>" for warning in report["warnings"])
    return f'<section id="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'

# SPDX-License-Identifier: GPL-3.0-or-later
"""The policy graph's layout: no label over another or over a box, no arrow through a box or a foreign label."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import edge_label_lines, render_graph_svg
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.layout import (
    NODE_WIDTH,
    Box,
    EdgeLayout,
    Layout,
    label_size,
    layout_graph,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report
from audit_seed import seed_hostvars
from geometry import segment_crosses
from partial_seed import thirteen_filter_policy


def _graph(names: str, edges: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "nodes": [{"id": name} for name in names.split()],
        "edges": [
            {"consumer": tail, "provider": head, "label": f"default[{index}] {tail}->{head} tcp/{80 + index}", "nodeports": []}
            for index, (tail, head) in enumerate(edges)
        ],
    }


def _lay(graph: dict[str, Any]) -> Layout:
    return layout_graph(graph, [edge_label_lines(edge) for edge in graph["edges"]])


def crosses(start: tuple[float, float], end: tuple[float, float], box: Box, inset: float = 1.0) -> bool:
    """Does the segment enter the box's interior (shrunk by ``inset``)?"""
    return segment_crosses(start, end, (box.x, box.y, box.width, box.height), inset)


def geometry_problems(graph: dict[str, Any], layout: Layout) -> list[str]:
    """Every overlap of two boxes or labels, every segment through a box or another edge's label, anything off the canvas."""
    problems = []
    rectangles = [(f"box {name}", box) for name, box in layout.boxes.items()]
    rectangles += [(f"label {edge.index}", edge.label) for edge in layout.edges]
    for (first, one), (second, other) in itertools.combinations(rectangles, 2):
        if one.overlaps(other):
            problems.append(f"{first} overlaps {second}")
    for name, box in rectangles:
        if box.x < 0 or box.y < 0 or box.right > layout.width or box.bottom > layout.height:
            problems.append(f"{name} is off the canvas")
    for edge in layout.edges:
        for start, end in itertools.pairwise(edge.points):
            for name, box in rectangles:
                if name == f"label {edge.index}":
                    continue  # an edge runs behind its own label
                if crosses(start, end, box):
                    problems.append(f"edge {edge.index} {start}->{end} crosses {name}")
    return problems


def _random_graph(seed: int) -> dict[str, Any]:
    chooser = random.Random(seed)  # noqa: S311 - reproducible test graphs, not secrets
    names = [f"filter-{number}" for number in range(chooser.randint(2, 14))]
    edges = [(chooser.choice(names), chooser.choice(names)) for _ in range(chooser.randint(1, 22))]
    return _graph(" ".join(names), edges)


GRAPHS = {
    "chain": _graph("a b c d", [("a", "b"), ("b", "c"), ("c", "d")]),
    "skip a column": _graph("a b c", [("a", "b"), ("b", "c"), ("a", "c"), ("a", "c")]),
    "cycle": _graph("a b c", [("a", "b"), ("b", "c"), ("c", "a")]),
    "loop": _graph("a b", [("a", "a"), ("a", "b"), ("b", "b")]),
    "fan": _graph("hub a b c d e f", [("hub", name) for name in "abcdef"] + [(name, "hub") for name in "ace"]),
    "isolated": _graph("a b lonely", [("a", "b")]),
    "no edges": _graph("a b", []),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_layout_has_no_overlaps(name: str) -> None:
    graph = GRAPHS[name]
    assert geometry_problems(graph, _lay(graph)) == []


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_have_no_overlaps(seed: int) -> None:
    graph = _random_graph(seed)
    assert geometry_problems(graph, _lay(graph)) == []


def test_thirteen_filter_policy_graph() -> None:
    """The graph of issue 13's kind: 13 filters, 17 policies, parallel edges, a cycle, a loop, NodePort notes."""
    graph = build_report(thirteen_filter_policy(), seed_hostvars())["graph"]
    assert (len(graph["nodes"]), len(graph["edges"])) == (13, 17)
    layout = _lay(graph)
    assert geometry_problems(graph, layout) == []
    assert [edge.lines[1:] for edge in layout.edges if len(edge.lines) > 1] == [("wordpress/wordpress tcp/80 -> NodePort 30358",)] * 2


def test_the_checker_finds_what_the_old_layout_did() -> None:
    """The old fixed three-column layout stacked labels of parallel edges and ran arrows through the middle column."""
    graph = _graph("a b c", [("a", "b"), ("a", "b"), ("a", "c")])
    boxes = {"a": Box(20, 30, 190, 46), "b": Box(380, 30, 190, 46), "c": Box(740, 30, 190, 46)}
    label = Box(240, 40, 120, 18)
    edges = (
        EdgeLayout(0, ((210, 53), (380, 53)), label, ("x",), False, False),
        EdgeLayout(1, ((210, 53), (380, 53)), label, ("y",), False, False),
        EdgeLayout(2, ((210, 53), (740, 53)), Box(500, 40, 120, 18), ("z",), False, False),
    )
    problems = geometry_problems(graph, Layout(960, 120, boxes, edges))
    assert "label 0 overlaps label 1" in problems
    assert "box b overlaps label 2" in problems
    assert "edge 0 (210, 53)->(380, 53) crosses label 1" in problems
    assert "edge 2 (210, 53)->(740, 53) crosses box b" in problems


# name, edges -> the column (0, 1, 2...) of each filter
COLUMNS = [
    ("a b c", [("a", "b"), ("b", "c")], {"a": 0, "b": 1, "c": 2}),
    ("a b c", [("a", "c"), ("b", "c"), ("a", "b")], {"a": 0, "b": 1, "c": 2}),
    ("a b", [("a", "b"), ("b", "a")], {"a": 0, "b": 1}),
    ("a b c", [("c", "b"), ("b", "a")], {"c": 0, "b": 1, "a": 2}),
    ("a b", [("a", "a")], {"a": 0, "b": 0}),
]


@pytest.mark.parametrize(("names", "edges", "columns"), COLUMNS)
def test_layers(names: str, edges: list[tuple[str, str]], columns: dict[str, int]) -> None:
    layout = _lay(_graph(names, edges))
    xs = sorted({box.x for box in layout.boxes.values()})
    assert {name: xs.index(box.x) for name, box in layout.boxes.items()} == columns


def test_arrows_point_at_the_provider() -> None:
    """An edge turned round to break a cycle carries its arrow at its start, which is then on the provider's box."""
    layout = _lay(_graph("a b", [("a", "b"), ("b", "a"), ("a", "a")]))
    forward, backward, loop = layout.edges
    a, b = layout.boxes["a"], layout.boxes["b"]
    assert (forward.arrow_at_start, backward.arrow_at_start, loop.loop) == (False, True, True)
    assert forward.points[0][0] == a.right and forward.points[-1][0] == b.x  # a -> b, arrow at the end, on b
    assert backward.points[0][0] == a.right and backward.points[-1][0] == b.x  # drawn a..b, arrow at the start, on a
    assert loop.points[0][0] == loop.points[-1][0] == a.right


def test_labels_get_the_width_of_their_longest_line() -> None:
    graph = _graph("a b", [("a", "b")])
    graph["edges"][0]["nodeports"] = ["wordpress/wordpress tcp/80 -> NodePort 30358"]
    [edge] = _lay(graph).edges
    assert (edge.label.width, edge.label.height) == label_size(edge.lines)
    assert edge.label.width == label_size(["wordpress/wordpress tcp/80 -> NodePort 30358"])[0]
    assert edge.label.x > NODE_WIDTH  # in the gap right of the consumer's column


def test_layout_is_deterministic_and_rendered_with_pinned_text_widths() -> None:
    graph = build_report(thirteen_filter_policy(), seed_hostvars())["graph"]
    assert _lay(graph) == _lay(graph)
    svg = render_graph_svg(graph)
    assert svg == render_graph_svg(graph)
    assert svg.count('class="filter-node"') == 13 and svg.count('class="edge-label"') == 17 and svg.count('class="policy-edge"') == 17
    # One text per label line (17 labels, two NodePort notes) and both lines of every filter box.
    assert svg.count('lengthAdjust="spacingAndGlyphs"') == 17 + 2 + 2 * 13
    assert svg.count('marker-start="url(#arrow)"') == sum(1 for edge in _lay(graph).edges if edge.arrow_at_start) > 0

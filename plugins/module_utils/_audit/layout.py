# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Lay out the policy graph so that no label overlaps another and no arrow crosses a box.

A layered layout in the manner of Graphviz's ``dot`` (Sugiyama), reduced to what the
policy graph needs and built so that the guarantees hold by construction, not by luck:

1. cycles are broken by turning round the edges that close one (drawn with the arrow at
   their start), so every edge goes from a lower layer to a higher one; a filter that is
   its own provider gets a loop;
2. layers by longest path; an edge spanning several layers gets a *pass* slot in each
   column it crosses, so it runs through a reserved gap in that column, never a box;
3. the order within a column follows the barycentre of the neighbours (a few sweeps each
   way), which keeps crossings low and is deterministic;
4. between two columns lies a *gap*: an entry corridor, a lane of rows, an exit corridor.
   Every edge crossing a gap owns one row of the lane: its label (in the gap after its
   lower end) or a thin pass row. Rows are packed top to bottom without overlap, so labels
   never touch, and an edge runs horizontally along its own row, diagonally only inside
   the corridors, where nothing is drawn.

Label widths are estimated from the character count; the renderer pins each line's width
with SVG ``textLength`` so the browser draws exactly the estimated width, whatever font
it picks. Pure: no I/O; :func:`layout_graph` returns plain rectangles and polylines that
the tests check for overlaps and the HTML renderer draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

NODE_WIDTH = 190.0
NODE_HEIGHT = 46.0
NODE_GAP = 26.0  # between two slots of a column
PASS_HEIGHT = 10.0  # a column slot or lane row an edge passes through
CORRIDOR = 34.0  # each side of a gap's lane
ROW_GAP = 6.0  # between two rows of a lane
CHAR_WIDTH = 6.4  # per character at font-size 11 (the renderer pins it with textLength)
LINE_HEIGHT = 14.0
LABEL_PADDING = 4.0
MARGIN = 20.0
SWEEPS = 4


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: a filter's box or an edge label's background."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        """x + width."""
        return self.x + self.width

    @property
    def bottom(self) -> float:
        """y + height."""
        return self.y + self.height

    def overlaps(self, other: Box, tolerance: float = 0.0) -> bool:
        """Do the two rectangles share more than a border (``tolerance`` shrinks both)?"""
        return (
            self.x + tolerance < other.right - tolerance
            and other.x + tolerance < self.right - tolerance
            and self.y + tolerance < other.bottom - tolerance
            and other.y + tolerance < self.bottom - tolerance
        )


@dataclasses.dataclass(frozen=True)
class EdgeLayout:
    """One edge: its polyline (from the lower layer to the higher), its label and where the arrow goes."""

    index: int
    points: tuple[tuple[float, float], ...]
    label: Box
    lines: tuple[str, ...]
    arrow_at_start: bool
    loop: bool


@dataclasses.dataclass(frozen=True)
class Layout:
    """The whole picture: boxes by filter name, edges in the graph's order, the canvas size."""

    width: float
    height: float
    boxes: dict[str, Box]
    edges: tuple[EdgeLayout, ...]


def label_size(lines: Sequence[str]) -> tuple[float, float]:
    """Width and height of a label of these lines."""
    longest = max((len(line) for line in lines), default=0)
    return longest * CHAR_WIDTH + 2 * LABEL_PADDING, len(lines) * LINE_HEIGHT + LABEL_PADDING


@dataclasses.dataclass
class _Slot:
    """A column slot (a filter's box or an edge passing through) or a lane row (a label or a pass)."""

    key: tuple[str, int, int]  # ("node", node index, 0) | ("pass", edge, layer) | ("label", edge, 0) | ("row", edge, gap)
    height: float
    width: float = 0.0
    y: float = 0.0
    want: float = 0.0


def _break_cycles(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[bool]:
    """For each edge, whether it is turned round (it closes a cycle in a depth-first walk)."""
    out: dict[str, list[int]] = {name: [] for name in names}
    for index, (tail, head) in enumerate(edges):
        if tail != head:
            out[tail].append(index)
    reversed_ = [False] * len(edges)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in names:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, position = stack[-1]
            if position < len(out[node]):
                stack[-1] = (node, position + 1)
                index = out[node][position]
                head = edges[index][1]
                if state.get(head) == 1:
                    reversed_[index] = True
                elif head not in state:
                    state[head] = 1
                    stack.append((head, 0))
            else:
                state[node] = 2
                stack.pop()
    return reversed_


def _layers(names: Sequence[str], spans: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layers of an acyclic graph (``spans`` go from lower to higher)."""
    incoming: dict[str, list[str]] = {name: [] for name in names}
    for low, high in spans:
        if low != high:
            incoming[high].append(low)
    layer: dict[str, int] = {}

    def depth(name: str) -> int:
        pending = [name]
        while pending:
            current = pending[-1]
            if current in layer:
                pending.pop()
                continue
            missing = [item for item in incoming[current] if item not in layer]
            if missing:
                pending.extend(missing)
                continue
            layer[current] = 1 + max((layer[item] for item in incoming[current]), default=-1)
            pending.pop()
        return layer[name]

    for name in names:
        depth(name)
    return layer


def layout_graph(graph: Mapping[str, Any], labels: Sequence[Sequence[str]]) -> Layout:  # noqa: PLR0912, PLR0915 - one algorithm, in order
    """Positions for ``graph`` (``nodes`` with ``id``; ``edges`` with ``consumer`` and
    ``provider``), ``labels[i]`` being the lines of edge ``i``'s label."""
    names = [str(node["id"]) for node in graph["nodes"]]
    index_of = {name: position for position, name in enumerate(names)}
    edges = [(str(edge["consumer"]), str(edge["provider"])) for edge in graph["edges"]]
    turned = _break_cycles(names, edges)
    spans = [(head, tail) if turned[index] else (tail, head) for index, (tail, head) in enumerate(edges)]
    layer = _layers(names, spans)
    count = 1 + max(layer.values(), default=0)

    # Column slots: the boxes, then one pass slot per edge per layer it crosses.
    columns: list[list[_Slot]] = [[] for _column in range(count)]
    for name in names:
        columns[layer[name]].append(_Slot(("node", index_of[name], 0), NODE_HEIGHT, NODE_WIDTH))
    for index, (low, high) in enumerate(spans):
        for crossed in range(layer[low] + 1, layer[high]):
            columns[crossed].append(_Slot(("pass", index, crossed), PASS_HEIGHT, NODE_WIDTH))

    def neighbours(slot: _Slot, towards: int) -> list[tuple[str, int, int]]:
        """The slots in the adjacent column (``towards`` -1 or +1) this slot is joined to."""
        kind, number, at = slot.key
        found: list[tuple[str, int, int]] = []
        if kind == "pass":
            low, high = spans[number]
            other = at + towards
            if other == layer[low]:
                found.append(("node", index_of[low], 0))
            elif other == layer[high]:
                found.append(("node", index_of[high], 0))
            else:
                found.append(("pass", number, other))
            return found
        name = names[number]
        for index, (low, high) in enumerate(spans):
            if low == high:
                continue
            if towards < 0 and high == name:
                previous = layer[name] - 1
                found.append(("node", index_of[low], 0) if layer[low] == previous else ("pass", index, previous))
            if towards > 0 and low == name:
                following = layer[name] + 1
                found.append(("node", index_of[high], 0) if layer[high] == following else ("pass", index, following))
        return found

    # Order within columns: barycentre sweeps, down then up.
    for sweep in range(SWEEPS * 2):
        downward = sweep % 2 == 0
        order = range(1, count) if downward else range(count - 2, -1, -1)
        for column in order:
            reference = columns[column - 1] if downward else columns[column + 1]
            rank = {slot.key: position for position, slot in enumerate(reference)}

            def centre(item: tuple[int, _Slot], *, towards: int = -1 if downward else 1, rank: dict[Any, int] = rank) -> tuple[float, int]:
                position, slot = item
                linked = [rank[key] for key in neighbours(slot, towards) if key in rank]
                return (sum(linked) / len(linked) if linked else float(position), position)

            columns[column] = [slot for _position, slot in sorted(enumerate(columns[column]), key=centre)]

    # Lanes: gap g lies right of column g; every edge crossing it owns a row, loops too.
    lanes: list[list[_Slot]] = [[] for _gap in range(count)]
    for index, (low, high) in enumerate(spans):
        width, height = label_size(labels[index])
        if low == high:
            lanes[layer[low]].append(_Slot(("label", index, 0), height, width))
            continue
        lanes[layer[low]].append(_Slot(("label", index, 0), height, width))
        for gap in range(layer[low] + 1, layer[high]):
            lanes[gap].append(_Slot(("row", index, gap), PASS_HEIGHT))
    lane_width = [max((slot.width for slot in lane), default=0.0) for lane in lanes]

    column_x: list[float] = []
    x = MARGIN
    for column in range(count):
        column_x.append(x)
        x += NODE_WIDTH + (2 * CORRIDOR + lane_width[column] if lanes[column] or column < count - 1 else 0.0)
    width = x + MARGIN

    # Heights: columns stacked and centred on the tallest column or lane.
    def stacked(slots: Sequence[_Slot], gap: float) -> float:
        return sum(slot.height for slot in slots) + gap * max(len(slots) - 1, 0)

    tallest = max([stacked(column, NODE_GAP) for column in columns] + [stacked(lane, ROW_GAP) for lane in lanes])
    placed: dict[tuple[str, int, int], _Slot] = {}
    for slots in columns:
        y = MARGIN + (tallest - stacked(slots, NODE_GAP)) / 2
        for slot in slots:
            slot.y = y
            placed[slot.key] = slot
            y += slot.height + NODE_GAP

    def middle(key: tuple[str, int, int]) -> float:
        slot = placed[key]
        return slot.y + slot.height / 2

    def column_key(index: int, column: int) -> tuple[str, int, int]:
        low, high = spans[index]
        if column == layer[low]:
            return ("node", index_of[low], 0)
        if column == layer[high]:
            return ("node", index_of[high], 0)
        return ("pass", index, column)

    # Rows: wanted at the middle of what they join, packed top to bottom in that order.
    for gap, lane in enumerate(lanes):
        for slot in lane:
            number = slot.key[1]
            low, high = spans[number]
            if low == high:
                slot.want = middle(("node", index_of[low], 0))
            else:
                slot.want = (middle(column_key(number, gap)) + middle(column_key(number, gap + 1))) / 2
        lane.sort(key=lambda slot: (slot.want, slot.key))
        floor = MARGIN
        for slot in lane:
            slot.y = max(slot.want - slot.height / 2, floor)
            floor = slot.y + slot.height + ROW_GAP
            placed[slot.key] = slot
    height = max([MARGIN + tallest] + [slot.y + slot.height for lane in lanes for slot in lane]) + MARGIN

    # Anchors: the edges leaving a box's right side (entering its left side) are spread
    # along that side in the order of the rows they run to, so arrowheads do not pile up.
    sides: dict[tuple[int, str], list[tuple[float, int]]] = {}
    for index, (low, high) in enumerate(spans):
        if low == high:
            continue
        first_row = middle(("label", index, 0))
        last_row = first_row if layer[high] - layer[low] == 1 else middle(("row", index, layer[high] - 1))
        sides.setdefault((index_of[low], "right"), []).append((first_row, index))
        sides.setdefault((index_of[high], "left"), []).append((last_row, index))
    anchor: dict[tuple[int, str], float] = {}
    for (number, side), attached in sides.items():
        box_y = placed[("node", number, 0)].y
        attached.sort()
        for position, (_order, index) in enumerate(attached):
            anchor[(index, side)] = box_y + NODE_HEIGHT * (position + 1) / (len(attached) + 1)

    def end_y(index: int, column: int) -> float:
        low, high = spans[index]
        if column == layer[low]:
            return anchor[(index, "right")]
        if column == layer[high]:
            return anchor[(index, "left")]
        return middle(("pass", index, column))

    # Polylines: box side -> corridor -> along its row -> corridor -> next slot, per gap.
    result: list[EdgeLayout] = []
    for index, (low, high) in enumerate(spans):
        label = placed[("label", index, 0)]
        label_box = Box(column_x[layer[low]] + NODE_WIDTH + CORRIDOR, label.y, label.width, label.height)
        row_y = label.y + label.height / 2
        if low == high:
            box = placed[("node", index_of[low], 0)]
            right = column_x[layer[low]] + NODE_WIDTH
            points = ((right, box.y + 12.0), (label_box.x, row_y), (right, box.y + NODE_HEIGHT - 12.0))
            result.append(EdgeLayout(index, points, label_box, tuple(labels[index]), False, True))
            continue
        path: list[tuple[float, float]] = [(column_x[layer[low]] + NODE_WIDTH, end_y(index, layer[low]))]
        for gap in range(layer[low], layer[high]):
            lane_y = row_y if gap == layer[low] else middle(("row", index, gap))
            start = column_x[gap] + NODE_WIDTH + CORRIDOR
            end = start + lane_width[gap]
            next_y = end_y(index, gap + 1)
            next_x = column_x[gap + 1]
            if gap == layer[low]:
                path.extend([(start, lane_y), (label_box.right, lane_y), (end, lane_y)])
            else:
                path.extend([(start, lane_y), (end, lane_y)])
            path.append((next_x, next_y))
            if gap + 1 < layer[high]:
                path.append((next_x + NODE_WIDTH, next_y))
        result.append(EdgeLayout(index, tuple(path), label_box, tuple(labels[index]), turned[index], False))

    boxes = {
        names[slot.key[1]]: Box(column_x[column], slot.y, NODE_WIDTH, NODE_HEIGHT)
        for column, slots in enumerate(columns)
        for slot in slots
        if slot.key[0] == "node"
    }
    return Layout(width, height, boxes, tuple(result))

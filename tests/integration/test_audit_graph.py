# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit page's policy graph in headless Chromium: measured, no label overlaps another or a box.

The report of a 13-filter policy (chains, a cycle, a filter that is its own provider, parallel
policies, NodePort notes), and the report of the lab's partial-services scenario, are each opened
in Chromium with a small script added to a copy of the page (the page itself forbids scripts);
the script reads ``getBoundingClientRect`` of every filter box, every edge label and every line of
text, and every arrow's points, and writes them into the DOM, which ``--dump-dom`` returns. The
assertions are on those coordinates, as the browser laid them out with its own fonts. A screenshot
is taken too, for a reader. No lab and no network needed.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.plugins.module_utils._audit.geometry import segment_crosses

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MEASURE = """
<script>
(() => {
  const svg = document.getElementById('policy-graph');
  const origin = svg.getBoundingClientRect();
  const rect = (element) => { const r = element.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const out = {
    boxes: [...svg.querySelectorAll('g.filter-node')].map((g) => ({
      name: g.querySelector('title').textContent, box: rect(g.querySelector('rect')),
      texts: [...g.querySelectorAll('text')].map(rect)})),
    labels: [...svg.querySelectorAll('g.edge-label')].map((g) => ({
      name: g.querySelector('title').textContent, box: rect(g.querySelector('rect')), whole: rect(g),
      texts: [...g.querySelectorAll('text')].map(rect)})),
    edges: [...svg.querySelectorAll('polyline.policy-edge')].map((line) =>
      [...line.points].map((point) => [origin.left + point.x, origin.top + point.y])),
  };
  const pre = document.createElement('pre');
  pre.id = 'geometry';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return chromium


def _thirteen_filters() -> tuple[dict[str, Any], dict[str, Any]]:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "unit" / "plugins" / "module_utils" / "_audit"))
    from audit_seed import seed_hostvars  # noqa: PLC0415
    from partial_seed import thirteen_filter_policy  # noqa: PLC0415

    return thirteen_filter_policy(), seed_hostvars()


def _partial_scenario() -> tuple[dict[str, Any], dict[str, Any]]:
    """The lab's partial-services scenario: its policy and the records the inventory gives for it."""
    sys.path.insert(0, str(REPO_ROOT))
    from lab.expected import scenario_hostvars  # noqa: PLC0415
    from lab.scenario import load_scenario  # noqa: PLC0415

    scenario = load_scenario(REPO_ROOT / "lab" / "scenarios" / "partial.yml")
    assert scenario.policy is not None
    return dict(scenario.policy), scenario_hostvars(scenario)


def _page(tmp_path: Path, policy: dict[str, Any], hostvars: dict[str, Any], title: str) -> tuple[Path, Path]:
    from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import render_html  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report  # noqa: PLC0415

    page = render_html(build_report(policy, hostvars, title=title))
    report = tmp_path / "audit.html"
    report.write_text(page)
    # The copy that measures: the same page with scripts allowed and the measuring script at the end.
    measured, count = re.subn(r"default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", page)
    assert count == 1
    probe = tmp_path / "measure.html"
    probe.write_text(measured.replace("</body>", MEASURE + "</body>"))
    return report, probe


def _overlap(one: list[float], other: list[float], tolerance: float = 0.5) -> bool:
    (x1, y1, w1, h1), (x2, y2, w2, h2) = one, other
    return x1 + tolerance < x2 + w2 and x2 + tolerance < x1 + w1 and y1 + tolerance < y2 + h2 and y2 + tolerance < y1 + h1


def _inside(inner: list[float], outer: list[float], tolerance: float = 1.0) -> bool:
    (x1, y1, w1, h1), (x2, y2, w2, h2) = inner, outer
    return x1 >= x2 - tolerance and y1 >= y2 - tolerance and x1 + w1 <= x2 + w2 + tolerance and y1 + h1 <= y2 + h2 + tolerance


def geometry_problems(geometry: dict[str, Any]) -> list[str]:
    """Overlapping boxes or labels, text outside its box or label, arrows through boxes or other edges' labels."""
    problems = []
    shapes = [(f"box {item['name']}", item["whole"] if "whole" in item else item["box"]) for item in geometry["boxes"]]
    shapes += [(f"label {index} {item['name']}", item["whole"]) for index, item in enumerate(geometry["labels"])]
    for (first, one), (second, other) in itertools.combinations(shapes, 2):
        if _overlap(one, other):
            problems.append(f"{first} overlaps {second}")
    for kind in ("boxes", "labels"):
        for item in geometry[kind]:
            problems.extend(
                f"a text of {item['name']} sticks out of its {kind[:-1]}" for text in item["texts"] if not _inside(text, item["box"])
            )
    for index, points in enumerate(geometry["edges"]):
        for start, end in itertools.pairwise(points):
            for name, shape in shapes:
                if not name.startswith(f"label {index} ") and segment_crosses(start, end, shape):
                    problems.append(f"edge {index} crosses {name}")
    return problems


def _policy_count(policy: dict[str, Any]) -> int:
    return sum(len(policy["policies"].get(rank) or []) for rank in ("absolute", "default"))


@pytest.mark.parametrize("case", ["thirteen-filters", "partial-scenario"])
def test_policy_graph_has_no_overlaps(tmp_path: Path, case: str) -> None:
    chromium = _chromium()
    policy, hostvars = _thirteen_filters() if case == "thirteen-filters" else _partial_scenario()
    report, probe = _page(tmp_path, policy, hostvars, case)
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1600,1400"]
    dom = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="geometry">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found is not None, "the measuring script did not run: " + dom.stdout[-500:]
    geometry = json.loads(html.unescape(found.group(1)))
    expected = (len(policy["filters"]), _policy_count(policy), _policy_count(policy))
    assert (len(geometry["boxes"]), len(geometry["labels"]), len(geometry["edges"])) == expected
    if case == "thirteen-filters":
        assert expected == (13, 17, 17)
    assert all(item["box"][2] > 100 and item["box"][3] > 30 for item in geometry["boxes"])  # laid out, not collapsed
    assert all(text[2] > 20 for item in geometry["labels"] for text in item["texts"])  # the labels' text was drawn
    assert geometry_problems(geometry) == []
    # The screenshot, for a reader (the report itself, unmodified: no script runs in it).
    shot = tmp_path / "graph.png"
    taken = subprocess.run([*base, f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]


def test_the_measurement_sees_an_overlap(tmp_path: Path) -> None:
    """The same measurement on a page where two labels are moved onto one another and one onto a box: caught."""
    chromium = _chromium()
    _, probe = _page(tmp_path, *_thirteen_filters(), "13 filters")
    text = probe.read_text()
    labels = [match.start() for match in re.finditer(r'<g class="edge-label"><rect x="', text)]
    assert len(labels) == 17
    moved = re.sub(
        r'(<g class="edge-label"><rect x=")([\d.]+)(" y=")([\d.]+)"',
        lambda match: f'{match.group(1)}20{match.group(3)}20"',
        text,
        count=2,
    )
    probe.write_text(moved)
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="geometry">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found is not None
    problems = geometry_problems(json.loads(html.unescape(found.group(1))))
    assert any(problem.startswith("label 0 ") and "overlaps label 1 " in problem for problem in problems), problems
    assert any(problem.startswith("box ") and "overlaps label 0 " in problem for problem in problems), problems

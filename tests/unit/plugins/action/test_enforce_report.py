# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce role's report: per-host status, totals from the module's counts, the change guard."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.action.enforce_report import (
    change_percent,
    host_report,
    render_lines,
    summarise,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Changes, RuleEntry, SetEntry

INGRESS = "IPv4 filter ZT-INGRESS"
IN_PLACE = (RuleEntry("IPv4 filter INPUT", "0" * 16, "jump ingress", 0), RuleEntry(INGRESS, "1" * 16, "implicit:established", 0),
            RuleEntry(INGRESS, "2" * 16, "catch_all", 1))
UNCHANGED = Changes(kept=IN_PLACE, sets=(SetEntry("zt-aaa-4", 0, 0, 1), SetEntry("zt-bbb-6", 0, 0, 0)))
"""Three rules (our jump, two in our chain) and one set member in place."""
POD_MOVED = Changes(added=(RuleEntry(INGRESS, "3" * 16, "default[0]", 1),), kept=IN_PLACE,
                    sets=(SetEntry("zt-aaa-4", 2, 1, 0), SetEntry("zt-bbb-6", 0, 0, 0)))
"""One rule added, the set's member replaced by two others."""


def _entry(target: str, changed: bool, changes: Changes, **extra: Any) -> dict[str, Any]:
    """A namespace's result as the allowlist module returns it: counts derived from its structured plan."""
    return {"target": target, "changed": changed, "rules": 3, "skipped": False, **changes.counts(), **extra}


PREVIEW_NODE = {
    "changed": True,
    "results": [
        _entry("host", False, UNCHANGED),
        _entry("db.wordpress.pod.lab", True, POD_MOVED),
        {"target": "gone.wordpress.pod.lab", "namespace": None, "changed": False, "skipped": True, "reason": "no netns holds 10.244.9.9"},
    ],
}


APPLIED_NODE = {"changed": True, "results": [{"target": "host", "changed": False}, {"target": "db.wordpress.pod.lab", "changed": True}]}
NOOP_PREVIEW = {"changed": False, "results": [_entry("host", False, UNCHANGED)]}


@pytest.mark.parametrize(
    ("preview", "applied", "rollback", "expected"),
    [
        (PREVIEW_NODE, {"skipped": True}, None, ("would change", True)),
        (PREVIEW_NODE, APPLIED_NODE, None, ("changed", True)),
        (PREVIEW_NODE, APPLIED_NODE, {"reason": "no SSH"}, ("rolled back", False)),
        (NOOP_PREVIEW, {"skipped": True}, None, ("unchanged", None)),
        ({"failed": True, "msg": "boom"}, {}, None, ("failed", None)),
        ({}, {}, None, ("not run", None)),
    ],
    ids=["check", "applied", "rolled-back", "noop", "preview-failed", "left-play"],
)
def test_host_report_status(preview: dict[str, Any], applied: dict[str, Any], rollback: Any, expected: tuple[str, Any]) -> None:
    status, db_changed = expected
    check_mode = applied == {"skipped": True} and preview is PREVIEW_NODE
    report = host_report(preview, applied, rollback, check_mode)
    assert report["status"] == status
    if db_changed is not None:
        assert report["pods"]["db.wordpress.pod.lab"]["changed"] is db_changed
        assert report["skipped_pods"] == [{"pod": "gone.wordpress.pod.lab", "reason": "no netns holds 10.244.9.9"}]


def test_summary_totals_and_guard_percentage() -> None:
    summary = summarise(
        ["node1", "vm9"],
        ["node1"],
        previews={"node1": PREVIEW_NODE},
        applied={"node1": {"skipped": True}},
        rollbacks={},
        check_mode=True,
    )
    assert summary["hosts"]["vm9"]["status"] == "not in play"
    totals = summary["totals"]
    assert (totals["rules_added"], totals["rules_removed"], totals["set_members_added"], totals["set_members_removed"]) == (1, 0, 2, 1)
    assert totals["in_place"] == 8
    assert (totals["hosts_changed"], totals["namespaces_changed"], totals["pods_skipped"]) == (1, 1, 1)
    assert change_percent(totals) == 50.0
    lines = render_lines({**summary, "totals": {**totals, "change_percent": 50.0}})
    assert lines[0] == "node1: would change: rules +0 -0, set members +0 -0"
    assert "  pod db.wordpress.pod.lab: changed, rules +1 -0, set members +2 -1" in lines
    assert "  pod gone.wordpress.pod.lab: skipped (no netns holds 10.244.9.9)" in lines


def test_first_run_has_no_percentage() -> None:
    assert change_percent({"in_place": 0, "rules_added": 30}) is None


def test_the_module_counts_are_used_without_diff_texts() -> None:
    """A preview without --diff carries only the module's counts per namespace; the summary adds those up."""
    counted = {"rules_added": 4, "rules_removed": 1, "set_members_added": 7, "set_members_removed": 2, "in_place": 20}
    preview = {
        "changed": True,
        "results": [
            {"target": "host", "changed": False, "rules": 5, "skipped": False, **dict.fromkeys(counted, 0), "in_place": 9},
            {"target": "web.shop.pod.lab", "changed": True, "rules": 6, "skipped": False, **counted},
        ],
    }
    summary = summarise(["node1"], ["node1"], previews={"node1": preview}, applied={"node1": {"skipped": True}}, rollbacks={},
                        check_mode=True)
    pod = summary["hosts"]["node1"]["pods"]["web.shop.pod.lab"]
    assert {key: pod[key] for key in counted} == counted
    totals = summary["totals"]
    assert (totals["rules_added"], totals["rules_removed"], totals["set_members_added"], totals["set_members_removed"]) == (4, 1, 7, 2)
    assert totals["in_place"] == 29
    assert render_lines({**summary, "totals": {**totals, "change_percent": None}})[1] == (
        "  pod web.shop.pod.lab: changed, rules +4 -1, set members +7 -2")

# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce role's report: per-host status, totals from the module's counts, the change guard."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.zerotrust.workloads.plugins.action.enforce_report import (
    ActionModule,
    change_percent,
    host_report,
    hosts_to_write,
    registered_results,
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


class _HostVars(dict[str, Any]):
    """Ansible's hostvars: ``raw_get`` gives a host's variables untemplated (a missing host: not a mapping)."""

    def raw_get(self, host: str) -> Any:
        return self.get(host, object())


def _action(args: dict[str, Any]) -> Any:
    task = MagicMock(args=args, async_val=0, check_mode=False, diff=False)
    return ActionModule(task, MagicMock(), MagicMock(), loader=None, templar=None, shared_loader_obj=None)


HOSTVARS = _HostVars({
    "k8s-node1": {"enforce_preview": PREVIEW_NODE, "enforce_applied": APPLIED_NODE, "other": 1},
    "haproxy": {"enforce_preview": NOOP_PREVIEW, "enforce_applied": {"skipped": True}},
    "vm-left": {"other": 1},
})


def test_registered_results_are_read_from_each_plan_host_in_play() -> None:
    names = {"previews": "enforce_preview", "applied": "enforce_applied", "rollbacks": "enforce_rolled_back"}
    found = registered_results(HOSTVARS, ["haproxy", "k8s-node1", "vm-left", "not-in-inventory"], names)
    assert found == {"previews": {"haproxy": NOOP_PREVIEW, "k8s-node1": PREVIEW_NODE},
                     "applied": {"haproxy": {"skipped": True}, "k8s-node1": APPLIED_NODE}, "rollbacks": {}}
    # The same through the action: the summary equals the one built from results passed directly.
    plan_hosts, play_hosts = ["haproxy", "k8s-node1", "vm-left", "vm-out"], ["haproxy", "k8s-node1", "vm-left"]
    args = {"plan_hosts": plan_hosts, "play_hosts": play_hosts, "registered": names}
    result = _action(args).run(task_vars={"hostvars": HOSTVARS})
    direct = summarise(plan_hosts, play_hosts, previews=found["previews"], applied=found["applied"], rollbacks={}, check_mode=False)
    assert result["summary"] == {**direct, "totals": {**direct["totals"], "change_percent": result["summary"]["totals"]["change_percent"]}}
    assert {host: report["status"] for host, report in result["summary"]["hosts"].items()} == {
        "haproxy": "unchanged", "k8s-node1": "changed", "vm-left": "not run", "vm-out": "not in play"}


NOT_A_MAP = ("enforce_report: registered must map previews, applied or rollbacks to the name of a host variable "
             "(registered: {previews: enforce_preview})")


@pytest.mark.parametrize(("registered", "extra", "message"), [
    ({"preview": "enforce_preview"}, {}, NOT_A_MAP),
    ({"previews": ""}, {}, NOT_A_MAP),
    ("enforce_preview", {}, NOT_A_MAP),
    ({"previews": "enforce_preview"}, {"previews": {"haproxy": NOOP_PREVIEW}},
     "enforce_report: previews given both directly and in registered: give each in one place"),
])
def test_registered_errors(registered: Any, extra: dict[str, Any], message: str) -> None:
    action = _action({"plan_hosts": ["haproxy"], "play_hosts": ["haproxy"], "registered": registered, **extra})
    with pytest.raises(AnsibleActionFail) as raised:
        action.run(task_vars={"hostvars": HOSTVARS})
    assert str(raised.value) == message


def test_pods_left_out_of_the_apply_are_reported_from_the_preview() -> None:
    # The apply skips the pods the preview found unchanged (skip_unchanged_pods): they are absent from its result.
    preview_entries: list[Any] = list(PREVIEW_NODE["results"])  # type: ignore[call-overload]
    applied_entries: list[Any] = list(APPLIED_NODE["results"])  # type: ignore[call-overload]
    preview = {"changed": True, "results": [*preview_entries, _entry("web.wordpress.pod.lab", False, UNCHANGED)]}
    listed = {**APPLIED_NODE, "results": [*applied_entries, {"target": "web.wordpress.pod.lab", "changed": False}]}
    left_out = host_report(preview, APPLIED_NODE, None, check_mode=False)
    assert left_out == host_report(preview, listed, None, check_mode=False)
    assert left_out["status"] == "changed"
    assert left_out["pods"]["web.wordpress.pod.lab"] == {"changed": False, "rules_added": 0, "rules_removed": 0, "set_members_added": 0,
                                                         "set_members_removed": 0, "in_place": 4, "rules": 3}


def test_without_details_the_report_keeps_each_host_status_and_the_totals() -> None:
    names = {"previews": "enforce_preview", "applied": "enforce_applied"}
    args = {"plan_hosts": ["haproxy", "k8s-node1", "vm-out"], "play_hosts": ["haproxy", "k8s-node1"], "registered": names}
    full = _action(args).run(task_vars={"hostvars": HOSTVARS})
    guard = _action({**args, "details": False}).run(task_vars={"hostvars": HOSTVARS})
    assert guard["summary"]["totals"] == full["summary"]["totals"]
    assert guard["summary"]["hosts"] == {
        "haproxy": {"status": "unchanged"},
        "k8s-node1": {"status": "changed"},
        "vm-out": {"status": "not in play", "reason": "the plan names this host but the play does not target it (--limit, hosts:)"},
    }
    assert guard["lines"] == [
        "haproxy: unchanged",
        "k8s-node1: changed",
        "vm-out: not in play (the plan names this host but the play does not target it (--limit, hosts:))",
        full["lines"][-1],
    ]
    assert len(full["lines"]) > len(guard["lines"])


PERSIST_ONLY = {"changed": False, "results": [_entry("host", False, UNCHANGED)], "persist": {"changed": True, "files": ["rules.v4"]}}
FAILED_POD_ONLY = {"changed": False, "results": [_entry("host", False, UNCHANGED), {"target": "x.pod.lab", "failed": True, "msg": "gone"}]}


@pytest.mark.parametrize(("previews", "plan_hosts", "play_hosts", "expected"), [
    # In play order, not the plan's: the role keeps the first host without anything to write for the summary.
    ({"k8s-node1": PREVIEW_NODE, "haproxy": NOOP_PREVIEW, "vm-web2": PERSIST_ONLY},
     ["haproxy", "k8s-node1", "vm-web2"], ["vm-web2", "haproxy", "k8s-node1"], ["vm-web2", "k8s-node1"]),
    # Nothing to write anywhere: a no-op run.
    ({"haproxy": NOOP_PREVIEW, "k8s-node1": NOOP_PREVIEW}, ["haproxy", "k8s-node1"], ["haproxy", "k8s-node1"], []),
    # A namespace that failed in the preview has nothing to write by itself.
    ({"haproxy": FAILED_POD_ONLY}, ["haproxy"], ["haproxy"], []),
    # A play host outside the plan, a plan host outside the play, a host whose preview registered nothing or was skipped.
    ({"k8s-node1": PREVIEW_NODE, "vm-out": PREVIEW_NODE, "haproxy": {"skipped": True, "changed": False}},
     ["k8s-node1", "vm-out", "haproxy", "vm-left"], ["outsider", "haproxy", "vm-left", "k8s-node1"], ["k8s-node1"]),
])
def test_hosts_to_write(previews: dict[str, Any], plan_hosts: list[str], play_hosts: list[str], expected: list[str]) -> None:
    assert hosts_to_write(previews, plan_hosts, play_hosts) == expected


def test_the_guard_names_the_hosts_to_write_also_when_previewing() -> None:
    # The guard counts as a preview (check_mode: true) and still names the hosts; the role writes nothing in --check.
    names = {"previews": "enforce_preview"}
    args = {"plan_hosts": ["haproxy", "k8s-node1"], "play_hosts": ["haproxy", "k8s-node1", "vm-left"], "registered": names}
    for check_mode in (True, False):
        result = _action({**args, "check_mode": check_mode, "details": False}).run(task_vars={"hostvars": HOSTVARS})
        assert result["writers"] == ["k8s-node1"]

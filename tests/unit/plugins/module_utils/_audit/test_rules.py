# SPDX-License-Identifier: GPL-3.0-or-later
"""Live rules mapped to policies, and drift, from real allowlist check-mode results.

fixtures/allowlist_results.json holds what the allowlist module returned in check mode for
the seed's WordPress pod ruleset in a throwaway namespace, per backend: once clean, once
after the ``default[0]`` ingress rule was deleted by hand (fixtures/make_allowlist_results.py
writes it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.rules import (
    drift_items,
    planned_rules,
    policy_of,
    sections_from_result,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import RuleEntry
from audit_seed import FIXTURES

RESULTS: dict[str, Any] = json.loads((FIXTURES / "allowlist_results.json").read_text())
ORIGIN = "default[0] haproxy->wordpress tcp/80 via nodeport"
NOTHING: dict[str, Any] = {"rules": {"added": [], "removed": [], "kept": []}, "sets": []}


@pytest.mark.parametrize(
    ("origin", "policy"),
    [
        ("default[0] haproxy->wordpress tcp/80", "default[0]"),
        ("absolute[12] deny a->b any", "absolute[12]"),
        ("implicit:node_to_pods", "implicit:node_to_pods"),
        ("catch_all nodeport wordpress/wordpress tcp/80", "catch_all"),
        ("", "?"),
    ],
)
def test_policy_of(origin: str, policy: str) -> None:
    assert policy_of(origin) == policy


@pytest.mark.parametrize(("backend", "chain"), [("iptables", "IPv4 filter ZT-INGRESS"), ("nftables", "ingress")])
def test_planned_rules_read_chain_and_origin(backend: str, chain: str) -> None:
    rules = planned_rules(RESULTS[backend]["clean"]["results"][0]["changes"], "kept")
    ingress = [rule.origin for rule in sorted(rules, key=lambda rule: rule.position) if rule.chain == chain]
    assert ingress[-1] == "catch_all"  # fingerprints (fp=..., ~...) are not part of the origin
    assert ORIGIN in ingress
    assert all(len(rule.hash) == 16 for rule in rules)


@pytest.mark.parametrize(("backend", "chain"), [("iptables", "IPv4 filter ZT-INGRESS"), ("nftables", "ingress")])
def test_rule_deleted_by_hand_is_drift_naming_its_policy(backend: str, chain: str) -> None:
    [section] = sections_from_result("wordpress-pod", RESULTS[backend]["drifted"])
    assert [(d["kind"], d["chain"], d["policy"], d["origin"]) for d in section["drift"]] == [("missing", chain, "default[0]", ORIGIN)]
    assert section["reported_drift"]  # the module's own words are kept beside
    assert section["name"] == "wordpress-pod" and section["kind"] == "host"


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_clean_namespace_has_no_drift(backend: str) -> None:
    [section] = sections_from_result("k8s-node1", RESULTS[backend]["clean"])
    assert section["drift"] == [] and section["reported_drift"] == []
    assert section["intended_rules"] == len(section["rules"]) > 5


def rule(chain: str, hash_text: str, origin: str, text: str = "") -> RuleEntry:
    return RuleEntry(chain, hash_text, origin, 0, text)


@pytest.mark.parametrize(("missing", "extra", "expected"), [
    ([], [], []),
    ([rule("X", "b" * 16, "default[0] a->b tcp/80")],
     [rule("X", "a" * 16, "default[0] a->b tcp/80"), rule("X", "c" * 16, "implicit:loopback")],
     [("extra", "implicit:loopback", "c" * 16 + " implicit:loopback", ""),
      ("modified", "default[0]", "b" * 16 + " default[0] a->b tcp/80", "live: " + "a" * 16 + " default[0] a->b tcp/80")]),
    ([rule("Y", "b" * 16, "default[0] a->b tcp/80")], [rule("X", "a" * 16, "default[0] a->b tcp/80")],
     [("extra", "default[0]", "a" * 16 + " default[0] a->b tcp/80", ""),
      ("missing", "default[0]", "b" * 16 + " default[0] a->b tcp/80", "")]),
    ([], [rule("ingress", "", "", "handle 7 comment hand")], [("extra", "not ours", "handle 7 comment hand", "")]),
], ids=["nothing", "modified-and-extra", "other-chain-is-not-a-partner", "foreign-rule"])
def test_drift_items(missing: list[RuleEntry], extra: list[RuleEntry], expected: list[tuple[str, str, str, str]]) -> None:
    assert [(d["kind"], d["policy"], d["rule"], d["detail"]) for d in drift_items(missing, extra)] == expected


def test_pod_sections_skips_and_failures() -> None:
    result = {
        "results": [
            {"target": "host", "namespace": "host", "drift": [], "changes": NOTHING},
            {"target": "web.ns.pod.lab", "namespace": None, "skipped": True, "reason": "network namespace not found"},
            {"target": "db.ns.pod.lab", "namespace": "x", "failed": True, "msg": "nft failed"},
        ]
    }
    sections = sections_from_result("k8s-node1", result)
    assert [(s["name"], s["kind"], s["error"]) for s in sections] == [
        ("k8s-node1", "host", ""),
        ("web.ns.pod.lab", "pod", "not read: network namespace not found"),
        ("db.ns.pod.lab", "pod", "nft failed"),
    ]
    assert sections_from_result("vm", {"unreachable": True, "msg": "ssh: no route"})[0]["error"] == "ssh: no route"


def test_nothing_live_is_not_enforced_rather_than_drift() -> None:
    clean = RESULTS["iptables"]["clean"]["results"][0]["changes"]
    intended = {"rules": {"added": clean["rules"]["kept"], "removed": [], "kept": []}, "sets": []}
    [section] = sections_from_result("vm", {"results": [{"target": "host", "drift": [], "changes": intended}]})
    assert (section["enforced"], section["drift"], section["rules"]) == (False, [], [])
    assert section["intended_rules"] > 5

# SPDX-License-Identifier: GPL-3.0-or-later
"""One drift computation: the allowlist module and the audit read the same namespace the same way.

A throwaway namespace gets a ruleset through the module's orchestrator, then an operator edits
our objects by hand (a rule deleted, a foreign rule added to our chain). The module in check
mode (as the audit role runs it) returns its structured plan (``changes``); the audit's report section is built
from that result. Both must name the same rules: the module's ``rules.added`` are the audit's
*missing*, its ``rules.removed`` the audit's *extra*, with the same chain, hash and origin, and
the module's change counts agree. After a real run repaired the namespace, both say nothing
differs. Real nft and iptables in a real namespace; no packet is sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.rules import sections_from_result
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options
from netns_helpers import create_netns, delete_netns, in_ns, unique_name

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

ORIGIN = "default[0] haproxy->wordpress tcp/80"
RULESET: dict[str, Any] = {
    "version": 1,
    "address_sets": [{"name": "zt-peers", "members": ["192.0.2.10", "192.0.2.11", "2001:db8::10"]}],
    "chains": [
        {
            "name": "ingress",
            "hook": "input",
            "default_verdict": "deny",
            "default_origin": "catch_all",
            "rules": [
                {"verdict": "accept", "origin": "implicit:established", "conntrack": ["established", "related"]},
                {"verdict": "accept", "origin": "implicit:loopback", "interface": "lo"},
                {"verdict": "accept", "origin": ORIGIN, "protocol": "tcp", "ports": ["80"], "peer_set": "zt-peers"},
            ],
        },
        {"name": "egress", "hook": "output", "default_verdict": "accept", "default_origin": "catch_all", "rules": []},
    ],
}


@pytest.fixture
def namespace() -> Iterator[str]:
    name = unique_name("ztad")
    create_netns(name)
    try:
        yield name
    finally:
        delete_netns(name)


def run(namespace: str, backend: str, state_dir: Path, *, check: bool) -> dict[str, Any]:
    options = apply.RunOptions(backend=backend, options=Options(), keep_ssh=False, host_netns=namespace, state_dir=str(state_dir),
                               check_mode=check)
    result = apply.run(RULESET, [], options, {})
    assert not result.get("failed"), result
    return result


def edit_by_hand(namespace: str, backend: str) -> None:
    """Delete the IPv4 ``default[0]`` rule and add a rule of nobody's to our ingress chain."""
    if backend == "nftables":
        listing = in_ns(namespace, ["nft", "-a", "list", "chain", "inet", "zerotrust", "ingress"]).stdout
        handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if ORIGIN in line and "ip saddr" in line)
        in_ns(namespace, ["nft", "delete", "rule", "inet", "zerotrust", "ingress", "handle", handle])
        in_ns(namespace, ["nft", "insert", "rule", "inet", "zerotrust", "ingress", "tcp", "dport", "22", "accept"])
        return
    tool = "iptables-nft" if backend == "iptables-nft" else "iptables"
    saved = in_ns(namespace, [f"{tool}-save", "-t", "filter"]).stdout
    number = [line for line in saved.splitlines() if line.startswith("-A ZT-INGRESS ")].index(
        next(line for line in saved.splitlines() if line.startswith("-A ZT-INGRESS ") and ORIGIN in line)
    )
    in_ns(namespace, [tool, "-D", "ZT-INGRESS", str(number + 1)])
    in_ns(namespace, [tool, "-I", "ZT-INGRESS", "1", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])


def module_view(result: dict[str, Any]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(missing, extra) as the module's structured plan says: (chain, hash or text, origin)."""
    [entry] = result["results"]
    rules = entry["changes"]["rules"]
    return (
        {(rule["chain"], rule["hash"] or rule.get("text", ""), rule["origin"]) for rule in rules["added"]},
        {(rule["chain"], rule["hash"] or rule.get("text", ""), rule["origin"]) for rule in rules["removed"]},
    )


def audit_view(result: dict[str, Any]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(missing, extra) as the audit's report section says."""
    [section] = sections_from_result("node", result)
    found: dict[str, set[tuple[str, str, str]]] = {"missing": set(), "extra": set()}
    for item in section["drift"]:
        assert item["kind"] in found, item  # nothing is paired into "modified" here: no two rules share an origin
        identity = item["rule"].split(" ", 1)[0] if item["policy"] != "not ours" else item["rule"]
        found[item["kind"]].add((item["chain"], identity, item["origin"]))
    return found["missing"], found["extra"]


# The clean check's reads, as (commands run, read from the read cache): nftables reads through the cache (its other
# command is the run's ``nft -c``); iptables-nft asks the kernel whether the namespace holds exactly the desired state
# and reads nothing; "iptables" runs its two saves. The edit by hand is an nf_tables commit: the drifted check reads.
CLEAN_READS = {"nftables": (1, 1), "iptables-nft": (0, 0), "iptables": (2, 0)}


@pytest.mark.parametrize(
    ("backend", "chain"), [("nftables", "ingress"), ("iptables", "IPv4 filter ZT-INGRESS"), ("iptables-nft", "IPv4 filter ZT-INGRESS")]
)
def test_module_and_audit_find_the_same_drift(namespace: str, tmp_path: Path, backend: str, chain: str) -> None:
    run(namespace, backend, tmp_path, check=False)
    clean = run(namespace, backend, tmp_path, check=True)
    assert module_view(clean) == audit_view(clean) == (set(), set())
    commands = clean["results"][0]["commands"]
    assert (commands["reads"], commands["cached_reads"]) == CLEAN_READS[backend]

    edit_by_hand(namespace, backend)
    drifted = run(namespace, backend, tmp_path, check=True)
    missing, extra = module_view(drifted)
    assert (missing, extra) == audit_view(drifted)
    assert [(found_chain, origin) for found_chain, _identity, origin in missing] == [(chain, ORIGIN)]
    assert [(found_chain, origin) for found_chain, _identity, origin in extra] == [(chain, "")]
    [entry] = drifted["results"]
    assert (entry["changed"], entry["rules_added"], entry["rules_removed"], entry["commands"]["cached_reads"]) == (True, 1, 1, 0)
    assert entry["drift"]  # the module's own words, beside

    repaired = run(namespace, backend, tmp_path, check=False)
    assert repaired["changed"] is True
    again = run(namespace, backend, tmp_path, check=True)
    assert module_view(again) == audit_view(again) == (set(), set())
    assert again["results"][0]["in_place"] == drifted["results"][0]["in_place"]
